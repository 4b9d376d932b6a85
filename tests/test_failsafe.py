"""The grid-only fail-safe: the pure state machine, then real nodes cut off and reconnected."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

from p2pnode.api_metrics import metrics_text, node_registry
from p2pnode.api_views import health_view
from p2pnode.config import MarketConfig, NetworkConfig, NodeConfig
from p2pnode.dht.faults import FaultPlan
from p2pnode.failsafe import FailSafe, Mode, Observation
from p2pnode.liveness import observe_interval
from p2pnode.meter import ProfileMeter
from p2pnode.node import Node
from tests import nodekit
from tests.dhtkit import run
from tests.nodekit import INTERVAL_S, START


def test_grid_only_after_n_quiet_intervals_and_trading_at_the_first_answer():
    safe = FailSafe(enter_after=3)
    seen = []
    for i, peers in enumerate([2, 0, 0, 1, 0, 0, 0, 0, 1, 3]):
        health, changed = safe.observe(Observation(START + i * INTERVAL_S, peers, i % 2))
        seen.append((health.mode, changed, health.intervals_without_peers))
    T, G = Mode.TRADING, Mode.GRID_ONLY
    assert seen == [(T, False, 0), (T, False, 1), (T, False, 2), (T, False, 0), (T, False, 1),
                    (T, False, 2), (G, True, 3), (G, False, 4), (T, True, 0), (T, False, 0)]
    assert safe.health.entered == 1 and safe.health.observed == 10
    assert safe.health.since_interval_start_s == START + 8 * INTERVAL_S
    assert safe.health.overdue_settlements == 1 and not safe.health.trades_settled
    with pytest.raises(ValueError, match="enter_after = 0"):
        FailSafe(0)


def test_a_cut_off_node_goes_grid_only_and_comes_back_when_a_peer_answers(tmp_path, caplog):
    """Node 1 buys from node 0; its network is cut (every datagram it sends lost): after two
    quiet intervals it trades nothing and the grid takes its deficit; when the cut ends it finds
    node 0 again through its bootstrap address and buys again."""
    caplog.set_level(logging.WARNING, "p2pnode.liveness")
    intervals = 7
    nets = [[800] * intervals, [-500] * intervals]

    async def main():
        # interval by interval: the ex-post market (its steps do not overlap the next interval's)
        async with nodekit.swarm(nets, tmp_path, market=MarketConfig(mode="ex_post")) as swarm:
            seller, buyer = swarm.nodes
            host, port = seller.dht.address
            buyer.config = dataclasses.replace(
                buyer.config, network=NetworkConfig(bootstrap=(f"{host}:{port}",)),
                timing=dataclasses.replace(buyer.config.timing, failsafe_intervals=2))
            buyer.failsafe = FailSafe(2)
            modes = []
            for index in range(intervals):
                if index == 1:
                    buyer.dht.set_faults(FaultPlan(loss=1.0))     # the cut
                if index == 5:
                    buyer.dht.set_faults(None)                    # the cut ends
                start = START + index * INTERVAL_S
                health = await observe_interval(buyer, start)
                modes.append((health.mode.value, health.peers_reachable))
                await swarm.interval(index)
                if index == 3:      # what the owner sees while the node is grid-only
                    shown = (health_view(buyer, True, True),
                             metrics_text(node_registry(buyer)).decode())
            return modes, list(buyer.reports), dict(buyer.counters), buyer.failsafe.health, shown

    modes, reports, counters, health, (view, metrics) = _run(main)
    assert view == {"ok": False, "dht": True, "peer": True, "mode": "grid_only",
                    "peers_reachable": 0, "intervals_without_peers": 3, "trades_settled": True,
                    "overdue_settlements": 0}
    for line in ("p2p_failsafe_grid_only 1.0", "p2p_failsafe_entered_total 1.0",
                 "p2p_peers_reachable 0.0", "p2p_intervals_without_peers 3.0",
                 "p2p_overdue_settlements 0.0"):
        assert line in metrics.splitlines(), line
    assert modes == [("trading", 1), ("trading", 0), ("grid_only", 0), ("grid_only", 0),
                     ("grid_only", 0), ("trading", 1), ("trading", 1)]
    bought = [r.bought_wh for r in reports]
    imported = [r.grid_import_wh for r in reports]
    # interval 1: still trading but cut off: nothing found, the grid covers it
    assert bought == [500, 0, 0, 0, 0, 500, 500] and imported == [0, 500, 500, 500, 500, 0, 0]
    assert counters["discoveries"] == 4          # intervals 0, 1, 5, 6: none while grid-only
    assert counters["failsafe_entered"] == 1 and counters["failsafe_left"] == 1
    assert health.entered == 1 and health.trades_settled
    messages = [r.getMessage() for r in caplog.records]
    assert any("grid only from interval" in m for m in messages)
    assert any("reachable again" in m for m in messages)


def _run(main):
    out = []

    async def wrapped():
        out.append(await main())

    run(wrapped())
    return out[0]


def test_the_daemon_loop_observes_every_interval(tmp_path):
    """``Node.run`` feeds the fail-safe: a node alone goes grid-only after one quiet interval
    and records its deficit as grid import."""
    from p2pnode.commands.run import ReplayClock

    speed = 1800.0          # an interval in 0.5 s
    config = NodeConfig(ledger=tmp_path / "alone.db", timing=dataclasses.replace(
        nodekit.TIMING, failsafe_intervals=1, window_s=300), feeder="F",
        market=MarketConfig(mode="ex_post"))   # one interval after another, on the meter
    meter = ProfileMeter(START - INTERVAL_S, INTERVAL_S, [0] * 8, [300] * 8)

    async def main():
        clock = ReplayClock(START - 1, speed, running=False)
        async with Node(config, meter, key=nodekit.key(9), clock=clock,
                        dht_settings=nodekit.DHT) as node:
            clock.start()
            await node.run(until_s=START + 2 * INTERVAL_S + 1, speed=speed)
            return node.failsafe.health, list(node.reports)

    health, reports = _run(main)
    # every interval the loop ran was observed first; the last one observed may still be open
    assert health.observed >= len(reports) >= 2
    assert health.mode is Mode.GRID_ONLY and health.entered == 1
    assert [r.grid_import_wh for r in reports] == [300] * len(reports)
