"""Ed25519 signing keys and signature checks (the `cryptography` package underneath).

Public keys travel as their 32 raw bytes; signatures are 64 bytes.  Loading a public key costs
about as much as hashing it, so recently used keys are cached.

A check costs ~0.1 ms and the same signed bytes arrive many times: an offer record from every
DHT node that stores it and again at the next look, a seller's settlement blocks in every
buyer's fetch of its track record, and -- in a process that runs many nodes, the simulator --
once per node.  So the last :data:`MAX_REMEMBERED` signatures found valid are remembered by
the BLAKE2b-256 digest of (key, signature, data): a second check of the same bytes is a hash
and a lookup.  Only valid signatures are remembered (a forgery costs its full check every
time, and cannot be remembered into validity: two inputs with one digest would be a BLAKE2b
collision).
"""

from __future__ import annotations

import functools
import hashlib
import threading

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import DecodeError, SignatureError

__all__ = ["PUBLIC_KEY_BYTES", "SIGNATURE_BYTES", "SigningKey", "forget_signatures",
           "is_valid_signature", "verify"]

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
MAX_REMEMBERED = 1 << 15   # valid signatures remembered (~4 MB)


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


class _Remembered:
    """The digests of the last ``size`` valid (key, signature, data) triples, oldest first."""

    def __init__(self, size: int):
        self.size = size
        self._digests: dict[bytes, None] = {}
        self._lock = threading.Lock()   # ranking runs in executor threads

    @staticmethod
    def digest(public: bytes, signature: bytes, data: bytes) -> bytes:
        return hashlib.blake2b(public + signature + data, digest_size=32).digest()

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._digests

    def add(self, digest: bytes) -> None:
        with self._lock:
            self._digests[digest] = None
            while len(self._digests) > self.size:
                del self._digests[next(iter(self._digests))]

    def clear(self) -> None:
        with self._lock:
            self._digests.clear()


_remembered = _Remembered(MAX_REMEMBERED)


def forget_signatures() -> None:
    """Forget the remembered valid signatures (a benchmark timing the checks themselves)."""
    _remembered.clear()


def is_valid_signature(public: bytes, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is ``public``'s signature of exactly ``data``."""
    if len(public) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    digest = _Remembered.digest(public, signature, data)
    if digest in _remembered:
        return True
    try:
        _public_key(public).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    _remembered.add(digest)
    return True


def verify(public: bytes, signature: bytes, data: bytes) -> None:
    """Raise :class:`SignatureError` unless the signature verifies."""
    if not is_valid_signature(public, signature, data):
        raise SignatureError(f"bad signature for key {public.hex()[:16]}…")
