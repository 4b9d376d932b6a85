"""Signed envelopes: a message's canonical bytes plus its signer's Ed25519 signature.

The signature covers exactly ``signing_bytes()`` -- the canonical encoding of the message, which
already carries the message's type id, so a signature for one kind of message can never be
replayed as another kind.  The envelope itself is the canonical map ``{"t", "body", "sig"}``;
its SHA-256 is the identity of the sealed message (a block's hash, an offer's digest).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Annotated, ClassVar, Generic, TypeVar

from ledger.codec import Bytes, Message
from ledger.errors import DecodeError, EncodeError, SignatureError
from ledger.keys import SIGNATURE_BYTES, SigningKey, is_valid_signature

__all__ = ["SignedMessage", "Sealed", "Envelope", "open_envelope", "seal", "unseal"]

ENVELOPE_OVERHEAD = 96  # map header, keys, bin headers and the signature


class SignedMessage(Message):
    """A message that is only ever sent signed; ``SIGNER`` names its public-key field."""

    SIGNER: ClassVar[str]

    def signing_bytes(self) -> bytes:
        return self.encode()

    def signer(self) -> bytes:
        return getattr(self, self.SIGNER)


@dataclasses.dataclass(frozen=True)
class Envelope(Message):
    TYPE = 1
    MAX_BYTES = 64 * 1024
    body: Annotated[bytes, Bytes(max=64 * 1024)]
    sig: Annotated[bytes, Bytes(SIGNATURE_BYTES)]


M = TypeVar("M", bound=SignedMessage)


@dataclasses.dataclass(frozen=True)
class Sealed(Generic[M]):
    """A message whose signature has been made or checked, with its envelope bytes."""

    message: M
    signature: bytes
    raw: bytes

    @functools.cached_property
    def hash(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    def __repr__(self) -> str:
        seq = getattr(self.message, "seq", None)
        where = f" #{seq}" if seq is not None else ""
        return (f"Sealed({type(self.message).__name__}{where} by {self.message.signer().hex()[:12]}…,"
                f" hash {self.hash.hex()[:12]}…)")


def seal(message: M, key: SigningKey) -> Sealed[M]:
    """Sign ``message`` with ``key``, which must be the message's declared signer."""
    if message.signer() != key.public:
        raise EncodeError(f"{type(message).__name__}.{message.SIGNER} is not the signing key")
    body = message.signing_bytes()
    signature = key.sign(body)
    return Sealed(message, signature, Envelope(body, signature).encode())


def unseal(raw: bytes, cls: type[M]) -> Sealed[M]:
    """Decode and verify a sealed ``cls``; raise DecodeError or SignatureError."""
    sealed, signature_ok = open_envelope(raw, cls)
    if not signature_ok:
        raise SignatureError(f"{cls.__name__}: signature does not verify")
    return sealed


def open_envelope(raw: bytes, cls: type[M]) -> tuple[Sealed[M], bool]:
    """Decode a sealed ``cls`` (DecodeError if malformed) and say whether its signature holds.

    For validators that report a bad signature together with every other problem of a message.
    """
    if type(raw) is not bytes:
        raise DecodeError(f"sealed {cls.__name__}: expected bytes, got {type(raw).__name__}")
    if len(raw) > cls.MAX_BYTES + ENVELOPE_OVERHEAD:
        raise DecodeError(f"sealed {cls.__name__}: {len(raw)} bytes is over the size limit")
    envelope = Envelope.decode(raw)
    message = cls.decode(envelope.body)
    signature_ok = is_valid_signature(message.signer(), envelope.sig, envelope.body)
    return Sealed(message, envelope.sig, raw), signature_ok
