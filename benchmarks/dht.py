"""Offer DHT benchmark: our nodes against plain `kademlia` nodes, then churn and datagram loss;
the trade path and a node's memory in the same run.

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
* ``trades_per_s`` and the other ``trade*`` / ``http_round_trips_per_s`` /
  ``ledger_appends_per_s`` keys: the negotiation path between real nodes, with its same-run
  baselines and what one trade costs in signature checks and commits -- see
  ``benchmarks/trade_path.py`` (it also profiles the trade loop: ``--profile``).  In short: at
  first a trade cost 18 signature checks and 6 fsync'd commits, and the commits' fsyncs on the
  event loop took most of its time; now 10 checks and 3 + 1 + 2/K commits.
* ``node_*``: the memory of a trading ``p2pnode run`` process -- see ``benchmarks/node_rss.py``.

``--quick`` (under a minute): 100 DHT nodes, fewer gets, 4 x 10 trades over 3 rounds, the daemon
at speed 300.  ``seconds`` is the whole run, ``dht_seconds`` its DHT part.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kademlia.network import Server  # noqa: E402

from ledger import SigningKey, seal  # noqa: E402
from node_rss import daemon_memory  # noqa: E402
from p2pnode.dht import DHTSettings, FaultPlan, OfferDHT  # noqa: E402
from p2pnode.offers import (  # noqa: E402
    PRICE_BAND_MICRO_PER_KWH, OfferRecord, offer_key, query_keys,
)
from report import emit  # noqa: E402
from trade_path import REPEATS, negotiation  # noqa: E402

FEEDER = "F1"
INTERVAL_S = 900
BOOTSTRAP_CONTACTS = 3
CHURN_SHARE = 0.2
LOSS = 0.10
MIN_PRICE, MAX_PRICE = 40_000, 340_000   # µ/kWh: bands 0..6
BUYER_MAX_PRICE = 300_000
OFFER_TTL_S = 1800


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
        node = OfferDHT(SigningKey.from_seed(rng.randbytes(32)),   # all on 127.0.0.1
                        settings=DHTSettings(max_contacts_per_host=None))
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
