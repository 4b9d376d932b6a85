"""Test helpers for offers and the offer DHT: keys, records, a fake clock, loopback swarms."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random

from ledger import Envelope, SigningKey, seal
from p2pnode.dht import DHTSettings, FaultPlan, OfferDHT
from p2pnode.identity import node_id
from p2pnode.offers import OfferRecord

NOW = 1_700_000_000
INTERVAL = NOW - NOW % 900
FEEDER = "F1"
# Short timeouts: everything runs on loopback.
FAST = DHTSettings(rpc_timeout_s=0.25, lookup_timeout_s=2.0, publish_timeout_s=3.0,
                   max_contacts_per_host=None)   # every node shares 127.0.0.1


def key(name: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(name.encode()).digest())


def oid(n: int) -> bytes:
    return n.to_bytes(16, "big")


class Clock:
    """A settable clock (unix seconds) shared by records, storages and nodes."""

    def __init__(self, now: float = NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(seller: SigningKey, n: int = 1, *, seq: int = 1, energy_wh: int = 1000,
           price: int = 120_000, feeder: str = FEEDER, interval: int = INTERVAL,
           expires: int = NOW + 600, endpoint: str = "127.0.0.1:9000", **hints) -> OfferRecord:
    return OfferRecord(seller=seller.public, offer_id=oid(n), seq=seq, energy_wh=energy_wh,
                       price_micro_per_kwh=price, feeder=feeder, interval_start_s=interval,
                       expires_at_s=expires, endpoint=endpoint, **hints)


def sealed(seller: SigningKey, n: int = 1, **fields):
    return seal(record(seller, n, **fields), seller)


def forged(victim: SigningKey, forger: SigningKey, n: int = 1, **fields) -> bytes:
    """A record naming ``victim`` as the seller, signed by ``forger``."""
    body = record(victim, n, **fields).encode()
    return Envelope(body, forger.sign(body)).encode()


def key_near(target: bytes, bits: int, rng: random.Random) -> SigningKey:
    """A signing key whose node id shares its first ``bits`` bits with ``target``."""
    want = int.from_bytes(target, "big") >> (160 - bits)
    while True:
        candidate = SigningKey.from_seed(rng.randbytes(32))
        if int.from_bytes(node_id(candidate.public), "big") >> (160 - bits) == want:
            return candidate


def run(coro, timeout_s: float | None = None):
    """asyncio.run that fails on any exception reported to the loop (handlers, stray tasks),
    on a task left running when ``coro`` returns, and after ``timeout_s``; returns its result.
    Every async test uses this runner."""
    errors: list[dict] = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
        async with asyncio.timeout(timeout_s):
            result = await coro
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not leftover, f"tasks left running: {leftover}"
        return result

    result = asyncio.run(main())
    assert not errors, errors
    return result


@contextlib.asynccontextmanager
async def swarm(n: int, *, clock=None, settings: DHTSettings = FAST,
                faults: FaultPlan | None = None, seed: int = 1, keys=None):
    """``n`` nodes on loopback (OS-chosen ports), each bootstrapped from up to 3 earlier ones."""
    rng = random.Random(seed)
    nodes: list[OfferDHT] = []
    try:
        for i in range(n):
            signing = keys[i] if keys else SigningKey.from_seed(rng.randbytes(32))
            node = OfferDHT(signing, settings=settings, clock=clock or Clock(), faults=faults)
            contacts = [c.address for c in rng.sample(nodes, min(3, len(nodes)))]
            await node.start("127.0.0.1", 0, contacts)
            nodes.append(node)
        yield nodes
    finally:
        for node in nodes:
            await node.stop()


async def settle(predicate, timeout_s: float = 3.0, step_s: float = 0.02) -> bool:
    """Wait until ``predicate()`` holds (at most ``timeout_s``)."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(step_s)
    return True
