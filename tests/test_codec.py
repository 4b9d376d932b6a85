"""Canonical strict encoding and signed envelopes."""

import dataclasses
from typing import Annotated

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from ledger import (
    Bytes, DecodeError, EncodeError, Envelope, Message, Range, SignatureError, SignedMessage,
    SigningKey, Text, seal, unseal,
)
from ledger.block import BlockBody
from ledger.sealed import _split_envelope
from tests.chainkit import SELLER


@dataclasses.dataclass(frozen=True)
class Inner(Message):
    TYPE = 900
    label: Annotated[str, Text(8)]


@dataclasses.dataclass(frozen=True)
class Sample(Message):
    TYPE = 901
    MAX_BYTES = 512
    count: Annotated[int, Range(0, 1000)]
    ratio: float
    blob: Annotated[bytes, Bytes(max=32)]
    flag: bool
    inner: Inner
    items: tuple[int, ...]
    maybe: int | None


@dataclasses.dataclass(frozen=True)
class Note(SignedMessage):
    TYPE = 902
    SIGNER = "author"
    author: Annotated[bytes, Bytes(32)]
    text: str


samples = st.builds(
    Sample,
    count=st.integers(0, 1000),
    ratio=st.floats(allow_nan=False, allow_infinity=False),
    blob=st.binary(max_size=32),
    flag=st.booleans(),
    inner=st.builds(Inner, label=st.text(max_size=8)),
    items=st.lists(st.integers(-(2**63), 2**64 - 1), max_size=5).map(tuple),
    maybe=st.none() | st.integers(0, 10),
)


@given(samples)
def test_round_trip_is_identity_and_bytes_are_canonical(sample):
    data = sample.encode()
    assert Sample.decode(data) == sample
    assert Sample.decode(data).encode() == data


def raw_sample(**override):
    obj = {"t": 901, "count": 1, "ratio": 0.5, "blob": b"x", "flag": True,
           "inner": {"label": "a", "t": 900}, "items": [1], "maybe": None}
    obj.update(override)
    return msgpack.packb(dict(sorted(obj.items())), use_bin_type=True)


def test_reference_encoding_decodes():
    assert Sample.decode(raw_sample()).inner.label == "a"


@pytest.mark.parametrize("override, message", [
    ({"extra": 1}, "unknown field 'extra' in Sample"),
    ({"count": True}, "Sample.count: expected int, got bool"),
    ({"count": 1001}, "Sample.count: 1001 outside"),
    ({"blob": "text"}, "Sample.blob: expected bytes, got str"),
    ({"blob": b"x" * 33}, "Sample.blob: longer than 32 bytes"),
    ({"ratio": float("nan")}, "Sample.ratio: must be finite"),
    ({"inner": {"label": "too long label", "t": 900}}, "Sample.inner.label: longer than 8"),
    ({"inner": {"label": "a", "t": 1}}, "Sample.inner: type id 1 is not one of Inner"),
    ({"items": [1, "2"]}, "Sample.items[1]: expected int"),
    ({"t": 902}, "type id 902 is not Sample"),
    ({"t": True}, "type id True is not Sample"),
    ({"inner": {"label": "a", "t": [900]}}, "Sample.inner: type id [900] is not one of Inner"),
    ({"inner": {"label": "a", "t": {}}}, "Sample.inner: type id {} is not one of Inner"),
])
def test_strict_decoding_names_the_problem(override, message):
    with pytest.raises(DecodeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Sample.decode(raw_sample(**override))


def test_a_bool_is_not_the_type_id_1():
    data = msgpack.packb({"body": b"x", "sig": bytes(64), "t": True}, use_bin_type=True)
    with pytest.raises(DecodeError, match="type id True is not Envelope"):
        Envelope.decode(data)


def test_missing_field_is_named():
    obj = msgpack.unpackb(raw_sample())
    del obj["flag"]
    with pytest.raises(DecodeError, match="missing field 'flag'"):
        Sample.decode(msgpack.packb(obj))


def test_trailing_bytes_rejected():
    with pytest.raises(DecodeError, match="trailing bytes"):
        Sample.decode(raw_sample() + b"\x00")


def test_oversize_rejected_before_parsing():
    with pytest.raises(DecodeError, match="exceeds 512"):
        Sample.decode(b"\x00" * 513)


def test_non_canonical_encodings_rejected():
    unsorted = msgpack.unpackb(raw_sample())
    data = msgpack.packb(dict(reversed(list(unsorted.items()))), use_bin_type=True)
    with pytest.raises(DecodeError, match="canonical"):
        Sample.decode(data)
    wide_int = raw_sample().replace(b"\xa5count\x01", b"\xa5count\xce\x00\x00\x00\x01")
    with pytest.raises(DecodeError, match="not the canonical encoding"):
        Sample.decode(wide_int)


def test_garbage_and_ext_types_rejected():
    for data in (b"\xc1", b"\x93\x01", msgpack.packb(msgpack.ExtType(5, b"x"))):
        with pytest.raises(DecodeError):
            Sample.decode(data)


def test_building_an_invalid_message_is_our_error():
    with pytest.raises(EncodeError, match="Sample.count"):
        Sample(2000, 0.0, b"", False, Inner("a"), (), None)
    with pytest.raises(EncodeError, match="Inner.label: expected str"):
        Inner(5)


def test_envelope_signature_covers_exactly_the_signing_bytes():
    note = Note(SELLER.public, "hello")
    sealed = seal(note, SELLER)
    envelope = Envelope.decode(sealed.raw)
    assert envelope.body == note.signing_bytes()
    assert unseal(sealed.raw, Note).message == note
    forged = Envelope(Note(SELLER.public, "hellO").encode(), envelope.sig).encode()
    with pytest.raises(SignatureError):
        unseal(forged, Note)


def envelope_variants():
    """Canonical envelopes around the bin8/bin16 size limits, changed or not."""
    canonical = st.builds(lambda body, sig: Envelope(body, sig).encode(),
                          st.binary(max_size=300) | st.binary(min_size=65_000, max_size=65_535),
                          st.binary(min_size=64, max_size=64))
    non_canonical = st.builds(  # bin16/bin32 where bin8/bin16 would do, keys out of order
        lambda body, sig, order: msgpack.packb(
            dict(sorted({"body": body, "sig": sig, "t": 1}.items(), reverse=order)),
            use_bin_type=True).replace(b"\xc4", b"\xc5\x00", 1),
        st.binary(max_size=300), st.binary(min_size=64, max_size=64), st.booleans())

    def change(data, how):
        offset, value = how
        offset %= len(data) + 1
        return data[:offset] + bytes([value]) + data[offset + (value % 2):]  # replace or insert

    return (canonical | non_canonical | st.builds(change, canonical, st.tuples(
        st.integers(0, 70_000), st.integers(0, 255))))


@settings(max_examples=300)
@given(envelope_variants())
def test_envelope_fast_path_accepts_exactly_what_the_strict_decoder_accepts(data):
    try:
        envelope = Envelope.decode(data)
    except DecodeError:
        with pytest.raises(DecodeError):
            _split_envelope(data)
    else:
        assert _split_envelope(data) == (envelope.body, envelope.sig)


def test_seal_refuses_a_key_that_is_not_the_signer():
    with pytest.raises(EncodeError, match="not the signing key"):
        seal(Note(SELLER.public, "x"), SigningKey.generate())


def test_a_signature_cannot_be_replayed_as_another_message_type():
    note = seal(Note(SELLER.public, "x"), SELLER)
    with pytest.raises(DecodeError, match="type id 902"):
        unseal(note.raw, BlockBody)
