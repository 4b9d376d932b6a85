"""The trade path: co-signed trades per second between real nodes, and what one trade costs.

    python benchmarks/trade_path.py [--quick] [--json PATH] [--profile]

(also run by ``benchmarks/dht.py``, whose JSON carries the same keys).  P seller/buyer pairs of
real :class:`~p2pnode.node.Node` s (DHT, HTTP peer endpoint, SQLite ledger) on one event loop.
Each interval every seller mints and publishes its offer; then every buyer negotiates K trades
of 10 Wh in a row with its seller's offer (REQUEST -> ACCEPTED with the seller's TRADE
proposal, the buyer's agreement, CONFIRM; the node's own negotiation step -- discovery and
ranking are left out, ``benchmarks/dht.py`` measures the gets), and each seller settles them all
(DELIVER with its DELIVERY settlement -> the buyer's agreement): 3 round trips per trade.

* ``trades_per_s``: co-signed settled trades per wall second of negotiation plus settlement,
  ledgers with ``ledger_sync="full"`` (a meter: an fsync per commit);
  ``trades_per_s_sync_normal`` the same with ``"normal"`` (what the simulator runs: no fsync).
* baselines in the same run, interleaved with it: ``http_round_trips_per_s`` (P clients each
  POSTing a 400-byte body 3K times in a row to its own echoing peer endpoint -- the same aiohttp
  client and server classes) and ``ledger_appends_per_s`` (one ledger proposing trades, each a
  durable commit).  Every rate is the best of ``REPEATS`` rounds (noise on a shared machine
  only slows down).  ``trade_cost_round_trips`` = round trips/s / trades/s (3 would mean a trade
  costs only its messages), ``trade_cost_appends`` = appends/s / trades/s.
* one more round, not timed, counts per trade: ``trade_signature_checks`` (Ed25519 checks of
  negotiation messages and blocks), ``trade_offer_checks`` (checks of offer records the DHT
  nodes store meanwhile: the sellers' offer updates) and ``trade_commits`` (ledger transactions
  that wrote; with ``"full"`` each is one fsync of the WAL, checkpoints aside).
* ``trade_audit_problems``: a full audit of every ledger afterwards.

Where the time goes (``--profile``: cProfile of one round of 8 x 25 trades; this machine, 2
cores shared with other jobs).  At the first measurement a trade cost 18 signature checks and 6
fsync'd commits (7 transactions) in the node: the SQLite ``execute`` calls -- mostly the fsyncs
of the commits, blocking the event loop -- took 57 % of the loop's time, signature checks 9 %,
signing 2 %, the DHT offer updates 4 %, the rest aiohttp, asyncio and the codec.  Now a trade
costs 10 checks and 3 + 1 + 2/K commits (see :mod:`p2pnode.node`); with ``"full"`` the fsyncs
are still the largest cost (64 % of the loop's time in a profile taken while the disk was busy
with other jobs, checks 5 %), which is why the simulator runs ``"normal"``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import logging
import os
import pstats
import random
import sys
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import msgpack

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ledger.keys  # noqa: E402
from ledger import (  # noqa: E402
    BlockBody, CreditVoucher, Ledger, LedgerStore, MeterReading, SigningKey, TradePayload, audit,
    seal,
)
from p2pnode.config import (  # noqa: E402
    Constraints, CreditConfig, MarketConfig, NetworkConfig, NodeConfig, Timing,
)
from p2pnode.dht.server import DHTSettings  # noqa: E402
from p2pnode.meter import ProfileMeter  # noqa: E402
from p2pnode.negotiation import PeerReply, PeerRequest  # noqa: E402
from p2pnode.node import Node  # noqa: E402
from p2pnode.offers import OfferRecord  # noqa: E402
from p2pnode.peer import PeerClient, PeerServer  # noqa: E402
from p2pnode.transport.address import libp2p_endpoint  # noqa: E402
from p2pnode.transport.libp2p_host import Libp2pHost  # noqa: E402
from report import emit  # noqa: E402
from simulator.swarm import VirtualClock  # noqa: E402

__all__ = ["negotiation", "voucher_for"]

FEEDER = "F1"
INTERVAL_S = 900
TRADE_WH = 10                        # one trade; every node's max_trade_wh
TRADE_START_S = 1_782_907_200        # 2026-07-01 12:00 UTC: the "normal" tariff frame
TRADE_TIMING = Timing(buy_delay_s=1, window_s=60, request_timeout_s=2.0, attempts=4, max_rounds=4)
TRADE_DHT = DHTSettings(ksize=10, rpc_timeout_s=0.5, lookup_timeout_s=3.0, publish_timeout_s=3.0,
                        max_contacts_per_host=None)   # every node shares 127.0.0.1
ROUND_TRIPS_PER_TRADE = 3            # request, confirm, deliver
ECHO_BODY_BYTES = 400                # about a sealed PeerRequest with one block
CREDIT_MICRO = 100_000_000
REPEATS = 5                          # trade, echo and append rates: best of interleaved rounds
HANDSHAKES = 20                      # fresh libp2p host pairs for the handshake cost
HANDSHAKES_QUICK = 5
REQUESTS_AFTER_HANDSHAKE = 10
TRADE_MESSAGES = {PeerRequest.TYPE, PeerReply.TYPE, BlockBody.TYPE}


def voucher_for(public: bytes, issuer: SigningKey, rng: random.Random):
    return seal(CreditVoucher(issuer.public, public, rng.randbytes(16), CREDIT_MICRO), issuer)


class Traders:
    """``pairs`` sellers and buyers on one clock (every interval: surplus resp. deficit of
    2 * trades trades), their ledgers in ``ledger_sync`` mode."""

    def __init__(self, sellers: list[Node], buyers: list[Node], clock: VirtualClock):
        self.sellers, self.buyers, self.clock = sellers, buyers, clock
        self.rounds = 0

    @classmethod
    async def start(cls, pairs: int, trades: int, rounds: int, workdir: Path, rng: random.Random,
                    ledger_sync: str, transport: str = "http") -> Traders:
        clock = VirtualClock(TRADE_START_S)
        issuer = SigningKey.from_seed(rng.randbytes(32))
        net, zero = [2 * trades * TRADE_WH] * rounds, [0] * rounds
        nodes: list[Node] = []
        for i in range(2 * pairs):
            seller = i % 2 == 0
            meter = ProfileMeter(TRADE_START_S, INTERVAL_S, net if seller else zero,
                                 zero if seller else net)
            config = NodeConfig(ledger=workdir / f"{transport}-{ledger_sync}-{i}.db", feeder=FEEDER,
                                timing=TRADE_TIMING, constraints=Constraints(max_trade_wh=TRADE_WH),
                                credit=CreditConfig(trusted_issuers=(issuer.public.hex(),)),
                                network=NetworkConfig(transport=transport),
                                market=MarketConfig(mode="ex_post"))   # metered: no forecasts
            node = Node(config, meter, key=SigningKey.from_seed(rng.randbytes(32)), clock=clock,
                        dht_settings=TRADE_DHT, ledger_sync=ledger_sync)
            nodes.append(node)
            await node.start()
            node.deposit(voucher_for(node.public, issuer, rng))
        await asyncio.gather(*(n.dht.bootstrap([nodes[0].dht.address]) for n in nodes[1:]))
        return cls(nodes[0::2], nodes[1::2], clock)

    @property
    def nodes(self) -> list[Node]:
        return self.sellers + self.buyers

    async def stop(self) -> None:
        for node in self.nodes:
            await node.stop()

    async def round(self, trades: int, costs: TradeCosts | None = None) -> tuple[float, int]:
        """One interval: open (mint, publish), K trades per pair, settle, close.

        Returns (settled trades per second, settled trades); ``costs`` counts during the trades.
        """
        start = TRADE_START_S + self.rounds * INTERVAL_S
        end = start + INTERVAL_S
        self.rounds += 1
        self.clock.now_s = end
        await asyncio.gather(*(n.open_interval(start) for n in self.nodes))
        offers = [seller.own_offers()[0] for seller in self.sellers]
        self.clock.now_s = end + TRADE_TIMING.buy_delay_s
        with costs.counting() if costs else contextlib.nullcontext():
            began = time.perf_counter()
            await asyncio.gather(*(buy_from(b, o, trades, began)
                                   for b, o in zip(self.buyers, offers)))
            self.clock.now_s = end + TRADE_TIMING.window_s
            settled = sum(await asyncio.gather(*(s.settle(start) for s in self.sellers)))
            elapsed = time.perf_counter() - began
        self.clock.now_s = end + TRADE_TIMING.window_s + 1
        await asyncio.gather(*(n.close_interval(start) for n in self.nodes))
        return settled / elapsed, settled

    def audit_problems(self) -> int:
        rows = [row for node in self.nodes for row in node.ledger.store.raw_blocks()]
        return len(audit(rows).problems)


async def buy_from(buyer: Node, offer: OfferRecord, trades: int, began: float) -> None:
    # The node's own negotiation step (request, proposal, agreement, confirm); discovery and
    # ranking are left out on purpose: benchmarks/dht.py measures the gets.
    state = buyer._buying[offer.interval_start_s]
    for _ in range(trades):
        await buyer._negotiate(offer, state, began)


class TradeCosts:
    """Signature checks (by kind of signed message) and ledger commits of ``nodes``.

    Checks are counted at their one choke point, :func:`ledger.keys.is_valid_signature` (every
    check of the ledger and negotiation code goes through it, looked up at call time).
    """

    def __init__(self, nodes: list[Node]):
        self.nodes = nodes
        self.checks: collections.Counter[str] = collections.Counter()
        self.commits = 0

    @contextlib.contextmanager
    def counting(self):
        real = ledger.keys.is_valid_signature

        def counted(public: bytes, signature: bytes, data: bytes) -> bool:
            kind = msgpack.unpackb(data)["t"]
            self.checks["trade" if kind in TRADE_MESSAGES
                        else "offer" if kind == OfferRecord.TYPE else "other"] += 1
            return real(public, signature, data)

        before = self._commits()
        ledger.keys.is_valid_signature = counted
        try:
            yield self
        finally:
            ledger.keys.is_valid_signature = real
            self.commits += self._commits() - before

    def _commits(self) -> int:
        return sum(node.ledger.store.commits for node in self.nodes)


async def echo_round(servers: list[PeerServer], clients: list[PeerClient], count: int) -> float:
    """Bare HTTP round trips per second: each client POSTs ``count`` times to its own server."""
    body = os.urandom(ECHO_BODY_BYTES)

    async def one(server: PeerServer, client: PeerClient) -> None:
        for _ in range(count):
            if await client.send(f"127.0.0.1:{server.port}", body, 2.0) != body:
                raise SystemExit("echo round trip failed")

    began = time.perf_counter()
    await asyncio.gather(*(one(s, c) for s, c in zip(servers, clients)))
    return len(clients) * count / (time.perf_counter() - began)


class Appender:
    """One seller's ledger proposing trades, each a durable commit (the append baseline)."""

    def __init__(self, path: Path):
        self.key, self.buyer = SigningKey.generate(), SigningKey.generate().public
        self.ledger = Ledger(LedgerStore(path), self.key)
        self.interval, self.time_ms = TRADE_START_S, 1

    def appends_per_s(self, count: int) -> float:
        self.interval += INTERVAL_S
        self.time_ms += 1
        reading = MeterReading(self.key.public, self.interval, INTERVAL_S,
                               count * TRADE_WH + 500, 500)
        self.ledger.mint(seal(reading, self.key), count * TRADE_WH, self.time_ms)
        began = time.perf_counter()
        for _ in range(count):
            self.time_ms += 1
            self.ledger.propose_trade(TradePayload(os.urandom(16), self.key.public, self.buyer,
                                                   self.interval, TRADE_WH, 200_000, b""),
                                      self.time_ms)
        return count / (time.perf_counter() - began)


class Echo:
    """``pairs`` echoing peer endpoints and a client for each (the round-trip baseline)."""

    def __init__(self, pairs: int):
        self.servers = [PeerServer(lambda body: body) for _ in range(pairs)]
        self.clients = [PeerClient() for _ in range(pairs)]

    async def start(self) -> None:
        for server, client in zip(self.servers, self.clients):
            await server.start("127.0.0.1", 0)
            await client.start()

    async def stop(self) -> None:
        for server, client in zip(self.servers, self.clients):
            await client.stop()
            await server.stop()

    async def rate(self, count: int) -> float:
        return await echo_round(self.servers, self.clients, count)


async def negotiation(pairs: int, trades: int, repeats: int, rng: random.Random) -> dict:
    """Every key of the module docstring."""
    out: dict = {"trade_pairs": pairs, "trades_per_pair": trades}
    best = dict.fromkeys(("trades_per_s", "trades_per_s_sync_normal", "http_round_trips_per_s",
                          "ledger_appends_per_s", "libp2p_trades_per_s"), 0.0)
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        workdir = Path(tmp)
        full = await Traders.start(pairs, trades, repeats + 1, workdir, rng, "full")
        normal = await Traders.start(pairs, trades, repeats, workdir, rng, "normal")
        over_libp2p = await Traders.start(pairs, trades, repeats, workdir, rng, "normal", "libp2p")
        echo = Echo(pairs)
        await echo.start()
        appender = Appender(workdir / "appends.db")
        settled = libp2p_settled = 0
        try:
            for _ in range(repeats):   # interleaved, so each rate sees the same noise
                rate, count = await full.round(trades)
                settled += count
                best["trades_per_s"] = max(best["trades_per_s"], rate)
                best["trades_per_s_sync_normal"] = max(best["trades_per_s_sync_normal"],
                                                       (await normal.round(trades))[0])
                rate, count = await over_libp2p.round(trades)
                best["libp2p_trades_per_s"] = max(best["libp2p_trades_per_s"], rate)
                libp2p_settled += count
                best["http_round_trips_per_s"] = max(best["http_round_trips_per_s"],
                                                     await echo.rate(ROUND_TRIPS_PER_TRADE * trades))
                best["ledger_appends_per_s"] = max(best["ledger_appends_per_s"],
                                                   appender.appends_per_s(pairs * trades))
            costs = TradeCosts(full.nodes)
            counted = (await full.round(trades, costs))[1]
            out["trade_audit_problems"] = (full.audit_problems() + normal.audit_problems()
                                           + over_libp2p.audit_problems())
        finally:
            appender.ledger.store.close()
            await full.stop()
            await normal.stop()
            await over_libp2p.stop()
            await echo.stop()
    out.update(best)
    out["trades_settled"] = settled
    out["trades_unsettled"] = repeats * pairs * trades - settled
    out["libp2p_trades_unsettled"] = repeats * pairs * trades - libp2p_settled
    out["http_trades_per_s"] = best["trades_per_s_sync_normal"]
    out["libp2p_vs_http"] = best["libp2p_trades_per_s"] / best["trades_per_s_sync_normal"]
    out["trade_cost_round_trips"] = best["http_round_trips_per_s"] / best["trades_per_s"]
    out["trade_cost_appends"] = best["ledger_appends_per_s"] / best["trades_per_s"]
    out["trade_signature_checks"] = costs.checks["trade"] / counted
    out["trade_offer_checks"] = costs.checks["offer"] / counted
    out["trade_commits"] = costs.commits / counted
    return out


async def libp2p_costs(pairs: int) -> dict:
    """The handshake: ``pairs`` fresh host pairs, each a first request (dial, Noise, yamux,
    the request) and then requests on the open connection; medians."""
    first, again = [], []
    for i in range(pairs):
        keys = [SigningKey.from_seed(bytes([i, side]) * 16) for side in (0, 1)]
        server, client = (Libp2pHost(k, 4096) for k in keys)
        server.add_protocol("/bench/echo/1.0.0", lambda body: body)
        await server.start("127.0.0.1", 0)
        await client.start("127.0.0.1", 0)
        endpoint = libp2p_endpoint("127.0.0.1", server.port, server.key.public)
        try:
            for n in range(1 + REQUESTS_AFTER_HANDSHAKE):
                began = time.perf_counter()
                reply = await client.request(endpoint, "/bench/echo/1.0.0", b"x" * 400, 10.0)
                (first if n == 0 else again).append(time.perf_counter() - began)
                assert reply == b"x" * 400, reply
        finally:
            await client.stop()
            await server.stop()
    first_s, again_s = statistics.median(first), statistics.median(again)
    return {"libp2p_first_request_s": first_s, "libp2p_request_s": again_s,
            "libp2p_handshake_s": first_s - again_s}


def libp2p_import_rss_mb() -> float:
    """Resident memory that importing the libp2p transport adds to a process that has already
    imported the node (a fresh interpreter)."""
    code = ("import p2pnode.node\n"
            "def rss():\n"
            "    for line in open('/proc/self/status'):\n"
            "        if line.startswith('VmRSS:'): return int(line.split()[1])\n"
            "before = rss()\n"
            "import p2pnode.transport.libp2p_peer\n"
            "print((rss() - before) / 1024)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    return float(done.stdout.strip())


async def profile_round(pairs: int, trades: int, rng: random.Random) -> pstats.Stats:
    """cProfile of one timed round (after a warm-up round), ``"full"`` ledgers."""
    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        traders = await Traders.start(pairs, trades, 2, Path(tmp), rng, "full")
        try:
            await traders.round(trades)
            profile.enable()
            rate, _ = await traders.round(trades)
            profile.disable()
        finally:
            await traders.stop()
    print(f"profiled round: {rate:.1f} trades/s", file=sys.stderr)
    return pstats.Stats(profile)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 pairs x 10 trades, 3 rounds")
    parser.add_argument("--json", type=Path, help="write the results as a flat JSON object")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of one round instead (top 25 by own time)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    rng = random.Random(args.seed)
    pairs, trades, repeats = (4, 10, 3) if args.quick else (8, 25, REPEATS)
    if args.profile:
        asyncio.run(profile_round(pairs, trades, rng)).sort_stats("tottime").print_stats(25)
        return 0
    out = asyncio.run(negotiation(pairs, trades, repeats, rng))
    out.update(asyncio.run(libp2p_costs(HANDSHAKES_QUICK if args.quick else HANDSHAKES)))
    out["libp2p_import_rss_mb"] = libp2p_import_rss_mb()
    emit(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
