"""Signed envelopes: a message's canonical bytes plus its signer's Ed25519 signature.

The signature covers exactly ``signing_bytes()`` -- the canonical encoding of the message, which
already carries the message's type id, so a signature for one kind of message can never be
replayed as another kind.  The envelope itself is the canonical map ``{"t", "body", "sig"}``;
its SHA-256 is the identity of the sealed message (a block's hash, an offer's digest).

A :class:`Sealed` remembers whether this process made or checked its signature
(``sealed.verified``): :func:`seal` and a successful :func:`open_envelope`/:func:`unseal` set it,
anything else (a hand-built ``Sealed``, :func:`decode_envelope`, a failed check) leaves it False.
A layer that receives a verified ``Sealed`` from another (the negotiation layer handing a checked
block to the ledger) trusts it instead of checking the same bytes again.  Every check goes
through :func:`ledger.keys.is_valid_signature` looked up at call time: one place to count them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Annotated, ClassVar, Generic, TypeVar

from ledger import keys
from ledger.codec import Bytes, Message
from ledger.errors import DecodeError, EncodeError, SignatureError
from ledger.keys import SIGNATURE_BYTES, SigningKey

__all__ = [
    "SignedMessage", "Sealed", "Envelope", "decode_envelope", "open_checked", "open_envelope",
    "seal", "unseal",
]

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


class _RawDigest:
    """``sealed.hash``: SHA-256 of the envelope bytes, computed once and kept in the instance.

    A non-data descriptor: the first access stores the digest in the instance ``__dict__``,
    which then shadows it.  (``functools.cached_property`` does the same but takes a lock on
    every first access in Python 3.11, which costs more than the hash itself.)
    """

    def __get__(self, sealed: Sealed | None, owner: type | None = None):
        if sealed is None:  # looked up on the class
            return self
        digest = sealed.__dict__["hash"] = hashlib.sha256(sealed.raw).digest()
        return digest


@dataclasses.dataclass(frozen=True)
class Sealed(Generic[M]):
    """A message, its signature and its envelope bytes.

    ``verified`` is True only on the instance :func:`seal` made or :func:`open_envelope` /
    :func:`unseal` checked (not a field: equality and ``dataclasses.replace`` ignore it, and a
    replaced copy is not verified).
    """

    message: M
    signature: bytes
    raw: bytes

    hash = _RawDigest()  # bytes (not annotated: not a dataclass field)
    verified: ClassVar[bool] = False  # shadowed by True in the instance dict: see _verified


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
    return _verified(Sealed(message, signature, Envelope(body, signature).encode()))


def _verified(sealed: Sealed[M]) -> Sealed[M]:
    sealed.__dict__["verified"] = True  # frozen dataclass: set beside the fields, like ``hash``
    return sealed


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
    sealed, signed = decode_envelope(raw, cls)
    if keys.is_valid_signature(sealed.message.signer(), sealed.signature, signed):
        return _verified(sealed), True
    return sealed, False


def open_checked(raw: bytes, cls: type[M], max_bytes: int) -> Sealed[M] | str:
    """The sealed ``cls`` in ``raw`` with a valid signature, or why not, as a drop reason for a
    counter: "oversize" (over ``max_bytes``), "malformed" or "bad_signature".  For endpoints that
    drop and count bad input from peers."""
    if len(raw) > max_bytes:
        return "oversize"
    try:
        sealed, signature_ok = open_envelope(raw, cls)
    except DecodeError:
        return "malformed"
    return sealed if signature_ok else "bad_signature"


def decode_envelope(raw: bytes, cls: type[M]) -> tuple[Sealed[M], bytes]:
    """Decode a sealed ``cls`` (DecodeError if malformed) *without* checking its signature.

    Returns the sealed message (not ``verified``) and the signed bytes (its canonical encoding):
    the caller must check ``is_valid_signature(sealed.message.signer(), sealed.signature,
    signed)`` before trusting it.  For auditors that check many signatures in one tight loop, where the
    signature code stays in the CPU caches (:func:`open_envelope` does both at once).
    """
    if type(raw) is not bytes:
        raise DecodeError(f"sealed {cls.__name__}: expected bytes, got {type(raw).__name__}")
    if len(raw) > cls.MAX_BYTES + ENVELOPE_OVERHEAD:
        raise DecodeError(f"sealed {cls.__name__}: {len(raw)} bytes is over the size limit")
    signed, signature = _split_envelope(raw)
    return Sealed(cls.decode(signed), signature, raw), signed


_BODY_BIN8 = b"\x83\xa4body\xc4"  # map of 3, "body": bin8 (then 1 byte of size)
_BODY_BIN16 = b"\x83\xa4body\xc5"  # map of 3, "body": bin16 (then 2 bytes of size)
_SIG_PART = b"\xa3sig\xc4\x40"  # "sig": bin8 of 64 bytes
_TAIL = b"\xa1t\x01"  # "t": 1
_AFTER_BODY_BYTES = len(_SIG_PART) + SIGNATURE_BYTES + len(_TAIL)


def _split_envelope(raw: bytes) -> tuple[bytes, bytes]:
    """(body, signature) of canonical envelope bytes; anything else goes to the strict decoder.

    The envelope's canonical layout is fixed -- map of 3, "body" as the smallest bin header,
    "sig" as 64 bytes, "t": 1 -- so the body's size follows from the envelope's and every
    other byte can be checked without a generic parse.
    """
    end = len(raw) - _AFTER_BODY_BYTES  # where the body ends
    size = end - len(_BODY_BIN16) - 2  # if its header is bin16
    if 256 <= size <= 0xFFFF:
        start = end - size
        header_ok = raw[7] == size >> 8 and raw[8] == size & 0xFF and raw.startswith(_BODY_BIN16)
    else:
        size = end - len(_BODY_BIN8) - 1  # bin8
        start = end - size
        header_ok = 0 <= size < 256 and raw[7] == size and raw.startswith(_BODY_BIN8)
    if header_ok and raw.startswith(_SIG_PART, end) and raw.endswith(_TAIL):
        return raw[start:end], raw[end + len(_SIG_PART):-len(_TAIL)]
    envelope = Envelope.decode(raw)  # not the canonical layout: let the decoder say why
    raise DecodeError(f"Envelope: not canonical ({len(envelope.body)}-byte body)")
