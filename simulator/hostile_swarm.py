"""A small swarm of real nodes on loopback, traded interval by interval, with or without an attack.

The attack suite (``benchmarks/attacks.py``) and the regression tests run the same swarm twice
on the same profiles -- unattacked, then with one attack from :data:`ATTACKS` active after
:data:`WARMUP_INTERVALS` -- and compare honest trading interval by interval.

Honest nodes each have their own loopback address (127.0.0.10, .11, ...), as meters on a feeder
network have their own; the attacker's machine is :data:`ATTACKER_HOST`.  Time is a virtual
clock the runner sets (each interval's steps, as :mod:`tests.nodekit` does); sellers have
a surplus and buyers a deficit in every interval.

An attack is a class with ``name``, ``begin(swarm, index)`` (before each attacked interval)
and ``end(swarm) -> dict`` (its own measures), registered in :data:`ATTACKS`: add an entry to
add an attack to the suite.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import heapq
import random
import tempfile
from pathlib import Path

from ledger import (
    CreditVoucher, LedgerError, LedgerRules, SigningKey, audit, decode_envelope, seal,
)
from ledger.verify import ForkProof
from p2pnode.config import CreditConfig, MarketConfig, NetworkConfig, NodeConfig, Timing
from p2pnode.dht.admission import UNCHECKED_SOURCE
from p2pnode.dht.server import DHTSettings, OfferDHT
from p2pnode.meter import ProfileMeter
from p2pnode.negotiation import PeerRequest, Status, check_reply
from p2pnode.node import Node
from p2pnode.peer import PeerClient
from p2pnode.trading.schedule import STEPS, events
from p2pnode.offers import offer_key, price_band
from simulator import hostile
from simulator.swarm import SkewedClock, VirtualClock

__all__ = ["ATTACKS", "ATTACKER_HOST", "HostileSwarm", "Shape", "first_attacked", "run_swarm"]

START_S = 1_782_907_200            # 2026-07-01 12:00 UTC
INTERVAL_S = 900
FEEDER = "feeder-hostile"
ATTACKER_HOST = "127.0.0.250"
WARMUP_INTERVALS = 3               # sellers earn standing in the DHT before any attack
TIMING = Timing(buy_delay_s=1, window_s=60, request_timeout_s=0.3, attempts=3, max_rounds=4)
DHT = DHTSettings(ksize=10, rpc_timeout_s=0.3, lookup_timeout_s=3.0, publish_timeout_s=3.0)
ISSUER = SigningKey.from_seed(hashlib.sha256(b"hostile swarm issuer").digest())
CREDIT = CreditConfig(trusted_issuers=(ISSUER.public.hex(),))
MARKET = MarketConfig(mode="ex_post")   # metered intervals: the attacks hit the DHT, the peer
                                        # links and the ledger the same in every market mode
CREDIT_MICRO = 50_000_000


@dataclasses.dataclass(frozen=True)
class Shape:
    sellers: int = 3
    buyers: int = 3
    intervals: int = 7
    surplus_wh: int = 2400
    deficit_wh: int = 700


def honest_host(i: int) -> str:
    return f"127.0.0.{10 + i}"


class HostileSwarm:
    """Honest nodes (sellers first, then buyers) on their own loopback addresses, each with
    its own clock (the swarm's, plus a skew an attack may set)."""

    def __init__(self, workdir: Path, shape: Shape, seed: int = 1):
        self.workdir, self.shape, self.seed = Path(workdir), shape, seed
        self.clock = VirtualClock(START_S)
        self.clocks = [SkewedClock(self.clock) for _ in range(shape.sellers + shape.buyers)]
        self.nodes: list[Node | None] = []
        self.configs: list[NodeConfig] = []
        self.keys: list[SigningKey] = []
        self.refused: dict[int, str] = {}     # node index -> why it could not start
        self.attack = None                    # the active attack (its after_step is called)

    async def start(self) -> None:
        shape = self.shape
        for i in range(shape.sellers + shape.buyers):
            key = SigningKey.from_seed(hashlib.sha256(f"hostile {self.seed} {i}".encode()).digest())
            config = NodeConfig(ledger=self.workdir / f"node-{i}.db", feeder=FEEDER, timing=TIMING,
                                credit=CREDIT, location=f"0/{10 * i}/0",
                                network=NetworkConfig(host=honest_host(i)), market=MARKET)
            self.keys.append(key)
            self.configs.append(config)
            node = await self._launch(i)
            node.deposit(seal(CreditVoucher(ISSUER.public, node.public, bytes([i]) * 16,
                                            CREDIT_MICRO), ISSUER))
            self.nodes.append(node)
        first = self.nodes[0].dht.address
        await asyncio.gather(*(n.dht.bootstrap([first]) for n in self.nodes[1:]))
        await self.nodes[0].dht.bootstrap([self.nodes[-1].dht.address])

    async def _launch(self, i: int) -> Node:
        shape, seller = self.shape, i < self.shape.sellers
        n = shape.intervals + 1
        meter = ProfileMeter(START_S, INTERVAL_S, [shape.surplus_wh if seller else 0] * n,
                             [0 if seller else shape.deficit_wh] * n)
        node = Node(self.configs[i], meter, key=self.keys[i], clock=self.clocks[i],
                    dht_settings=DHT, ledger_sync="normal")
        await node.start()
        return node

    @property
    def live(self) -> list[Node]:
        return [n for n in self.nodes if n is not None]

    def dht_addresses(self) -> list[tuple[str, int]]:
        return [n.dht.address for n in self.live]

    def start_of(self, index: int) -> int:
        return START_S + index * INTERVAL_S

    def buyer_keys(self, index: int) -> list[bytes]:
        """The DHT keys buyers look up for interval ``index`` (feed-in .. retail price bands)."""
        config = self.configs[-1]
        start = self.start_of(index)
        retail = config.tariffs.frame_at((start % 86400) / 3600).retail_micro_per_kwh
        bands = range(price_band(config.tariffs.feed_in_micro_per_kwh), price_band(retail) + 1)
        return [offer_key(FEEDER, start, b) for b in bands]

    async def interval(self, index: int) -> tuple[int, int]:
        """Trade interval ``index`` on every live node; the trades honest buyers made in it and
        how many buyers bought (a buyer splits its need among sellers without a record:
        :meth:`p2pnode.reputation.Reputation.share_cap`).

        Each node runs each step when its *own* clock reads the step's time, and the steps a
        node adds (:meth:`Node.follow_up`: a buyer looking again for offers) too; steps due at
        the same moment run together."""
        start = self.start_of(index)
        queue = []
        for i, node in enumerate(self.nodes):
            if node is not None:
                for at, step, _ in events(self.configs[i], [start]):
                    heapq.heappush(queue, (at - self.clocks[i].offset_s, STEPS.index(step), i, step))
        while queue:
            due = [heapq.heappop(queue)]
            while queue and queue[0][:2] == due[0][:2]:
                due.append(heapq.heappop(queue))
            self.clock.now_s = due[0][0]
            await asyncio.gather(*(self.nodes[i].step(step, start) for *_, i, step in due
                                   if self.nodes[i] is not None))
            after_step = getattr(self.attack, "after_step", None)
            if after_step is not None:
                await after_step(self, index, due[0][3])
            for *_, i, step in due:
                if self.nodes[i] is not None:
                    for at, again, _ in self.nodes[i].follow_up(step, start):
                        heapq.heappush(queue, (at - self.clocks[i].offset_s,
                                               STEPS.index(again), i, again))
        bought = [node.public for node in self.live for trade in node.bought.values()
                  if trade.payload.interval_start_s == start]
        return len(bought), len(set(bought))

    def bought_wh(self, index: int) -> list[int]:
        """Energy each live buyer bought for interval ``index``."""
        start = self.start_of(index)
        return [sum(t.payload.energy_wh for t in node.bought.values()
                    if t.payload.interval_start_s == start)
                for node in self.nodes[self.shape.sellers:] if node is not None]

    async def restart(self, i: int, damage=None) -> bool:
        """Stop node ``i``, apply ``damage(ledger path)``, start it again; False if it refused."""
        node = self.nodes[i]
        if node is not None:
            await node.stop()
        self.nodes[i] = None
        if damage is not None:
            damage(self.configs[i].ledger)
        try:
            node = await self._launch(i)
        except LedgerError as exc:
            self.refused[i] = str(exc)
            return False
        await node.dht.bootstrap([self.live[0].dht.address])
        self.nodes[i] = node
        return True

    async def quiet(self, timeout_s: float = 20.0) -> None:
        """Wait until the nodes' storages stop changing (a flood has been taken in)."""
        def state():
            return [(len(n.dht.storage), sum(n.dht.storage.dropped.values())) for n in self.live]
        async with asyncio.timeout(timeout_s):
            before = state()
            while True:
                await asyncio.sleep(0.25)
                now = state()
                if now == before:
                    return
                before = now

    def ledgers_valid(self) -> tuple[bool, list[str]]:
        """Audit every ledger file together (fork proofs included) and SQLite's integrity."""
        rows, forks, problems = [], [], []
        for i, node in enumerate(self.nodes):
            if node is None:
                continue
            store = node.ledger.store
            rows += list(store.raw_blocks())
            forks += [ForkProof(f.raw_kept, f.raw_other) for f in store.forks()]
            problems += [f"node {i}: {p}" for p in store.integrity_problems()]
        report = audit(rows, LedgerRules(trusted_issuers=frozenset({ISSUER.public})), forks)
        problems += [str(p) for p in report.problems]
        return not problems and not report.forks, problems

    async def stop(self) -> None:
        for node in self.live:
            await node.stop()


# -- the attacks -------------------------------------------------------------------------------

class StorageFill:
    """Every node's storage filled by fresh keys: the buyers' keys of the interval past their
    cap, and more keys than a node holds (the report's 4,100 records)."""

    name = "storage_fill"

    def __init__(self):
        self.per_band, self.other_keys = 300, 4200   # past MAX_RECORDS_PER_KEY and MAX_KEYS
        self.rng = random.Random(7)
        self.datagrams = 0

    async def begin(self, swarm: HostileSwarm, index: int) -> None:
        probe = await hostile.UdpProbe.open(ATTACKER_HOST)
        start = swarm.start_of(index)
        config = swarm.configs[-1]
        first = price_band(config.tariffs.feed_in_micro_per_kwh)
        bands = range(first, first + len(swarm.buyer_keys(index)))
        records = hostile.flood_records(self.rng, FEEDER, start, bands=bands,
                                        per_band=self.per_band, other_keys=self.other_keys,
                                        interval_s=INTERVAL_S, now_s=start + INTERVAL_S)
        self.datagrams += await hostile.send_stores(probe, swarm.dht_addresses(), records,
                                                    self.rng)
        probe.close()
        await swarm.quiet()             # the nodes took them in before the sellers publish

    async def end(self, swarm: HostileSwarm) -> dict:
        """Datagrams sent; records the honest nodes took from senders whose address did not
        answer its check (charged to the one unchecked source) and evicted; the most records
        the attacker held under one key of one node at the end (its checked address's or the
        unchecked source's share)."""
        storages = [n.dht.storage for n in swarm.live]
        return {"storage_fill_datagrams": self.datagrams,
                "storage_fill_evicted": sum(s.evicted for s in storages),
                "storage_fill_unchecked": sum(n.dht.counters().get("store_unchecked", 0)
                                              for n in swarm.live),
                "storage_fill_per_key_max": max((s.newcomers.share(source, k)
                                                 for s in storages for k in s.keys()
                                                 for source in (ATTACKER_HOST, UNCHECKED_SOURCE)),
                                                default=0)}


class ColdStorageFill(StorageFill):
    """The storage fill against a cold swarm: from the first interval on, before any seller has
    standing anywhere, so the attacker's fresh keys and the honest sellers' look alike.  Two
    sources send it: a live DHT node of the attacker's (it answers pings, so its address is
    checked) claiming its own key, and a raw socket claiming a fresh key per datagram (never
    checked); the records alternate between them, key by key."""

    name = "storage_fill_cold"
    attack_from = 0

    def __init__(self):
        super().__init__()
        self.node = None

    async def begin(self, swarm: HostileSwarm, index: int) -> None:
        if self.node is None:
            self.node = OfferDHT(hostile.fresh_key(self.rng), settings=DHT, clock=swarm.clock)
            await self.node.start(ATTACKER_HOST, 0, swarm.dht_addresses()[:1])
        probe = await hostile.UdpProbe.open(ATTACKER_HOST)
        live, raw = self._records(swarm, index)
        targets = swarm.dht_addresses()
        datagrams = hostile.store_datagrams(targets, live, self.rng, caller=self.node.key.public)
        sent = await hostile.send_paced(self.node.server.protocol.transport, datagrams)
        self.datagrams += len(sent) + await hostile.send_stores(probe, targets, raw, self.rng)
        probe.close()
        await swarm.quiet()

    def _records(self, swarm: HostileSwarm, index: int) -> tuple[dict, dict]:
        config = swarm.configs[-1]
        first = price_band(config.tariffs.feed_in_micro_per_kwh)
        start = swarm.start_of(index)
        records = hostile.flood_records(
            self.rng, FEEDER, start, bands=range(first, first + len(swarm.buyer_keys(index))),
            per_band=self.per_band, other_keys=self.other_keys, interval_s=INTERVAL_S,
            now_s=start + INTERVAL_S)
        keys = list(records)
        return ({k: records[k] for k in keys[0::2]}, {k: records[k] for k in keys[1::2]})

    async def end(self, swarm: HostileSwarm) -> dict:
        out = await super().end(swarm)
        if self.node is not None:
            await self.node.stop()
        return {f"storage_fill_cold_{k.removeprefix('storage_fill_')}": v for k, v in out.items()}


def first_attacked(attack) -> int:
    """The first interval ``attack`` is active in (after the warm-up unless it says otherwise)."""
    return getattr(attack, "attack_from", WARMUP_INTERVALS)


class Amplification:
    """Pings from fresh keys to every node; bytes back per byte sent (a spoofed victim's load)."""

    name = "amplification"

    def __init__(self):
        self.pings = 200
        self.rng = random.Random(8)
        self.factors: list[float] = []

    async def begin(self, swarm: HostileSwarm, index: int) -> None:
        probe = await hostile.UdpProbe.open(ATTACKER_HOST)
        await hostile.ping_flood(probe, swarm.dht_addresses(), self.pings, self.rng)
        await asyncio.sleep(1.0)        # every reply, ping and store it draws has come back
        self.factors.append(probe.amplification)
        probe.close()

    async def end(self, swarm: HostileSwarm) -> dict:
        return {"amplification_max": round(max(self.factors, default=0.0), 3)}


class GroundIds:
    """Nodes at ids ground next to the interval's offer keys, swallowing what is stored there."""

    name = "ground_ids"
    BITS = 8

    def __init__(self):
        self.rng = random.Random(9)
        self.nodes = []

    async def begin(self, swarm: HostileSwarm, index: int) -> None:
        await self._stop_nodes()
        keys = [k for target in swarm.buyer_keys(index)
                for k in hostile.ground_keys(target, DHT.ksize, self.BITS, self.rng)]
        entry = swarm.dht_addresses()[:3]
        self.nodes = [await hostile.start_ground_node(k, ATTACKER_HOST, entry, DHT, swarm.clock)
                      for k in keys]

    async def _stop_nodes(self) -> None:
        for node in self.nodes:
            await node.stop()
        self.nodes = []

    async def end(self, swarm: HostileSwarm) -> dict:
        await self._stop_nodes()
        refused = sum(n.dht.server.counters["contact_host_full"] for n in swarm.live)
        return {"ground_ids_contacts_refused": refused}


class WalLoss:
    """A seller's ledger loses its -wal file across a restart; it must refuse to write on."""

    name = "wal_loss"

    def __init__(self):
        self.done = False
        self.refused = False

    async def begin(self, swarm: HostileSwarm, index: int) -> None:
        if self.done:
            return
        self.done = True
        path = swarm.configs[0].ledger
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "copy.db"
            hostile.copy_without_wal(path, copy)
            started = await swarm.restart(0, damage=lambda db: hostile.put_back(copy, db))
        self.refused = not started

    async def end(self, swarm: HostileSwarm) -> dict:
        return {"wal_loss_refused_start": self.refused}


class IdleConnections:
    """Connections that send nothing, or half a request, to every seller's peer endpoint."""

    name = "idle_connections"

    def __init__(self):
        self.per_seller = 600           # past the endpoint's 512-connection limit
        self.held = []

    async def begin(self, swarm: HostileSwarm, index: int) -> None:
        if self.held:
            return
        for node in swarm.live[:swarm.shape.sellers]:
            self.held += await hostile.open_idle_connections(
                node.config.network.host, node.peer_server.port, self.per_seller)

    async def end(self, swarm: HostileSwarm) -> dict:
        closed = sum(sum(n.peer_server.site.guard.closed.values()) for n in swarm.live)
        for _, writer in self.held:
            writer.close()
        return {"idle_connections_opened": len(self.held), "idle_connections_closed": closed}


class ClockSkew:
    """Every seller's clock 15 s behind and every buyer's 15 s ahead (buyers 30 s ahead of all
    sellers: they look for offers before any is published), then the other way round (buyers 30
    s behind: their messages arrive 30 s old), by turns from one attacked interval to the next.
    Not an attacker's doing but the clocks of cheap meters; the report: a buyer 5.5 s ahead of
    the seller never traded."""

    name = "clock_skew"
    SKEW_S = 15.0

    def __init__(self):
        self.turn = 0
        self.bought_short = 0      # buyers that bought less than their need in an interval

    async def begin(self, swarm: HostileSwarm, index: int) -> None:
        sign = 1 if self.turn % 2 == 0 else -1
        self.turn += 1
        sellers = swarm.shape.sellers
        for i, clock in enumerate(swarm.clocks):
            clock.offset_s = sign * (self.SKEW_S if i >= sellers else -self.SKEW_S)

    async def end(self, swarm: HostileSwarm) -> dict:
        counters = [n.counters for n in swarm.live]
        return {"clock_skew_s": 2 * self.SKEW_S,
                "clock_skew_rediscoveries": sum(c["rediscoveries"] for c in counters),
                "clock_skew_dropped_stale_future": sum(
                    c["peer_dropped_stale"] + c["peer_dropped_future"] for c in counters)}


class NoCredit:
    """A key with no credit asks every seller for 1,000,000 Wh as soon as the offers are out:
    without evidence, with a voucher it issued itself, with an honest buyer's deposit, and 20
    times for 1 Wh (the report: such a key was granted the seller's whole surplus, and 300
    requests of 1 Wh were all accepted, each a permanent TRADE proposal)."""

    name = "no_credit"
    ASK_WH = 1_000_000
    SMALL_ASKS = 20

    def __init__(self):
        rng = random.Random(10)
        self.key, self.self_issuer = hostile.fresh_key(rng), hostile.fresh_key(rng)
        self.sent = self.granted_wh = 0
        self.denied: collections.Counter[str] = collections.Counter()

    async def begin(self, swarm: HostileSwarm, index: int) -> None:
        pass

    async def after_step(self, swarm: HostileSwarm, index: int, step: str) -> None:
        if step != "open":
            return
        start = swarm.start_of(index)
        offers = [o.record.message for n in swarm.live for o in (n.book.offers.get(start),)
                  if o is not None and o.record is not None]
        now_ms = int(swarm.clock() * 1000)
        honest = swarm.live[-1].credit_evidence()    # an honest buyer's deposit, as it shows it
        own = (hostile.deposit_block(self.key, self.self_issuer, 10**12, bytes(16)),)
        requests = []
        for blocks in ((), own, honest):
            requests += hostile.greedy_requests(self.key, offers, self.ASK_WH, now_ms, blocks)
        for _ in range(self.SMALL_ASKS):
            requests += hostile.greedy_requests(self.key, offers, 1, now_ms)
        client = PeerClient()
        await client.start()
        try:
            replies = await asyncio.gather(*(client.send(endpoint, raw, 2.0)
                                             for endpoint, raw in requests))
        finally:
            await client.stop()
        self.sent += len(requests)
        for (_, raw), answer in zip(requests, replies):
            reply = None if answer is None else check_reply(
                answer, decode_envelope(raw, PeerRequest)[0].message)
            if reply is None or isinstance(reply, str):
                self.denied["no_reply"] += 1
            elif reply.message.status is Status.ACCEPTED:
                self.granted_wh += reply.message.energy_wh
            else:
                self.denied[reply.message.reason] += 1

    async def end(self, swarm: HostileSwarm) -> dict:
        return {"no_credit_requests": self.sent, "no_credit_granted_wh": self.granted_wh,
                **{f"no_credit_denied_{reason}": n for reason, n in sorted(self.denied.items())}}


ATTACKS = {cls.name: cls for cls in (StorageFill, ColdStorageFill, Amplification, GroundIds, WalLoss,
                                     IdleConnections, ClockSkew, NoCredit)}


async def run_swarm(workdir: Path, shape: Shape, attack=None) -> dict:
    """Trade ``shape.intervals`` intervals, the attack active after the warm-up (or from the
    interval its ``attack_from`` names)."""
    Path(workdir).mkdir(parents=True, exist_ok=True)
    swarm = HostileSwarm(workdir, shape)
    await swarm.start()
    trades, buyers, bought, extra = [], [], [], {}
    try:
        for index in range(shape.intervals):
            if attack is not None and index >= first_attacked(attack):
                swarm.attack = attack
                await attack.begin(swarm, index)
            made, buying = await swarm.interval(index)
            trades.append(made)
            buyers.append(buying)
            bought.append(swarm.bought_wh(index))
        if attack is not None:
            extra = await attack.end(swarm)
        valid, problems = swarm.ledgers_valid()
    finally:
        await swarm.stop()
    return {"trades": trades, "buyers": buyers, "bought_wh": bought, "valid": valid,
            "problems": problems[:10], "extra": extra, "refused": swarm.refused}
