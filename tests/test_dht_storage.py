"""Storage rules: many offers per key, sequence, ownership, caps, absolute expiry (no sockets)."""

from __future__ import annotations

import pytest

from p2pnode.dht import storage as storage_module
from p2pnode.dht.storage import OfferStorage
from p2pnode.offers import Drop, record_keys
from tests.dhtkit import NOW, Clock, forged, key, record, sealed

SELLER, OTHER, THIRD = key("seller"), key("other"), key("third")
KEY = record_keys(record(SELLER))[0]


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(clock):
    return OfferStorage(clock)


def offers_in(store, key_=KEY):
    from p2pnode.offers import parse_record
    return sorted((o.message.seller, o.message.offer_id, o.message.seq, o.message.energy_wh)
                  for o in map(parse_record, store.records(key_)))


def test_a_key_holds_many_offers_from_many_sellers(store):
    for seller in (SELLER, OTHER, THIRD):
        for n in range(5):
            assert store.offer(KEY, sealed(seller, n).raw) is None
    assert len(store.records(KEY)) == 15 and len(store) == 15
    assert store[KEY] == store.get(KEY) == store.records(KEY)
    assert list(store) == [(KEY, store.records(KEY))]


def test_a_newer_seq_replaces_and_an_older_or_replayed_one_is_refused(store):
    assert store.offer(KEY, sealed(SELLER, seq=1, energy_wh=100).raw) is None
    assert store.offer(KEY, sealed(SELLER, seq=3, energy_wh=300).raw) is None
    assert store.offer(KEY, sealed(SELLER, seq=2, energy_wh=200).raw) is Drop.STALE_SEQ
    assert store.offer(KEY, sealed(SELLER, seq=1, energy_wh=100).raw) is Drop.STALE_SEQ
    assert store.offer(KEY, sealed(SELLER, seq=3, energy_wh=999).raw) is Drop.SEQ_CONFLICT
    assert store.offer(KEY, sealed(SELLER, seq=3, energy_wh=300).raw) is None  # idempotent
    assert offers_in(store) == [(SELLER.public, record(SELLER).offer_id, 3, 300)]
    assert dict(store.dropped) == {"stale_seq": 2, "seq_conflict": 1}


def test_nobody_can_overwrite_another_sellers_offer(store):
    assert store.offer(KEY, sealed(SELLER, seq=1, energy_wh=100).raw) is None
    # a forger cannot sign as the seller, at any seq
    assert store.offer(KEY, forged(SELLER, OTHER, seq=9, energy_wh=0)) is Drop.BAD_SIGNATURE
    # a record under the forger's own key with the same offer id is a different offer
    assert store.offer(KEY, sealed(OTHER, seq=9, energy_wh=0).raw) is None
    assert offers_in(store) == sorted([
        (SELLER.public, record(SELLER).offer_id, 1, 100),
        (OTHER.public, record(OTHER).offer_id, 9, 0)])


def test_a_withdrawal_is_a_newer_seq_with_zero_energy(store):
    store.offer(KEY, sealed(SELLER, seq=1).raw)
    assert store.offer(KEY, sealed(SELLER, seq=2, energy_wh=0).raw) is None
    assert offers_in(store) == [(SELLER.public, record(SELLER).offer_id, 2, 0)]


def test_invalid_records_and_records_under_the_wrong_key_are_refused(store, clock):
    assert store.offer(KEY, sealed(SELLER, price=900_000).raw) is Drop.WRONG_KEY
    assert store.offer(KEY, sealed(SELLER, expires=NOW).raw) is Drop.EXPIRED
    assert store.offer(KEY, b"\x00" * 1500) is Drop.OVERSIZE
    assert store.offer(KEY, b"junk") is Drop.MALFORMED
    store[KEY] = forged(SELLER, OTHER)  # kademlia's interface counts, never raises
    assert dict(store.dropped) == {"wrong_key": 1, "expired": 1, "oversize": 1, "malformed": 1,
                                   "bad_signature": 1}
    assert store.get(KEY) is None and store.get(KEY, ()) == ()
    with pytest.raises(KeyError):
        store[KEY]


def test_records_vanish_at_their_own_expiry_and_restoring_does_not_extend_it(store, clock):
    offer = sealed(SELLER, expires=NOW + 600)
    store.offer(KEY, offer.raw)
    clock.now = NOW + 599
    assert store.offer(KEY, offer.raw) is None  # a republish (kademlia issue #104)
    assert store.records(KEY) == (offer.raw,)
    clock.now = NOW + 600
    assert store.records(KEY) == () and len(store) == 0 and store.keys() == []
    assert store.offer(KEY, offer.raw) is Drop.EXPIRED


def test_a_replaced_version_keeps_the_expiry_of_the_newest(store, clock):
    store.offer(KEY, sealed(SELLER, seq=1, expires=NOW + 100).raw)
    newer = sealed(SELLER, seq=2, expires=NOW + 500)
    store.offer(KEY, newer.raw)
    clock.now = NOW + 200
    assert store.records(KEY) == (newer.raw,)
    clock.now = NOW + 500
    assert store.records(KEY) == ()
    assert store.offer(KEY, sealed(SELLER, seq=1, expires=NOW + 900).raw) is None  # gone: new


def test_caps_per_key_per_seller_and_keys(store, monkeypatch, clock):
    monkeypatch.setattr(storage_module, "MAX_RECORDS_PER_KEY", 3)
    monkeypatch.setattr(storage_module, "MAX_RECORDS_PER_SELLER", 2)
    monkeypatch.setattr(storage_module, "MAX_KEYS", 2)
    assert store.offer(KEY, sealed(SELLER, 1).raw) is None
    assert store.offer(KEY, sealed(SELLER, 2).raw) is None
    assert store.offer(KEY, sealed(SELLER, 3).raw) is Drop.SELLER_FULL
    assert store.offer(KEY, sealed(SELLER, 2, seq=2).raw) is None  # an update is never capped
    assert store.offer(KEY, sealed(OTHER, 1).raw) is None
    assert store.offer(KEY, sealed(THIRD, 1).raw) is Drop.KEY_FULL
    other_band = sealed(THIRD, 1, price=500_000)
    assert store.offer(record_keys(other_band.message)[0], other_band.raw) is None
    third_band = sealed(THIRD, 2, price=800_000)
    assert store.offer(record_keys(third_band.message)[0], third_band.raw) is Drop.STORAGE_FULL
    clock.now = NOW + 600  # everything expires; the counts are released
    assert store.offer(KEY, sealed(SELLER, 3, expires=NOW + 900).raw) is None


def test_pages_cover_a_key_in_order_within_the_byte_budget(store):
    sellers = [key(f"s{i}") for i in range(30)]
    for seller in sellers:
        store.offer(KEY, sealed(seller).raw)
    budget, cursor, seen, pages = 2000, None, [], 0
    while True:
        page = store.page(KEY, cursor, budget)
        assert sum(map(len, page.records)) <= budget
        seen.extend(page.records)
        pages += 1
        if page.more is None:
            break
        cursor = page.more
    assert pages > 3 and seen == list(store.records(KEY))
    assert store.page(KEY, None, 10**6).more is None
    assert len(store.page(KEY, None, 10**6, max_records=7).records) == 7
    assert store.page(b"\x00" * 20, None).records == ()


def test_iter_older_than_reports_by_store_time(store, clock):
    offer = sealed(SELLER)
    store.offer(KEY, offer.raw)
    clock.now = NOW + 30
    assert store.iter_older_than(60) == []
    assert store.iter_older_than(30) == [(KEY, offer.raw)]
