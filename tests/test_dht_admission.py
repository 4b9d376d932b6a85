"""Admission and standing of stored offers: a flood of fresh keys cannot push sellers out (pure)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from p2pnode.dht import storage as storage_module
from p2pnode.dht.admission import (
    OFFER_HORIZON_AHEAD_S, OFFER_HORIZON_BEHIND_S, AdmissionPolicy, SellerStanding, SourceShares,
    admission_problem, fair_victim,
)
from p2pnode.dht.server import OfferDHT
from p2pnode.dht.storage import OfferStorage
from p2pnode.offers import Drop, OfferRejected, record_keys
from tests.dhtkit import FAST, FEEDER, INTERVAL, NOW, Clock, key, record, run, sealed

SELLER = key("seller")


def test_only_this_feeder_and_intervals_within_the_horizon_are_admitted():
    policy = AdmissionPolicy(feeder=FEEDER)
    assert admission_problem(record(SELLER), policy, NOW) is None
    assert admission_problem(record(SELLER, feeder="elsewhere"), policy, NOW) is Drop.WRONG_FEEDER
    assert admission_problem(record(SELLER, feeder="elsewhere"), AdmissionPolicy(), NOW) is None
    ahead = NOW + OFFER_HORIZON_AHEAD_S
    assert admission_problem(record(SELLER, interval=ahead), policy, NOW) is None
    assert admission_problem(record(SELLER, interval=ahead + 1), policy, NOW) is Drop.OUT_OF_HORIZON
    behind = NOW - OFFER_HORIZON_BEHIND_S
    assert admission_problem(record(SELLER, interval=behind), policy, NOW) is None
    assert admission_problem(record(SELLER, interval=behind - 1), policy, NOW) is Drop.OUT_OF_HORIZON
    # the record of the report: year 19400
    assert admission_problem(record(SELLER, interval=550_000_000_000), policy, NOW) \
        is Drop.OUT_OF_HORIZON
    with pytest.raises(ValueError, match="horizon_ahead_s"):
        AdmissionPolicy(horizon_ahead_s=-1)


def test_standing_grows_one_period_at_a_time_and_starts_at_zero():
    standing = SellerStanding(max_sellers=2, period_s=900)
    for n in range(50):                               # a burst of signatures buys nothing
        standing.observe(SELLER.public, NOW + n)
    assert standing.of(SELLER.public) == 0
    standing.observe(SELLER.public, NOW + 900)
    standing.observe(SELLER.public, NOW + 100)        # an earlier time does not count again
    assert standing.of(SELLER.public) == 1
    standing.observe(SELLER.public, NOW + 5 * 900)
    assert standing.of(SELLER.public) == 2
    other, third = key("other"), key("third")
    standing.observe(other.public, NOW)
    standing.observe(other.public, NOW + 900)
    standing.observe(third.public, NOW)               # full: the weakest (other) is forgotten
    assert standing.of(SELLER.public) == 2 and standing.of(other.public) == 0
    assert standing.outranks(SELLER.public, third.public)
    assert not standing.outranks(third.public, SELLER.public)


def _with_history(store: OfferStorage, clock: Clock, seller, intervals: int, n: int = 900) -> None:
    """``seller`` stored offers here in the ``intervals`` past intervals and this one."""
    now = clock.now
    for i in range(intervals + 1):
        clock.now = NOW - 900 * (intervals - i)
        start = INTERVAL - 900 * (intervals - i) - 900
        assert store.offer(record_keys(record(seller, interval=start))[0],
                           sealed(seller, n + i, interval=start, expires=int(clock.now) + 60).raw) is None
    clock.now = now


def _with_standing_seller(intervals: int):
    """A feeder's storage where the seller "honest" has ``intervals`` past intervals of offers:
    (store, the seller, the key of its next offer)."""
    clock = Clock()
    store = OfferStorage(clock, policy=AdmissionPolicy(feeder=FEEDER))
    honest = key("honest")
    _with_history(store, clock, honest, intervals)
    return store, honest, record_keys(record(honest))[0]


def test_a_flood_of_fresh_keys_fills_only_free_room_and_never_pushes_a_seller_out(monkeypatch):
    monkeypatch.setattr(storage_module, "MAX_RECORDS_PER_KEY", 8)
    store, honest, target = _with_standing_seller(3)
    fresh = [key(f"fresh {i}") for i in range(12)]
    results = [store.offer(target, sealed(k).raw) for k in fresh]
    assert results[:8] == [None] * 8 and set(results[8:]) == {Drop.KEY_FULL}
    # the seller with a history takes the place of a fresh key; fresh keys cannot take it back
    assert store.offer(target, sealed(honest).raw) is None
    assert store.evicted == 1
    assert sealed(honest).raw in store.records(target) and len(store.records(target)) == 8
    assert store.offer(target, sealed(key("fresh 99")).raw) is Drop.KEY_FULL
    # a seller's standing does not let it crowd one key either
    for n in range(2, 9):
        store.offer(target, sealed(honest, n).raw)
    assert store.offer(target, sealed(honest, 20).raw) is Drop.SELLER_KEY_FULL


def test_a_full_storage_makes_room_for_a_seller_with_history(monkeypatch):
    monkeypatch.setattr(storage_module, "MAX_KEYS", 4)
    clock = Clock()
    store = OfferStorage(clock)
    honest = key("honest")
    _with_history(store, clock, honest, 1)           # its records expire soon
    clock.now = NOW + 100                            # and have expired
    assert len(store.keys()) == 0
    for band in range(4):
        filler = sealed(key(f"filler {band}"), price=band * 250_000)
        assert store.offer(record_keys(filler.message)[0], filler.raw) is None
    late = sealed(key("late"), price=5 * 250_000)
    assert store.offer(record_keys(late.message)[0], late.raw) is Drop.STORAGE_FULL
    mine = sealed(honest, price=6 * 250_000, expires=NOW + 700)
    assert store.offer(record_keys(mine.message)[0], mine.raw) is None
    assert len(store.keys()) == 4 and store.records(record_keys(mine.message)[0]) == (mine.raw,)


def test_a_publish_that_no_node_stored_is_refused_not_counted():
    """``offers_published`` counted offers nobody held (the report): now publish raises."""
    async def main():
        elsewhere = dataclasses.replace(FAST, admission=AdmissionPolicy(feeder="elsewhere"))
        clock = Clock()
        async with OfferDHT(SELLER, settings=elsewhere, clock=clock) as alone:
            with pytest.raises(OfferRejected, match=r"not_stored: no node stored the record "
                                                    r"\(1 refused it, 0 did not answer\)"):
                await alone.publish(sealed(SELLER))
            assert alone.counters()["stored_wrong_feeder"] == 1
            assert alone.counters()["store_refused"] == 1
        async with OfferDHT(SELLER, settings=FAST, clock=clock) as home:
            assert await home.publish(sealed(SELLER)) == 1

    run(main())


def test_an_offer_no_node_stored_is_counted_and_logged_at_info_not_warned(tmp_path, caplog):
    """A seller whose offer no node takes (here: its interval is beyond every node's horizon)
    counts it (offers_not_stored, store_refused) and logs it at INFO: in a busy swarm this
    happened hundreds of times a run, a warning each; the offer stays its own and is published
    again with the next update or republish."""
    import logging

    from p2pnode.config import MarketConfig
    from tests.nodekit import START, swarm

    async def main():
        async with swarm([[500]], tmp_path, market=MarketConfig(mode="ex_post")) as s:
            node = s.nodes[0]
            s.clock.now_s = START - OFFER_HORIZON_AHEAD_S - 4 * 3600   # START out of horizon
            await node._open_selling(START, 500)
            return dict(node.counters), node.dht.counters(), node.dht.own_offers()

    with caplog.at_level(logging.INFO, logger="p2pnode"):
        counters, dht, own = run(main())
    assert counters["offers_rejected"] == counters["offers_not_stored"] == 1
    assert "offers_published" not in counters
    assert dht["store_refused"] == 1 and dht["stored_out_of_horizon"] == 1
    assert len(own) == 1                                   # still ours: republished later
    mine = [r for r in caplog.records if "not stored yet" in r.getMessage()]
    assert [r.levelno for r in mine] == [logging.INFO]
    assert "1 refused it, 0 did not answer" in mine[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING
                and "offer" in r.getMessage()]


# -- shares by network source (a cold swarm: nobody has standing) ------------------------------

_FRESH = itertools.count()
ATTACKER, HONEST_A, HONEST_B = ("10.0.0.66", 4000), ("10.0.0.1", 4000), ("10.0.0.2", 4000)


def test_source_shares_count_per_key_and_in_all_and_give_up_the_latest_first():
    shares = SourceShares()
    shares.add(b"k1", b"e1", "a")
    shares.add(b"k1", b"e2", "a")
    shares.add(b"k2", b"e3", "a")
    shares.add(b"k1", b"e4", "b")
    assert len(shares) == 4 and shares.in_key(b"k1") == 3
    assert shares.share("a") == 3 and shares.share("a", b"k1") == 2 and shares.share("c") == 0
    assert shares.heaviest() == ("a", 3) and shares.heaviest(b"k2") == ("a", 1)
    assert shares.heaviest(b"k9") is None
    assert shares.latest("a") == (b"k2", b"e3") and shares.latest("a", b"k1") == (b"k1", b"e2")
    shares.add(b"k1", b"e1", "b")                 # a newer version stored by another source
    assert shares.share("a", b"k1") == 1 and shares.share("b", b"k1") == 2
    assert shares.discard(b"k2", b"e3") and not shares.discard(b"k2", b"e3")
    assert shares.heaviest(b"k2") is None and shares.share("a") == 1 and len(shares) == 3


def test_a_fair_victim_comes_from_a_source_holding_at_least_two_more():
    shares = SourceShares()
    for i in range(3):
        shares.add(b"k", bytes([i]), "heavy")
    shares.add(b"k", b"x", "light")
    assert fair_victim(shares, "new") == (b"k", bytes([2]))       # 3 >= 0 + 2
    assert fair_victim(shares, "light", b"k") == (b"k", bytes([2]))   # 3 >= 1 + 2
    shares.add(b"k", b"y", "light")
    assert fair_victim(shares, "light", b"k") is None              # 3 < 2 + 2: no ping-pong
    assert fair_victim(shares, "heavy") is None                    # never from itself
    assert fair_victim(SourceShares(), "new") is None


def _fresh_flood(store: OfferStorage, target: bytes, source, count: int, price: int = 120_000):
    """``count`` records of fresh keys (never used before) stored from ``source``."""
    return [store.offer(target, sealed(key(f"fresh {next(_FRESH)}"), price=price).raw, source)
            for _ in range(count)]


def test_in_a_cold_key_one_source_signing_with_many_keys_holds_its_share_only(monkeypatch):
    """No seller has standing: the attacker's fresh keys came first and filled the key's
    newcomer room, yet each honest seller storing from its own address takes a place."""
    monkeypatch.setattr(storage_module, "MAX_NEWCOMER_RECORDS_PER_KEY", 12)
    monkeypatch.setattr(storage_module, "MAX_NEWCOMER_RECORDS_PER_SOURCE_PER_KEY", 8)
    clock = Clock()
    store = OfferStorage(clock, policy=AdmissionPolicy(feeder=FEEDER))
    target = record_keys(record(SELLER))[0]
    flood = _fresh_flood(store, target, ATTACKER, 10)
    assert flood[:8] == [None] * 8 and set(flood[8:]) == {Drop.SOURCE_KEY_FULL}
    # a second source fills the 4 free places, then takes the attacker's until they are even
    assert _fresh_flood(store, target, "other", 10) == [None] * 6 + [Drop.NEWCOMER_QUOTA] * 4
    assert store.newcomers.share(ATTACKER, target) == 6 == store.newcomers.share("other", target)
    # before: first come, first kept -- the honest sellers were refused (newcomer_quota)
    honest_a, honest_b = sealed(key("honest a")), sealed(key("honest b"))
    assert store.offer(target, honest_a.raw, HONEST_A) is None
    assert store.offer(target, honest_b.raw, HONEST_B) is None
    assert store.evicted_for_share == 4 == store.evicted
    assert {honest_a.raw, honest_b.raw} <= set(store.records(target))
    assert store.newcomers.in_key(target) == 12 == len(store.records(target))
    assert store.newcomers.share(ATTACKER, target) == 5 == store.newcomers.share("other", target)
    # the flooders cannot take the places back: each holds the most
    assert _fresh_flood(store, target, ATTACKER, 1) == [Drop.NEWCOMER_QUOTA]
    assert _fresh_flood(store, target, "other", 1) == [Drop.NEWCOMER_QUOTA]
    # an honest seller's next offers find room while its address holds 2 fewer than theirs
    assert [store.offer(target, sealed(key("honest a"), n).raw, HONEST_A)
            for n in (2, 3, 4)] == [None, None, Drop.NEWCOMER_QUOTA]
    assert store.newcomers.share(HONEST_A, target) == 3
    assert {honest_a.raw, honest_b.raw} <= set(store.records(target))


def test_a_full_cold_node_gives_the_heaviest_source_s_places_to_others(monkeypatch):
    monkeypatch.setattr(storage_module, "MAX_NEWCOMER_RECORDS", 20)
    clock = Clock()
    store = OfferStorage(clock, policy=AdmissionPolicy(feeder=FEEDER))
    for band in range(5):                         # 5 keys x 4 records from one machine
        for i in range(4):
            mine = sealed(key(f"fill {band} {i}"), price=band * 250_000)
            assert store.offer(record_keys(mine.message)[0], mine.raw, ATTACKER) is None
    late = sealed(key("late"), price=7 * 250_000)
    assert store.offer(record_keys(late.message)[0], late.raw, ATTACKER) is Drop.NEWCOMER_QUOTA
    honest = sealed(key("honest"), price=9 * 250_000)
    assert store.offer(record_keys(honest.message)[0], honest.raw, HONEST_A) is None
    assert len(store.newcomers) == 20 and store.newcomers.share(ATTACKER) == 19
    assert store.records(record_keys(honest.message)[0]) == (honest.raw,)


def test_a_newer_version_is_charged_to_the_source_that_stored_it():
    clock = Clock()
    store = OfferStorage(clock)
    first = sealed(key("seller"), seq=1)
    target = record_keys(first.message)[0]
    assert store.offer(target, first.raw, ATTACKER) is None        # handed over by somebody
    assert store.offer(target, sealed(key("seller"), seq=2).raw, HONEST_A) is None
    assert store.newcomers.share(ATTACKER) == 0 and store.newcomers.share(HONEST_A) == 1
    assert len(store) == 1


def test_a_seller_with_standing_is_not_held_to_a_source_share(monkeypatch):
    monkeypatch.setattr(storage_module, "MAX_NEWCOMER_RECORDS_PER_SOURCE_PER_KEY", 2)
    store, honest, target = _with_standing_seller(2)
    assert [store.offer(target, sealed(honest, n).raw, HONEST_A) for n in range(1, 5)] == [None] * 4
    assert _fresh_flood(store, target, HONEST_A, 3) == [None, None, Drop.SOURCE_KEY_FULL]
