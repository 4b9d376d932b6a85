"""Offer DHT benchmark: our nodes against plain `kademlia` nodes, then churn and datagram loss.

    python benchmarks/dht.py [--quick] [--nodes N] [--json PATH] [--seed S]

Everything runs in one process on 127.0.0.1 with OS-chosen ports, in one run:

* ``plain_get_p50_ms``: N plain ``kademlia.network.Server`` nodes (the baseline); values are
  ``set`` from random nodes and ``get`` from others (kademlia stops at the first value found).
* ``get_p50_ms`` / ``get_p99_ms``: N of our nodes; half of them each publish one signed offer
  (feeder F1, one interval, prices spread over the price bands); a get is
  ``find_offers([key])`` for one band key from a random node -- a full lookup that merges the
  record sets of all the closest nodes.
* ``discovery_recall``: share of the live matching offers (F1, the interval, price <= the
  buyer's maximum) that one parallel discovery (``query_keys`` -> ``find_offers``) returns,
  pooled over the buyers.
* ``churn_recall`` / ``churn_get_p99_ms``: 20 % of the nodes are stopped without warning (their
  sockets close; nobody is told) and discovery and gets run again at once from survivors.  Live
  offers are those of surviving sellers; ``churn_recall_all_offers`` also counts the offers of
  the dead sellers (still valid records held by others).
* ``loss_recall``: every surviving node drops 10 % of the datagrams it sends (seeded); surviving
  sellers publish offers for the next interval under loss and buyers discover them under loss.
* ``trades_per_s``: P seller/buyer pairs of real :class:`~p2pnode.node.Node` s (DHT, HTTP peer
  endpoint, SQLite ledger with ``synchronous=FULL``) on one event loop.  Each interval every
  seller mints and publishes its offer; then every buyer negotiates K trades of 10 Wh in a row
  with its seller's offer (request -> proposal, agreement, confirm; the node's own negotiation
  step, discovery and ranking left out: those are the gets above) and settles them all
  (co-signed SETTLEMENT pair): 3 HTTP round trips and 6 durable ledger commits per trade.  The
  rate counts co-signed settled trades per wall second of negotiation plus settlement.
  Baselines in the same run, interleaved with it: ``http_round_trips_per_s`` (P clients each
  POSTing a 400-byte body 3K times in a row to its own echoing peer endpoint -- the same
  aiohttp client and server classes) and ``ledger_appends_per_s`` (one ledger proposing trades,
  each a durable commit).  Every rate is the best of ``REPEATS`` rounds (noise on a shared
  machine only slows down).  ``trade_cost_round_trips`` = round trips/s / trades/s (3 would mean
  a trade costs only its messages), ``trade_cost_appends`` = appends/s / trades/s (6 would
  mean it costs only its commits).  ``trade_audit_problems``: a full audit of every ledger.
* ``node_rss_mb`` / ``node_peak_rss_mb``: one ``p2pnode run --config FILE --speed S`` process
  (key, voucher, CSV meter and TOML config written to a temp dir) bootstrapped to a few nodes
  of this process that run the same daemon loop on the same replay clock, trading with it
  (its meter alternates surplus and deficit, theirs the opposite).  After some closed
  intervals with trades settled both ways: VmRSS of the process, and its VmHWM (peak); then
  SIGTERM (``node_exit_code`` must be 0; ``node_trades_bought``/``_sold`` are what it
  counted).  Baseline: ``node_bare_python_rss_mb``, an idle interpreter of the same venv.

``--quick`` (under a minute): 100 DHT nodes, fewer gets, 4 x 10 trades over 3 rounds, the daemon
at speed 300.  ``seconds`` is the whole run, ``dht_seconds`` its DHT part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kademlia.network import Server  # noqa: E402

from ledger import (  # noqa: E402
    BlockBody, CreditVoucher, Ledger, LedgerStore, MeterReading, SigningKey, TradePayload, audit,
    open_envelope, seal,
)
from p2pnode.commands.run import ReplayClock  # noqa: E402
from p2pnode.config import Constraints, NodeConfig, Timing  # noqa: E402
from p2pnode.dht import FaultPlan, OfferDHT  # noqa: E402
from p2pnode.dht.server import DHTSettings  # noqa: E402
from p2pnode.identity import create_key_file  # noqa: E402
from p2pnode.meter import ProfileMeter  # noqa: E402
from p2pnode.node import Node  # noqa: E402
from p2pnode.peer import PeerClient, PeerServer  # noqa: E402
from report import emit  # noqa: E402
from p2pnode.offers import (  # noqa: E402
    PRICE_BAND_MICRO_PER_KWH, OfferRecord, offer_key, query_keys,
)
from simulator.swarm import VirtualClock  # noqa: E402

FEEDER = "F1"
INTERVAL_S = 900
BOOTSTRAP_CONTACTS = 3
CHURN_SHARE = 0.2
LOSS = 0.10
MIN_PRICE, MAX_PRICE = 40_000, 340_000   # µ/kWh: bands 0..6
BUYER_MAX_PRICE = 300_000
OFFER_TTL_S = 1800

TRADE_WH = 10                        # one trade; every node's max_trade_wh
TRADE_START_S = 1_782_907_200        # 2026-07-01 12:00 UTC: the "normal" tariff frame
TRADE_TIMING = Timing(buy_delay_s=1, window_s=60, request_timeout_s=2.0, attempts=4, max_rounds=4)
TRADE_DHT = DHTSettings(ksize=10, rpc_timeout_s=0.5, lookup_timeout_s=3.0, publish_timeout_s=3.0)
ROUND_TRIPS_PER_TRADE = 3            # request, confirm, settle
ECHO_BODY_BYTES = 400                # about a sealed PeerRequest with one block
CREDIT_MICRO = 100_000_000
REPEATS = 5                          # trade, echo and append rates: best of interleaved rounds

DAEMON_START = "2026-07-01T11:59:00Z"   # one node minute before an interval boundary
DAEMON_FIRST_S = TRADE_START_S - INTERVAL_S  # the first interval its daemon loop trades
DAEMON_PARTNERS = 3
DAEMON_METER_INTERVALS = 48
DAEMON_UP_TIMEOUT_S = 60.0
DAEMON_BUY_DELAY_S = 120  # node seconds: covers what is left of the two clocks' skew


def progress(what: str, started: list[float] = [time.perf_counter()]) -> None:  # noqa: B006
    print(f"[{time.perf_counter() - started[0]:6.1f} s] {what}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def timed(coro) -> tuple[float, object]:
    started = time.perf_counter()
    result = await coro
    return (time.perf_counter() - started) * 1000, result


# -- baseline ---------------------------------------------------------------------------------

async def plain_baseline(n: int, gets: int, rng: random.Random) -> dict[str, float]:
    servers: list[Server] = []
    for _ in range(n):
        server = Server(node_id=rng.randbytes(20))
        await server.listen(0, "127.0.0.1")
        contacts = rng.sample(servers, min(BOOTSTRAP_CONTACTS, len(servers)))
        if contacts:
            await server.bootstrap([s.transport.get_extra_info("sockname")[:2] for s in contacts])
        servers.append(server)
    progress(f"{n} plain kademlia nodes up")
    keys = [f"offer-{i}" for i in range(gets)]
    for key in keys:
        await rng.choice(servers).set(key, os.urandom(300))
    latencies, found = [], 0
    for key in keys:
        ms, value = await timed(rng.choice(servers).get(key))
        latencies.append(ms)
        found += value is not None
    for server in servers:
        server.stop()
    return {"plain_get_p50_ms": percentile(latencies, 0.5),
            "plain_get_p99_ms": percentile(latencies, 0.99), "plain_get_found": found / len(keys)}


# -- our DHT ----------------------------------------------------------------------------------

async def start_swarm(n: int, rng: random.Random) -> list[OfferDHT]:
    nodes: list[OfferDHT] = []
    for _ in range(n):
        node = OfferDHT(SigningKey.from_seed(rng.randbytes(32)))
        contacts = rng.sample(nodes, min(BOOTSTRAP_CONTACTS, len(nodes)))
        await node.start("127.0.0.1", 0, [c.address for c in contacts])
        nodes.append(node)
    return nodes


def make_offer(node: OfferDHT, interval_start_s: int, now_s: int, rng: random.Random):
    record = OfferRecord(
        seller=node.key.public, offer_id=rng.randbytes(16), seq=1,
        energy_wh=rng.randint(200, 3000), price_micro_per_kwh=rng.randint(MIN_PRICE, MAX_PRICE),
        feeder=FEEDER, interval_start_s=interval_start_s, expires_at_s=now_s + OFFER_TTL_S,
        endpoint=f"127.0.0.1:{node.port}", efficiency=round(rng.uniform(0.9, 1.0), 3))
    return seal(record, node.key)


async def publish_all(sellers: list[OfferDHT], interval_start_s: int, rng: random.Random):
    now_s = int(time.time())
    offers = [make_offer(s, interval_start_s, now_s, rng) for s in sellers]
    await asyncio.gather(*(s.publish(o) for s, o in zip(sellers, offers)))
    return offers


async def recall(buyers: list[OfferDHT], offers, interval_start_s: int) -> float:
    """Pooled share of the matching offers each buyer's one discovery returns."""
    wanted = {o.hash for o in offers if o.message.price_micro_per_kwh <= BUYER_MAX_PRICE}
    keys = query_keys(FEEDER, interval_start_s, BUYER_MAX_PRICE)
    found = 0
    for buyer in buyers:
        discovery = await buyer.find_offers(keys)
        found += len(wanted & {o.hash for o in discovery.offers})
    return found / (len(wanted) * len(buyers))


async def get_latencies(nodes: list[OfferDHT], interval_start_s: int, gets: int,
                        rng: random.Random) -> list[float]:
    bands = range(MIN_PRICE // PRICE_BAND_MICRO_PER_KWH, MAX_PRICE // PRICE_BAND_MICRO_PER_KWH + 1)
    latencies = []
    for _ in range(gets):
        key = offer_key(FEEDER, interval_start_s, rng.choice(bands))
        ms, _ = await timed(rng.choice(nodes).find_offers([key]))
        latencies.append(ms)
    return latencies


async def our_dht(n: int, gets: int, buyers_n: int, rng: random.Random) -> dict[str, float]:
    out: dict[str, float] = {}
    nodes = await start_swarm(n, rng)
    progress(f"{n} offer DHT nodes up")
    interval = int(time.time()) // INTERVAL_S * INTERVAL_S
    sellers = rng.sample(nodes, n // 2)
    offers = await publish_all(sellers, interval, rng)
    progress(f"{len(offers)} offers published")
    latencies = await get_latencies(nodes, interval, gets, rng)
    out.update(get_p50_ms=percentile(latencies, 0.5), get_p99_ms=percentile(latencies, 0.99))
    out["discovery_recall"] = await recall(rng.sample(nodes, buyers_n), offers, interval)
    progress("gets and discovery measured")
    alive, buyers = await churn(nodes, offers, interval, gets, buyers_n, rng, out)
    progress("churn measured")
    await loss([s for s in sellers if s in alive], alive, buyers, interval + INTERVAL_S, rng, out)
    progress("loss measured")
    for node in alive:
        await node.stop()
    return out


async def churn(nodes, offers, interval, gets, buyers_n, rng, out):
    """Stop 20 % of the nodes without warning; measure discovery and gets at once."""
    dead = set(rng.sample(range(len(nodes)), int(len(nodes) * CHURN_SHARE)))
    for i in sorted(dead):
        await nodes[i].stop()
    alive = [node for i, node in enumerate(nodes) if i not in dead]
    alive_keys = {node.key.public for node in alive}
    live_offers = [o for o in offers if o.message.seller in alive_keys]
    buyers = rng.sample(alive, buyers_n)
    out["churn_recall"] = await recall(buyers, live_offers, interval)
    out["churn_recall_all_offers"] = await recall(buyers, offers, interval)
    latencies = await get_latencies(alive, interval, gets, rng)
    out.update(churn_get_p50_ms=percentile(latencies, 0.5),
               churn_get_p99_ms=percentile(latencies, 0.99))
    return alive, buyers


async def loss(sellers, alive, buyers, interval, rng, out):
    """10 % datagram loss on every node; publish a new interval's offers and discover them."""
    for i, node in enumerate(alive):
        node.set_faults(FaultPlan(loss=LOSS, seed=rng.randrange(2**32) + i))
    loss_offers = await publish_all(sellers, interval, rng)
    out["loss_recall"] = await recall(buyers, loss_offers, interval)
    drops: dict[str, int] = {}
    for node in alive:
        for name, count in node.counters().items():
            drops[name] = drops.get(name, 0) + count
    out["loss_rpc_timeouts"] = drops.get("rpc_timeout", 0)
    out["dropped_records"] = sum(v for k, v in drops.items() if k.startswith(("stored_", "found_")))


# -- negotiation: complete trades between real nodes ---------------------------------------

def voucher_for(public: bytes, issuer: SigningKey, rng: random.Random):
    return seal(CreditVoucher(issuer.public, public, rng.randbytes(16), CREDIT_MICRO), issuer)


async def trading_pairs(pairs: int, trades: int, rounds: int, workdir: Path, rng: random.Random):
    """``pairs`` sellers and buyers (every interval: surplus resp. deficit of 2 * trades trades)."""
    clock = VirtualClock(TRADE_START_S)
    issuer = SigningKey.from_seed(rng.randbytes(32))
    net, zero = [2 * trades * TRADE_WH] * rounds, [0] * rounds
    nodes: list[Node] = []
    for i in range(2 * pairs):
        seller = i % 2 == 0
        meter = ProfileMeter(TRADE_START_S, INTERVAL_S, net if seller else zero,
                             zero if seller else net)
        config = NodeConfig(ledger=workdir / f"trader-{i}.db", feeder=FEEDER, timing=TRADE_TIMING,
                            constraints=Constraints(max_trade_wh=TRADE_WH))
        node = Node(config, meter, key=SigningKey.from_seed(rng.randbytes(32)), clock=clock,
                    dht_settings=TRADE_DHT)
        await node.start()
        node.deposit(voucher_for(node.public, issuer, rng))
        nodes.append(node)
    await asyncio.gather(*(n.dht.bootstrap([nodes[0].dht.address]) for n in nodes[1:]))
    return nodes[0::2], nodes[1::2], clock


async def buy_from(buyer: Node, offer: OfferRecord, trades: int, began: float) -> None:
    # The node's own negotiation step (request, proposal, agreement, confirm); discovery and
    # ranking are left out on purpose: they are measured by the gets above.
    state = buyer._buying[offer.interval_start_s]
    for _ in range(trades):
        await buyer._negotiate(offer, state, began)


async def trade_round(sellers: list[Node], buyers: list[Node], clock: VirtualClock, index: int,
                      trades: int) -> tuple[float, int]:
    """One interval: open (mint, publish), K trades per pair, settle, close; (trades/s, settled)."""
    start = TRADE_START_S + index * INTERVAL_S
    end = start + INTERVAL_S
    clock.now_s = end
    await asyncio.gather(*(n.open_interval(start) for n in sellers + buyers))
    offers = [seller.own_offers()[0] for seller in sellers]
    clock.now_s = end + TRADE_TIMING.buy_delay_s
    began = time.perf_counter()
    await asyncio.gather(*(buy_from(b, o, trades, began) for b, o in zip(buyers, offers)))
    clock.now_s = end + TRADE_TIMING.window_s
    settled = sum(await asyncio.gather(*(b.settle(start) for b in buyers)))
    elapsed = time.perf_counter() - began
    clock.now_s = end + TRADE_TIMING.window_s + 1
    await asyncio.gather(*(n.close_interval(start) for n in sellers + buyers))
    return settled / elapsed, settled


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
        reading = MeterReading(self.key.public, self.interval, INTERVAL_S, count * TRADE_WH + 500, 500)
        self.ledger.mint(seal(reading, self.key), count * TRADE_WH, self.time_ms)
        began = time.perf_counter()
        for _ in range(count):
            self.time_ms += 1
            self.ledger.propose_trade(TradePayload(os.urandom(16), self.key.public, self.buyer,
                                                   self.interval, TRADE_WH, 200_000, b""),
                                      self.time_ms)
        return count / (time.perf_counter() - began)


async def negotiation(pairs: int, trades: int, repeats: int, rng: random.Random) -> dict:
    out = {"trade_pairs": pairs, "trades_per_pair": trades}
    best = {"trades_per_s": 0.0, "http_round_trips_per_s": 0.0, "ledger_appends_per_s": 0.0}
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        workdir = Path(tmp)
        sellers, buyers, clock = await trading_pairs(pairs, trades, repeats, workdir, rng)
        servers = [PeerServer(lambda body: body) for _ in range(pairs)]
        clients = [PeerClient() for _ in range(pairs)]
        for server, client in zip(servers, clients):
            await server.start("127.0.0.1", 0)
            await client.start()
        appender = Appender(workdir / "appends.db")
        settled = 0
        try:
            for index in range(repeats):   # interleaved, so each rate sees the same noise
                rate, count = await trade_round(sellers, buyers, clock, index, trades)
                settled += count
                best["trades_per_s"] = max(best["trades_per_s"], rate)
                best["http_round_trips_per_s"] = max(best["http_round_trips_per_s"], await echo_round(
                    servers, clients, ROUND_TRIPS_PER_TRADE * trades))
                best["ledger_appends_per_s"] = max(best["ledger_appends_per_s"],
                                                   appender.appends_per_s(pairs * trades))
            rows = [row for node in sellers + buyers for row in node.ledger.store.raw_blocks()]
            out["trade_audit_problems"] = len(audit(rows).problems)
        finally:
            appender.ledger.store.close()
            for node in sellers + buyers:
                await node.stop()
            for server, client in zip(servers, clients):
                await client.stop()
                await server.stop()
    out.update(best)
    out["trades_settled"] = settled
    out["trades_unsettled"] = repeats * pairs * trades - settled
    out["trade_cost_round_trips"] = best["http_round_trips_per_s"] / best["trades_per_s"]
    out["trade_cost_appends"] = best["ledger_appends_per_s"] / best["trades_per_s"]
    return out


# -- the daemon's memory --------------------------------------------------------------------

def proc_status_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` in MiB (from /proc/PID/status)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values


def daemon_files(workdir: Path, bootstrap: list[str], rng: random.Random) -> Path:
    """Key, voucher, CSV meter (surplus and deficit by turns) and the TOML config."""
    key = create_key_file(workdir / "node.key")
    issuer = SigningKey.from_seed(rng.randbytes(32))
    (workdir / "credit.voucher").write_bytes(voucher_for(key.public, issuer, rng).raw)
    rows = ["interval_start_s,generation_wh,consumption_wh"]
    for i in range(DAEMON_METER_INTERVALS):
        generation, consumption = (3000, 200) if i % 2 == 0 else (0, 2500)
        rows.append(f"{DAEMON_FIRST_S + i * INTERVAL_S},{generation},{consumption}")
    (workdir / "meter.csv").write_text("\n".join(rows) + "\n")
    peers = ", ".join(f'"{address}"' for address in bootstrap)
    config = workdir / "node.toml"
    config.write_text(
        f'key_file = "node.key"\nledger = "node.db"\nfeeder = "{FEEDER}"\n\n'
        f'[network]\nhost = "127.0.0.1"\nbootstrap = [{peers}]\n\n'
        f'[meter]\nkind = "csv"\npath = "meter.csv"\n\n'
        f'[credit]\nvouchers = ["credit.voucher"]\n\n'
        f'[timing]\nbuy_delay_s = {DAEMON_BUY_DELAY_S}\n')
    return config


async def daemon_partners(workdir: Path, clock, rng: random.Random) -> list[Node]:
    """Nodes of this process whose meters mirror the daemon's: they buy when it sells."""
    from models import Predictor
    predictor = Predictor.default()
    generation = [1000 if i % 2 else 0 for i in range(DAEMON_METER_INTERVALS)]
    consumption = [0 if i % 2 else 600 for i in range(DAEMON_METER_INTERVALS)]
    issuer = SigningKey.from_seed(rng.randbytes(32))
    nodes = []
    for i in range(DAEMON_PARTNERS):
        meter = ProfileMeter(DAEMON_FIRST_S, INTERVAL_S, generation, consumption)
        config = NodeConfig(ledger=workdir / f"partner-{i}.db", feeder=FEEDER,
                            timing=Timing(buy_delay_s=DAEMON_BUY_DELAY_S))
        node = Node(config, meter, key=SigningKey.from_seed(rng.randbytes(32)), clock=clock,
                    predictor=predictor)
        await node.start()
        node.deposit(voucher_for(node.public, issuer, rng))
        nodes.append(node)
    await asyncio.gather(*(n.dht.bootstrap([nodes[0].dht.address]) for n in nodes[1:]))
    return nodes


async def daemon_memory(speed: float, intervals: int, max_intervals: int,
                        rng: random.Random) -> dict:
    """Run ``p2pnode run`` against partners until it traded both ways; read its memory."""
    out: dict = {"node_speed": speed}
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        workdir = Path(tmp)
        clock = ReplayClock(_parse_iso(DAEMON_START), speed)   # set to the daemon's once up
        partners = await daemon_partners(workdir, clock, rng)
        config = daemon_files(workdir, ["%s:%d" % n.dht.address for n in partners], rng)
        log = workdir / "node.log"
        launched = time.perf_counter()
        with log.open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "p2pnode.cli", "run", "--config", str(config), "--speed",
                str(speed), "--start", DAEMON_START, "--log-level", "WARNING",
                cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=stderr)
        tasks = []
        try:
            up = await asyncio.wait_for(proc.stdout.readline(), DAEMON_UP_TIMEOUT_S)
            if not up.startswith(b"{"):
                raise SystemExit(f"p2pnode run did not start:\n{log.read_text()}")
            out["node_startup_s"] = time.perf_counter() - launched
            clock.start_s, clock.wall0 = daemon_time_s(workdir / "node.db"), time.monotonic()
            tasks = [asyncio.create_task(node.run(speed=speed)) for node in partners]
            out.update(await watch_daemon(proc.pid, partners, intervals, max_intervals))
            status = proc_status_mb(proc.pid)
            out["node_rss_mb"], out["node_peak_rss_mb"] = status["VmRSS"], status["VmHWM"]
            out.update(await stop_daemon(proc, log))
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for node in partners:
                await node.stop()
        out["node_bare_python_rss_mb"] = await bare_python_rss_mb()
    return out


async def stop_daemon(proc, log: Path) -> dict:
    """SIGTERM; the exit code and the trades the daemon counted (its last stdout line)."""
    proc.send_signal(signal.SIGTERM)
    stdout = await asyncio.wait_for(proc.stdout.read(), 60)
    out = {"node_exit_code": await proc.wait()}
    lines = stdout.decode().strip().splitlines()
    counters = json.loads(lines[-1]).get("counters", {}) if lines else {}
    if out["node_exit_code"] != 0 or not counters:
        progress(f"p2pnode run exited {out['node_exit_code']}:\n{log.read_text()[-2000:]}")
    out["node_trades_bought"] = counters.get("trades_settled", 0)
    out["node_trades_sold"] = counters.get("settlements_agreed", 0)
    return out


def _parse_iso(text: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def daemon_time_s(ledger: Path) -> float:
    """The daemon's node time when it deposited its voucher, a moment before it said it is up.

    Its replay clock starts before it imports and starts the node (a second or two, i.e.
    hundreds of node seconds at high --speed), so the partners take the time from its ledger.
    """
    db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        raw = db.execute("SELECT raw FROM blocks ORDER BY seq DESC LIMIT 1").fetchone()[0]
    finally:
        db.close()
    return open_envelope(raw, BlockBody)[0].message.time_ms / 1000


async def watch_daemon(pid: int, partners: list[Node], intervals: int, max_intervals: int) -> dict:
    """Wait until ``intervals`` intervals closed with trades settled both ways (or give up)."""
    while True:
        closed = len(partners[0].reports)
        sold = sum(n.counters["settlements_agreed"] for n in partners)     # the daemon bought
        bought = sum(n.counters["trades_settled"] for n in partners)       # the daemon sold
        if closed >= max_intervals or (closed >= intervals and sold and bought):
            return {"node_intervals": closed}
        if not Path(f"/proc/{pid}").exists():
            raise SystemExit("p2pnode run exited while trading")
        await asyncio.sleep(0.1)


async def bare_python_rss_mb() -> float:
    """VmRSS of an idle interpreter of the same venv (what any Python process costs)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; sys.stdout.write('up\\n'); sys.stdout.flush(); "
        "sys.stdin.read()", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    await proc.stdout.readline()
    rss = proc_status_mb(proc.pid)["VmRSS"]
    proc.stdin.close()
    await proc.wait()
    return rss


async def run(n: int, gets: int, buyers: int, seed: int, quick: bool) -> dict[str, float]:
    rng = random.Random(seed)
    results: dict[str, float] = {"nodes": n}
    started = time.perf_counter()
    results.update(await plain_baseline(n, gets, rng))
    results.update(await our_dht(n, gets, buyers, rng))
    results["dht_seconds"] = time.perf_counter() - started
    pairs, trades, repeats = (4, 10, 3) if quick else (8, 25, REPEATS)
    results.update(await negotiation(pairs, trades, repeats, rng))
    progress("negotiation measured")
    speed, intervals, max_intervals = (300.0, 2, 5) if quick else (100.0, 4, 8)
    results.update(await daemon_memory(speed, intervals, max_intervals, rng))
    progress("daemon memory measured")
    results["seconds"] = time.perf_counter() - started
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller run (under a minute)")
    parser.add_argument("--nodes", type=int, default=None,
                        help="DHT nodes (default 200; 100 with --quick)")
    parser.add_argument("--json", type=Path, help="write the results as a flat JSON object")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.nodes is None:
        args.nodes = 100 if args.quick else 200
    if args.nodes < 10:
        parser.error("--nodes must be at least 10")
    logging.basicConfig(level=logging.CRITICAL)  # kademlia warns on every lost datagram
    gets, buyers = (40, 10) if args.quick else (200, 40)
    results = asyncio.run(run(args.nodes, gets, buyers, args.seed, args.quick))
    emit(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
