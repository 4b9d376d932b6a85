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
    body, signature = _split_envelope(raw)
    message = cls.decode(body)
    signature_ok = is_valid_signature(message.signer(), signature, body)
    return Sealed(message, signature, raw), signature_ok


_SIG_PART = b"\xa3sig\xc4\x40"  # "sig": bin8 of 64 bytes
_TAIL = b"\xa1t\x01"  # "t": 1


def _split_envelope(raw: bytes) -> tuple[bytes, bytes]:
    """(body, signature) of canonical envelope bytes; anything else goes to the strict decoder.

    The envelope's canonical layout is fixed -- map of 3, "body" as the smallest bin header,
    "sig" as 64 bytes, "t": 1 -- so it can be checked byte for byte without a generic parse.
    """
    if raw[:6] == b"\x83\xa4body":
        kind = raw[6:7]
        if kind == b"\xc4":
            start, size = 8, raw[7] if len(raw) > 7 else -1
        elif kind == b"\xc5":
            start, size = 9, int.from_bytes(raw[7:9], "big")
            size = size if size >= 256 else -1
        else:
            start, size = 0, -1
        end = start + size
        if (size >= 0 and len(raw) == end + len(_SIG_PART) + 64 + len(_TAIL)
                and raw[end:end + len(_SIG_PART)] == _SIG_PART and raw.endswith(_TAIL)):
            return raw[start:end], raw[end + len(_SIG_PART):-len(_TAIL)]
    envelope = Envelope.decode(raw)  # not the canonical layout: let the decoder say why
    raise DecodeError(f"Envelope: not canonical ({len(envelope.body)}-byte body)")
