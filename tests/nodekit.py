"""Real nodes on loopback for tests: keys, meters, a settable clock, the interval's steps."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib

from ledger import CreditVoucher, LedgerStore, SigningKey, audit, seal
from p2pnode.config import (
    Constraints, CreditConfig, MarketConfig, NetworkConfig, NodeConfig, Timing,
)
from p2pnode.dht.faults import FaultPlan
from p2pnode.dht.server import DHTSettings
from p2pnode.meter import ProfileMeter
from p2pnode.errors import ConfigError
from p2pnode.node import Node
from p2pnode.trading.schedule import events
from simulator.swarm import VirtualClock

START = 1_782_907_200           # 2026-07-01 12:00 UTC: "normal" tariff frame
INTERVAL_S = 900
CREDIT_MICRO = 50_000_000
TIMING = Timing(buy_delay_s=1, window_s=60, request_timeout_s=0.3, attempts=4, max_rounds=4)
DHT = DHTSettings(ksize=10, rpc_timeout_s=0.3, lookup_timeout_s=3.0, publish_timeout_s=3.0,
                  max_contacts_per_host=None)   # every node shares 127.0.0.1
ISSUER = SigningKey.from_seed(hashlib.sha256(b"test issuer").digest())
CREDIT = CreditConfig(trusted_issuers=(ISSUER.public.hex(),))


def key(i: int) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(f"test node {i}".encode()).digest())


class PerfectForesight:
    """A forecaster that knows the meter's future: trading tests see exactly the energy the
    meter will measure (the forecasts' own quality is tested in tests/test_forecast.py)."""

    def __init__(self, meter):
        self.meter = meter

    def observe(self, interval_start_s: int, generation_wh: int, consumption_wh: int) -> None:
        pass

    def predict(self, target_start_s: int, issued_at_s: float) -> tuple[int, int]:
        try:
            reading = self.meter.read(target_start_s, INTERVAL_S)
        except ConfigError:   # outside the test's intervals: nothing happens there
            return 0, 0
        return reading.generation_wh, reading.consumption_wh


@dataclasses.dataclass
class Swarm:
    nodes: list[Node]
    clock: VirtualClock

    async def interval(self, index: int) -> None:
        """Open, buy, settle and close interval ``index`` on every node, in step."""
        await self.intervals([index])

    async def intervals(self, indices) -> None:
        """The steps of the intervals ``indices`` on every node, in time order."""
        config = self.nodes[0].config
        for at, step, start in events(config, [START + i * INTERVAL_S for i in indices]):
            self.clock.now_s = max(self.clock.now_s, at)
            await asyncio.gather(*(node.step(step, start) for node in self.nodes))

    def rows(self) -> list:
        out = []
        for node in self.nodes:
            out += list(node.ledger.store.raw_blocks())
        return out


@contextlib.asynccontextmanager
async def swarm(nets_wh: list[list[int]], tmp_path, *, faults: FaultPlan | None = None,
                constraints: dict[int, Constraints] | None = None, transport: str = "http",
                market: MarketConfig = MarketConfig(), configure=None):
    """One node per row of ``nets_wh`` (net Wh per interval: + surplus, - deficit); peer links
    over ``transport`` ("http" or "libp2p").

    ``configure(i, config, meter) -> (config, meter)`` changes node ``i``'s before it starts."""
    clock = VirtualClock(START - 2 * 86400)   # before any step (day-ahead: the day before)
    nodes = []
    try:
        for i, nets in enumerate(nets_wh):
            config = NodeConfig(ledger=tmp_path / f"node-{i}.db", timing=TIMING, credit=CREDIT,
                                location=f"0/{10 * i}/0", network=NetworkConfig(transport=transport),
                                market=market,
                                constraints=(constraints or {}).get(i, Constraints()))
            meter = ProfileMeter(START, INTERVAL_S, [max(n, 0) for n in nets],
                                 [max(-n, 0) for n in nets])
            if configure is not None:
                config, meter = configure(i, config, meter)
            node = Node(config, meter, key=key(i), clock=clock, dht_settings=DHT, faults=faults,
                        forecaster=PerfectForesight(meter))
            await node.start()
            nodes.append(node)
            node.deposit(seal(CreditVoucher(ISSUER.public, node.public, bytes([i % 256]) * 16,
                                            CREDIT_MICRO), ISSUER))
        entry = nodes[0].dht.address
        await asyncio.gather(*(n.dht.bootstrap([entry]) for n in nodes[1:]))
        await asyncio.gather(*(n.dht.bootstrap([nodes[-1].dht.address]) for n in nodes[:1]))
        yield Swarm(nodes, clock)
    finally:
        for node in nodes:
            await node.stop()


def audit_paths(paths) -> list:
    rows = []
    for path in paths:
        store = LedgerStore(path)
        rows += list(store.raw_blocks())
        store.close()
    return audit(rows).problems
