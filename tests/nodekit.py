"""Real nodes on loopback for tests: keys, meters, a settable clock, the interval's steps."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib

from ledger import CreditVoucher, LedgerStore, SigningKey, audit, seal
from p2pnode.config import Constraints, NodeConfig, Timing
from p2pnode.dht.faults import FaultPlan
from p2pnode.dht.server import DHTSettings
from p2pnode.meter import ProfileMeter
from p2pnode.node import Node
from simulator.swarm import VirtualClock

START = 1_782_907_200           # 2026-07-01 12:00 UTC: "normal" tariff frame
INTERVAL_S = 900
CREDIT_MICRO = 50_000_000
TIMING = Timing(buy_delay_s=1, window_s=60, request_timeout_s=0.3, attempts=4, max_rounds=4)
DHT = DHTSettings(ksize=10, rpc_timeout_s=0.3, lookup_timeout_s=3.0, publish_timeout_s=3.0)
ISSUER = SigningKey.from_seed(hashlib.sha256(b"test issuer").digest())


def key(i: int) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(f"test node {i}".encode()).digest())


@dataclasses.dataclass
class Swarm:
    nodes: list[Node]
    clock: VirtualClock

    async def interval(self, index: int) -> None:
        """Open, buy, settle and close interval ``index`` on every node, in step."""
        start = START + index * INTERVAL_S
        end = start + INTERVAL_S
        for offset, step in ((0, Node.open_interval), (TIMING.buy_delay_s, Node.buy),
                             (TIMING.window_s, Node.settle), (TIMING.window_s + 1, Node.close_interval)):
            self.clock.now_s = end + offset
            await asyncio.gather(*(step(node, start) for node in self.nodes))

    def rows(self) -> list:
        out = []
        for node in self.nodes:
            out += list(node.ledger.store.raw_blocks())
        return out


@contextlib.asynccontextmanager
async def swarm(nets_wh: list[list[int]], tmp_path, *, faults: FaultPlan | None = None,
                constraints: dict[int, Constraints] | None = None, configure=None):
    """One node per row of ``nets_wh`` (net Wh per interval: + surplus, - deficit).

    ``configure(i, config, meter) -> (config, meter)`` changes node ``i``'s before it starts."""
    clock = VirtualClock(START)
    nodes = []
    try:
        for i, nets in enumerate(nets_wh):
            config = NodeConfig(ledger=tmp_path / f"node-{i}.db", timing=TIMING,
                                location=f"0/{10 * i}/0",
                                constraints=(constraints or {}).get(i, Constraints()))
            meter = ProfileMeter(START, INTERVAL_S, [max(n, 0) for n in nets],
                                 [max(-n, 0) for n in nets])
            if configure is not None:
                config, meter = configure(i, config, meter)
            node = Node(config, meter, key=key(i), clock=clock, dht_settings=DHT, faults=faults)
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
