"""Offer records: building, validation reasons, key derivation and merging (pure, no sockets)."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from hypothesis import given, strategies as st

from ledger import EncodeError, Envelope, seal
from p2pnode.offers import (
    MAX_OFFER_TTL_S, MAX_QUERY_BANDS, MAX_RECORD_BYTES, PRICE_BAND_MICRO_PER_KWH, BidRecord,
    Drop, OfferMerge, OfferRecord, RecordCache, check_live, check_record, offer_key, parse_record,
    price_band, query_keys, record_keys,
)
from tests.dhtkit import FEEDER, INTERVAL, NOW, forged, key, record, sealed

SELLER, OTHER = key("seller"), key("other")


# -- building --------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, problem", [
    (dict(feeder=""), "feeder"),
    (dict(feeder="F\n1"), "feeder"),
    (dict(endpoint="no-port"), "host:port"),
    (dict(endpoint="host:0"), "port"),
    (dict(endpoint="host:70000"), "port"),
    (dict(endpoint=":8470"), "host:port"),
    (dict(efficiency=1.5), "efficiency"),
    (dict(seq=-1), "seq"),
    (dict(energy_wh=-5), "energy_wh"),
    (dict(feeder="x" * 33), "feeder"),
    (dict(energy_wh=500, offered_wh=400), "offered_wh 400 is below energy_wh 500"),
])
def test_a_record_with_a_bad_field_cannot_be_built(fields, problem):
    with pytest.raises(EncodeError, match=problem):
        record(SELLER, **fields)


def test_a_valid_record_round_trips_and_carries_its_hints():
    offer = sealed(SELLER, efficiency=0.96, location="u33dc0")
    checked = check_record(offer.raw, NOW)
    assert checked.message == offer.message
    assert checked.message.efficiency == 0.96 and checked.message.endpoint == "127.0.0.1:9000"
    assert len(offer.raw) < 400


def test_the_largest_record_the_schema_allows_still_fits_the_size_limit():
    wide = "\U0001F600"  # four bytes in UTF-8
    offer = sealed(SELLER, seq=2**63 - 1, energy_wh=10**9, price=100_000_000,
                   feeder=wide * 32, endpoint=wide * 58 + ":65535", location=wide * 32,
                   efficiency=0.123456789, expires=NOW + 1, offered_wh=10**9)
    assert len(offer.raw) <= MAX_RECORD_BYTES
    assert isinstance(check_record(offer.raw, NOW), type(offer))


records = st.builds(
    OfferRecord, seller=st.just(SELLER.public), offer_id=st.binary(min_size=16, max_size=16),
    seq=st.integers(0, 2**63 - 1), energy_wh=st.integers(0, 10**9),
    price_micro_per_kwh=st.integers(0, 100_000_000),
    feeder=st.text(st.characters(min_codepoint=0x20, blacklist_categories=("Cs", "Cc", "Zl",
                                                                             "Zp", "Cn", "Co")),
                   min_size=1, max_size=32).filter(str.isprintable),
    interval_start_s=st.integers(0, 2**40), expires_at_s=st.integers(NOW + 1, NOW + 10**5),
    endpoint=st.sampled_from(["127.0.0.1:1", "meter-17.local:8470", "[::1]:65535"]),
    efficiency=st.none() | st.floats(0.0, 1.0), location=st.none() | st.text(max_size=32))


@given(records)
def test_every_record_the_schema_allows_seals_within_the_size_limit_and_checks(offer):
    raw = seal(offer, SELLER).raw
    assert len(raw) <= MAX_RECORD_BYTES
    assert check_record(raw, NOW).message == offer


# -- validation reasons ----------------------------------------------------------------------

def test_a_record_signed_by_someone_else_is_a_bad_signature():
    assert check_record(forged(SELLER, OTHER), NOW) is Drop.BAD_SIGNATURE


def test_a_record_changed_after_signing_is_a_bad_signature():
    offer = sealed(SELLER)
    envelope = Envelope.decode(offer.raw)
    cheaper = dataclasses.replace(offer.message, price_micro_per_kwh=1).encode()
    assert check_record(Envelope(cheaper, envelope.sig).encode(), NOW) is Drop.BAD_SIGNATURE


@pytest.mark.parametrize("raw", [
    b"", b"\x00" * 10, msgpack.packb({"t": 1}), b"\xc1", "not bytes", None,
])
def test_garbage_is_malformed(raw):
    assert check_record(raw, NOW) is Drop.MALFORMED


def test_trailing_bytes_and_non_canonical_encodings_are_malformed():
    offer = sealed(SELLER)
    assert check_record(offer.raw + b"\x00", NOW) is Drop.MALFORMED
    as_map = msgpack.unpackb(offer.raw)
    reordered = msgpack.packb(dict(reversed(list(as_map.items()))), use_bin_type=True)
    assert check_record(reordered, NOW) is Drop.MALFORMED


def test_a_record_of_the_format_before_offered_wh_is_malformed():
    """Fields are exact: an offer encoded without ``offered_wh`` (an older node's) is dropped,
    not read with a guess."""
    fields = msgpack.unpackb(Envelope.decode(sealed(SELLER, offered_wh=1000).raw).body)
    del fields["offered_wh"]
    body = msgpack.packb(fields, use_bin_type=True)
    raw = Envelope(body, SELLER.sign(body)).encode()
    assert check_record(raw, NOW) is Drop.MALFORMED


def test_another_message_type_is_malformed():
    body = msgpack.packb({"t": 51, **{k: v for k, v in msgpack.unpackb(
        Envelope.decode(sealed(SELLER).raw).body).items() if k != "t"}}, use_bin_type=True)
    raw = Envelope(body, SELLER.sign(body)).encode()
    assert check_record(raw, NOW) is Drop.MALFORMED


def test_oversize_bytes_are_refused_before_decoding():
    assert check_record(b"\x00" * (MAX_RECORD_BYTES + 1), NOW) is Drop.OVERSIZE


def test_expiry_is_absolute_and_bounded():
    offer = sealed(SELLER, expires=NOW + 600)
    assert isinstance(check_record(offer.raw, NOW + 599), type(offer))
    assert check_record(offer.raw, NOW + 600) is Drop.EXPIRED
    assert check_live(offer.message, NOW + 10**6) is Drop.EXPIRED
    far = sealed(SELLER, expires=NOW + MAX_OFFER_TTL_S + 1)
    assert check_record(far.raw, NOW) is Drop.EXPIRY_TOO_FAR
    assert check_live(far.message, NOW + 1) is None


def test_parse_record_ignores_time_and_the_cache_remembers_results():
    offer = sealed(SELLER, expires=NOW + 1)
    assert parse_record(offer.raw).message == offer.message
    cache = RecordCache(max_entries=2)
    assert cache.check(offer.raw, NOW + 5) is Drop.EXPIRED
    assert cache.parse(offer.raw) is cache.parse(offer.raw)
    for n in range(3):
        cache.parse(sealed(SELLER, n + 10).raw)
    assert len(cache._parsed) == 2


# -- keys ------------------------------------------------------------------------------------

def test_keys_are_20_bytes_and_depend_on_feeder_interval_and_band():
    base = offer_key(FEEDER, INTERVAL, 2)
    assert len(base) == 20 and base == offer_key(FEEDER, INTERVAL, 2)
    assert len({base, offer_key("F2", INTERVAL, 2), offer_key(FEEDER, INTERVAL + 900, 2),
                offer_key(FEEDER, INTERVAL, 3)}) == 4


def test_a_record_lives_under_the_key_of_its_price_band():
    offer = record(SELLER, price=3 * PRICE_BAND_MICRO_PER_KWH + 7)
    assert record_keys(offer) == (offer_key(FEEDER, INTERVAL, 3),)
    assert price_band(PRICE_BAND_MICRO_PER_KWH - 1) == 0
    assert price_band(PRICE_BAND_MICRO_PER_KWH) == 1


@given(price=st.integers(0, 2_000_000), max_price=st.integers(0, 2_000_000))
def test_a_buyer_queries_the_key_of_every_offer_it_can_afford(price, max_price):
    keys = query_keys(FEEDER, INTERVAL, max_price)
    assert 1 <= len(keys) <= MAX_QUERY_BANDS
    if price <= max_price and price_band(price) < MAX_QUERY_BANDS:
        assert record_keys(record(SELLER, price=price))[0] in keys


def test_query_keys_start_at_the_minimum_price_band_and_are_capped():
    keys = query_keys(FEEDER, INTERVAL, 10**8, min_price_micro_per_kwh=5 * PRICE_BAND_MICRO_PER_KWH)
    assert keys[0] == offer_key(FEEDER, INTERVAL, 5) and len(keys) == MAX_QUERY_BANDS
    with pytest.raises(ValueError):
        query_keys(FEEDER, INTERVAL, 10, min_price_micro_per_kwh=20)
    with pytest.raises(ValueError):
        price_band(-1)


def bid(signer, **fields) -> BidRecord:
    offer = record(signer, **fields)
    return BidRecord(**{f.name: getattr(offer, f.name) for f in dataclasses.fields(offer)})


def test_a_bid_is_its_own_record_found_with_the_offers_and_never_taken_for_one():
    wanted = bid(SELLER, price=300_000)
    raw = seal(wanted, SELLER).raw
    parsed = parse_record(raw)
    assert type(parsed.message) is BidRecord and parsed.message == wanted
    assert record_keys(wanted) == (offer_key(FEEDER, INTERVAL, price_band(300_000)),)
    # the same fields signed as an offer are another record (the type id is signed)
    as_offer = seal(record(SELLER, price=300_000), SELLER).raw
    assert as_offer != raw and type(parse_record(as_offer).message) is OfferRecord
    merge = OfferMerge(NOW)   # one lookup of the band: the offer and the bid, kept apart
    key_ = record_keys(wanted)[0]
    assert merge.add(raw, key_) is None
    assert merge.add(seal(record(OTHER, price=260_000), OTHER).raw, key_) is None
    assert [o.message.seller for o in merge.offers()] == [OTHER.public]
    assert [b.message for b in merge.bids()] == [wanted]


# -- merging ---------------------------------------------------------------------------------

def test_merge_keeps_the_newest_version_and_hides_tombstones():
    key_ = record_keys(record(SELLER))[0]
    merge = OfferMerge(NOW)
    for seq in (1, 3, 2):
        merge.add(sealed(SELLER, 1, seq=seq, energy_wh=100 * seq).raw, key_)
    merge.add(sealed(SELLER, 2, seq=1).raw, key_)
    merge.add(sealed(SELLER, 2, seq=2, energy_wh=0).raw, key_)
    merge.add(sealed(OTHER, 1, seq=1, price=100_000).raw, key_)  # same offer id, other seller
    offers = merge.offers()
    assert [(o.message.seller, o.message.offer_id, o.message.seq) for o in offers] == [
        (OTHER.public, record(OTHER).offer_id, 1), (SELLER.public, record(SELLER).offer_id, 3)]
    assert len(merge.offers(include_withdrawn=True)) == 3
    assert not merge.dropped


def test_merge_drops_and_counts_bad_records_by_reason():
    key_ = record_keys(record(SELLER))[0]
    merge = OfferMerge(NOW)
    assert merge.add(forged(SELLER, OTHER), key_) is Drop.BAD_SIGNATURE
    assert merge.add(sealed(SELLER, expires=NOW).raw, key_) is Drop.EXPIRED
    assert merge.add(sealed(SELLER, price=900_000).raw, key_) is Drop.WRONG_KEY
    assert merge.add(b"\x00" * 2000, key_) is Drop.OVERSIZE
    assert merge.add(sealed(SELLER, 5, energy_wh=1).raw, key_) is None
    assert merge.add(sealed(SELLER, 5, energy_wh=2).raw, key_) is Drop.SEQ_CONFLICT
    assert dict(merge.dropped) == {"bad_signature": 1, "expired": 1, "wrong_key": 1,
                                   "oversize": 1, "seq_conflict": 1}
    assert [o.message.energy_wh for o in merge.offers()] == [1]


def test_the_same_record_from_many_holders_is_judged_once():
    key_ = record_keys(record(SELLER))[0]
    merge = OfferMerge(NOW)
    bad = forged(SELLER, OTHER)
    for _ in range(20):
        merge.add(sealed(SELLER).raw, key_)
        merge.add(bad, key_)
    assert len(merge.offers()) == 1
    assert merge.dropped[Drop.BAD_SIGNATURE] == 20  # bad records are not remembered as seen


def test_seal_refuses_a_record_for_another_seller():
    with pytest.raises(EncodeError):
        seal(record(SELLER), OTHER)
