"""Ed25519 signing keys and signature checks (the `cryptography` package underneath).

Public keys travel as their 32 raw bytes; signatures are 64 bytes.  Loading a public key costs
about as much as hashing it, so recently used keys are cached.
"""

from __future__ import annotations

import functools

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import DecodeError, SignatureError

__all__ = ["PUBLIC_KEY_BYTES", "SIGNATURE_BYTES", "SigningKey", "verify", "is_valid_signature"]

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


class SigningKey:
    """An Ed25519 private key with its raw public key at hand."""

    __slots__ = ("_private", "public")

    def __init__(self, private: Ed25519PrivateKey):
        self._private = private
        self.public: bytes = private.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """Deterministic key from a 32-byte seed (tests, seeded simulations)."""
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_pem(cls, data: bytes, passphrase: bytes | None = None) -> SigningKey:
        """Load PEM PKCS#8; an encrypted key needs its ``passphrase``.

        Raises :class:`DecodeError` for a malformed or non-Ed25519 key, a wrong passphrase, an
        encrypted key without a passphrase and a passphrase for an unencrypted key; the message
        says which.
        """
        encrypted = b"ENCRYPTED PRIVATE KEY" in data[:64]
        if encrypted and not passphrase:
            raise DecodeError("the key is encrypted and no passphrase was given")
        if passphrase and not encrypted:
            raise DecodeError("a passphrase was given but the key is not encrypted")
        try:
            private = serialization.load_pem_private_key(data, password=passphrase or None)
        except (ValueError, TypeError) as exc:
            if encrypted:
                raise DecodeError("wrong passphrase (or a damaged encrypted key)") from exc
            raise DecodeError(f"not a PEM private key: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 -- cryptography raises its own on odd input
            raise DecodeError(f"not a PEM private key: {type(exc).__name__}: {exc}") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise DecodeError(f"expected an Ed25519 key, got {type(private).__name__}")
        return cls(private)

    def to_pem(self, passphrase: bytes | None = None) -> bytes:
        """PEM PKCS#8, encrypted with ``passphrase`` (the library's best scheme) when given."""
        protection = (serialization.BestAvailableEncryption(passphrase) if passphrase
                      else serialization.NoEncryption())
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, protection)

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def __repr__(self) -> str:
        return f"SigningKey(public={self.public.hex()[:16]}…)"


@functools.lru_cache(maxsize=4096)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def is_valid_signature(public: bytes, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is ``public``'s signature of exactly ``data``."""
    if len(public) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        _public_key(public).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify(public: bytes, signature: bytes, data: bytes) -> None:
    """Raise :class:`SignatureError` unless the signature verifies."""
    if not is_valid_signature(public, signature, data):
        raise SignatureError(f"bad signature for key {public.hex()[:16]}…")
