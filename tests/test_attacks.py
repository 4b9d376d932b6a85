"""The attacks of the hostile-peer report, performed against real nodes on loopback.

Each test runs the small hostile swarm (:mod:`simulator.hostile_swarm`: 3 sellers and 3 buyers,
each on its own loopback address, trading on a virtual clock) with one attack active after the
warm-up, and asserts that honest trading went on in every attacked interval and that every
ledger verifies.  Bounded: at most 2 attacked intervals, a few thousand datagrams.
"""

from __future__ import annotations

import dataclasses

from p2pnode.trading import schedule
from simulator import hostile_swarm as hs
from simulator.hostile_swarm import ATTACKS, WARMUP_INTERVALS, Shape, run_swarm
from tests.dhtkit import run

SHAPE = Shape(intervals=WARMUP_INTERVALS + 1)
EVERY_INTERVAL = [3] * SHAPE.intervals      # 3 buyers, each buys in every interval


def attacked(name: str, shape: Shape = SHAPE, tmp_path=None) -> dict:
    out = {}

    async def main():
        out.update(await run_swarm(tmp_path, shape, ATTACKS[name]()))

    run(main())
    return out


def test_storage_fill_by_fresh_keys_leaves_the_sellers_with_history_trading(tmp_path):
    """4,800 records signed by fresh keys, stored on every node (the report: 4,100 records
    stopped all trading for 5 intervals)."""
    out = attacked("storage_fill", tmp_path=tmp_path)
    assert out["buyers"] == EVERY_INTERVAL
    assert out["valid"], out["problems"]
    assert out["extra"]["storage_fill_datagrams"] > 10_000


def test_storage_fill_against_a_cold_swarm_leaves_the_honest_sellers_trading(tmp_path):
    """The fill from the first interval on, before any seller has standing: fresh keys and
    honest sellers look alike to the admission rules, so only the budgets per network source
    keep the honest offers stored (before them, every node refused the sellers' offers as
    ``newcomer_quota`` and no buyer bought anything).  Two attacker sources: a live node whose
    address the honest nodes check, and a raw socket that claims a fresh key per datagram
    (charged to the one unchecked source)."""
    out = attacked("storage_fill_cold", Shape(intervals=2), tmp_path=tmp_path)
    assert out["buyers"] == [3, 3]
    assert out["valid"], out["problems"]
    assert out["extra"]["storage_fill_cold_datagrams"] > 20_000
    assert out["extra"]["storage_fill_cold_evicted"] > 0   # the honest offers took their place
    assert out["extra"]["storage_fill_cold_per_key_max"] == 16


def test_pings_from_unknown_keys_are_not_amplified(tmp_path):
    """The report: one 62-byte ping drew 381 KB of stores (x6,150)."""
    out = attacked("amplification", tmp_path=tmp_path)
    assert out["buyers"] == EVERY_INTERVAL
    assert out["valid"], out["problems"]
    assert 0 < out["extra"]["amplification_max"] <= 3


def test_ground_ids_next_to_the_offer_keys_eclipse_them_only_without_diversity(tmp_path,
                                                                             monkeypatch):
    """Nodes ground next to the interval's offer keys swallow every offer stored on them: with
    one address allowed any number of contacts, the interval's trading stops; with the default
    limit, it goes on."""
    out = attacked("ground_ids", tmp_path=tmp_path / "defended")
    assert out["buyers"] == EVERY_INTERVAL
    assert out["valid"], out["problems"]
    assert out["extra"]["ground_ids_contacts_refused"] > 0
    monkeypatch.setattr(hs, "DHT", dataclasses.replace(hs.DHT, max_contacts_per_host=None))
    undefended = attacked("ground_ids", tmp_path=tmp_path / "undefended")
    assert undefended["trades"][WARMUP_INTERVALS:] == [0]   # the attack is real


def test_a_seller_that_lost_its_wal_refuses_to_start_and_the_others_trade_on(tmp_path):
    """The report: the chain fell back 81 blocks, the node wrote on at sequence numbers its
    counterparties held, and the honest chain failed verify."""
    out = attacked("wal_loss", shape=dataclasses.replace(SHAPE, intervals=WARMUP_INTERVALS + 2),
                   tmp_path=tmp_path)
    assert out["extra"]["wal_loss_refused_start"] is True
    (why,) = out["refused"].values()
    assert "blocks lost" in why and "p2pnode ledger recover" in why
    assert out["buyers"] == [3] * (WARMUP_INTERVALS + 2)   # two sellers cover the buyers
    assert out["valid"], out["problems"]


def test_idle_and_half_open_connections_do_not_stop_the_sellers(tmp_path):
    """600 connections to each seller (past its limit of 512) that send nothing or half a
    request (the report: 1,030 idle connections made a node unreachable for 45 s)."""
    out = attacked("idle_connections", tmp_path=tmp_path)
    assert out["buyers"] == EVERY_INTERVAL
    assert out["valid"], out["problems"]
    assert out["extra"]["idle_connections_opened"] == 1800
    assert out["extra"]["idle_connections_closed"] >= 3 * (600 - 512)


def test_buyers_30_s_ahead_of_or_behind_the_sellers_still_trade(tmp_path, monkeypatch):
    """Buyers' clocks 30 s ahead of every seller's (they look before any offer is published),
    then 30 s behind (their messages arrive 30 s old): every buyer covers its need in both
    intervals, by looking again through the buy window.  Without the second look the interval
    whose buyers are ahead is lost (the report: a buyer 5.5 s ahead never traded)."""
    out = attacked("clock_skew", shape=dataclasses.replace(SHAPE, intervals=WARMUP_INTERVALS + 2),
                   tmp_path=tmp_path / "skewed")
    assert out["bought_wh"][WARMUP_INTERVALS:] == [[700] * 3] * 2
    assert out["valid"], out["problems"]
    assert out["extra"]["clock_skew_rediscoveries"] >= 3
    assert out["extra"]["clock_skew_dropped_stale_future"] == 0
    monkeypatch.setattr(schedule, "MAX_DISCOVERIES", 1)
    once = attacked("clock_skew", shape=dataclasses.replace(SHAPE, intervals=WARMUP_INTERVALS + 2),
                    tmp_path=tmp_path / "one_look")
    ahead, behind = once["trades"][WARMUP_INTERVALS:]
    assert ahead == 0 and behind >= 3    # the attack is real: buyers ahead found nothing


def test_a_key_without_credit_asking_for_1000000_wh_gets_nothing(tmp_path, monkeypatch):
    """A fresh key asks every seller for 1,000,000 Wh as soon as the offers are out -- without
    evidence, with a voucher it issued itself, with an honest buyer's deposit block -- and 20
    times for 1 Wh: it gets nothing, each refusal counted, and the honest buyers trade as
    before.  Without the credit check the seller grants it the whole surplus and the honest
    buyers are denied ``sold_out`` (the report)."""
    out = attacked("no_credit", tmp_path=tmp_path / "defended")
    extra = out["extra"]
    assert extra["no_credit_granted_wh"] == 0
    assert extra["no_credit_denied_no_credit"] == 3 * (2 + 20)       # per seller: none, own, small
    assert extra["no_credit_denied_bad_credit_proof"] == 3          # another key's deposit
    assert out["buyers"] == EVERY_INTERVAL
    assert out["bought_wh"][WARMUP_INTERVALS] == [700] * 3
    assert out["valid"], out["problems"]
    from p2pnode import node_seller
    from p2pnode.trading.credit import CreditEvidence
    monkeypatch.setattr(node_seller, "proven_credit", lambda *args: CreditEvidence(10**15, 0))
    undefended = attacked("no_credit", tmp_path=tmp_path / "undefended")
    assert undefended["extra"]["no_credit_granted_wh"] == 3 * 2400   # the attack is real
    assert undefended["trades"][WARMUP_INTERVALS:] == [0]
