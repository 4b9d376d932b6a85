"""Attacks an attacker on the feeder's network can run against real nodes, as building blocks.

Used by the attack suite (:mod:`simulator.hostile_swarm`, ``benchmarks/attacks.py``), the
regression tests and the swarm's attacker machines.  Each one is what the attack report did by
hand, bounded in count:

``storage fill``     records signed by fresh keys, sent with the DHT's own store RPC, for the
                     price-band keys buyers will look up and for thousands of other keys
                     (:func:`flood_records`, :func:`send_stores`);
``ping flood``       pings from fresh keys; the bytes that come back per byte sent is the
                     amplification a spoofed source address would turn on a victim
                     (:func:`ping_flood` on a :class:`UdpProbe`);
``ground ids``       keys ground until their node ids share a prefix with a target key, run as
                     DHT nodes that accept every store and return nothing (:func:`ground_keys`,
                     :func:`start_ground_node`);
``idle connections`` TCP connections that send nothing or half a request
                     (:func:`open_idle_connections`);
``WAL loss``         a ledger database copied without its ``-wal`` file, put back in place of
                     the live one (:func:`copy_without_wal`, :func:`put_back`);
``no credit``        a key with no voucher (or a voucher it issued itself, or another key's
                     deposit) asking a seller for its whole surplus and more
                     (:func:`greedy_requests`, :func:`deposit_block`).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from ledger import (
    GENESIS_HASH, BlockBody, BlockType, CreditVoucher, DepositPayload, SigningKey, seal,
)
from p2pnode.negotiation import Kind, PeerRequest
from p2pnode.dht import wire
from p2pnode.dht.server import DHTSettings, OfferDHT
from p2pnode.dht.storage import OfferStorage, Page
from p2pnode.identity import node_id
from p2pnode.offers import PRICE_BAND_MICRO_PER_KWH, OfferRecord, record_keys

__all__ = [
    "Blackhole", "UdpProbe", "copy_without_wal", "deposit_block", "flood_records",
    "greedy_requests", "ground_keys",
    "open_idle_connections", "ping_flood", "put_back", "send_paced", "send_stores",
    "start_ground_node", "store_datagrams",
]

PROBE_RECEIVE_BUFFER_BYTES = 8 << 20
RECORDS_PER_STORE = 20        # about 330 bytes each: a store datagram stays under 8 KB
SEND_PAUSE_EVERY = 64         # datagrams sent between yields to the event loop
SEND_PAUSE_S = 0.002          # ... and the pause: the swarm's nodes share this process's CPU


def fresh_key(rng: random.Random) -> SigningKey:
    return SigningKey.from_seed(rng.randbytes(32))


class UdpProbe(asyncio.DatagramProtocol):
    """The attacker's raw UDP socket: counts the bytes it sends and the bytes that come back."""

    def __init__(self):
        self.sent_bytes = self.received_bytes = 0
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, host: str = "127.0.0.1") -> UdpProbe:
        loop = asyncio.get_running_loop()
        _, probe = await loop.create_datagram_endpoint(cls, local_addr=(host, 0))
        sock = probe.transport.get_extra_info("socket")   # count every reply, even in bursts
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PROBE_RECEIVE_BUFFER_BYTES)
        return probe

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.received_bytes += len(data)

    async def send(self, datagrams: Iterable[tuple[bytes, tuple[str, int]]]) -> None:
        for data, _ in await send_paced(self.transport, datagrams):
            self.sent_bytes += len(data)

    @property
    def amplification(self) -> float:
        return self.received_bytes / self.sent_bytes if self.sent_bytes else 0.0

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def send_paced(transport, datagrams: Iterable[tuple[bytes, tuple[str, int]]]
                     ) -> list[tuple[bytes, tuple[str, int]]]:
    """Send every datagram from ``transport``, yielding to the event loop now and then; the
    datagrams sent."""
    sent = []
    for i, (data, address) in enumerate(datagrams):
        transport.sendto(data, address)
        sent.append((data, address))
        if i % SEND_PAUSE_EVERY == SEND_PAUSE_EVERY - 1:
            await asyncio.sleep(SEND_PAUSE_S)
    return sent


def flood_records(rng: random.Random, feeder: str, interval_start_s: int, *, bands: Iterable[int],
                  per_band: int, other_keys: int, interval_s: int, now_s: float
                  ) -> dict[bytes, list[bytes]]:
    """Records by fresh keys: ``per_band`` under each of the interval's ``bands`` (filling the
    keys buyers look up) and one under each of ``other_keys`` more keys (later intervals and
    higher bands, filling the key count).  Endpoints lead nowhere."""
    out: dict[bytes, list[bytes]] = {}
    targets = [(interval_start_s, band) for band in bands for _ in range(per_band)]
    targets += [(interval_start_s + interval_s * (1 + i % 96), 2 + i // 96)
                for i in range(other_keys)]
    for start, band in targets:
        key = fresh_key(rng)
        record = OfferRecord(
            seller=key.public, offer_id=rng.randbytes(16), seq=1, energy_wh=5000,
            price_micro_per_kwh=band * PRICE_BAND_MICRO_PER_KWH + 1, feeder=feeder,
            interval_start_s=start, expires_at_s=int(now_s) + 2 * interval_s,
            endpoint="127.0.0.1:9")
        out.setdefault(record_keys(record)[0], []).append(seal(record, key).raw)
    return out


def store_datagrams(targets: list[tuple[str, int]], records: dict[bytes, list[bytes]],
                    rng: random.Random, caller: bytes | None = None
                    ) -> list[tuple[bytes, tuple[str, int]]]:
    """Store requests (the DHT's store RPC) for every record, to every target; each claims a
    fresh key as the caller's, or ``caller`` (a live node's own key: its address is checked)."""
    datagrams = []
    for key, raws in records.items():
        for i in range(0, len(raws), RECORDS_PER_STORE):
            public = caller if caller is not None else fresh_key(rng).public
            request = wire.encode_request(rng.randbytes(20), "store",
                                          [public, key, raws[i:i + RECORDS_PER_STORE]])
            datagrams += [(request, address) for address in targets]
    return datagrams


async def send_stores(probe: UdpProbe, targets: list[tuple[str, int]],
                      records: dict[bytes, list[bytes]], rng: random.Random) -> int:
    """Store every record on every target; datagrams sent."""
    datagrams = store_datagrams(targets, records, rng)
    await probe.send(datagrams)
    return len(datagrams)


async def ping_flood(probe: UdpProbe, targets: list[tuple[str, int]], count: int,
                     rng: random.Random) -> None:
    """``count`` pings per target, each from a fresh key."""
    await probe.send((wire.encode_request(rng.randbytes(20), "ping", [rng.randbytes(32)]), address)
                     for _ in range(count) for address in targets)


def ground_keys(target: bytes, count: int, bits: int, rng: random.Random) -> list[SigningKey]:
    """``count`` keys whose node ids share the first ``bits`` bits with ``target``."""
    want = int.from_bytes(target, "big") >> (160 - bits)
    found = []
    while len(found) < count:
        candidate = fresh_key(rng)
        if int.from_bytes(node_id(candidate.public), "big") >> (160 - bits) == want:
            found.append(candidate)
    return found


class Blackhole(OfferStorage):
    """Storage of an eclipse node: says it stored every record and never returns one."""

    swallowed = 0

    def offer(self, key: bytes, raw: bytes, source=None):
        self.swallowed += 1
        return None

    def records(self, key: bytes) -> tuple[bytes, ...]:
        return ()

    def page(self, key, after, budget_bytes=0, max_records=0) -> Page:
        return Page((), None)

    def keys(self) -> list[bytes]:
        return []


async def start_ground_node(key: SigningKey, host: str, bootstrap: list[tuple[str, int]],
                            settings: DHTSettings, clock: Callable[[], float]) -> OfferDHT:
    """A DHT node at ``key``'s id that swallows the records stored on it."""
    node = OfferDHT(key, settings=settings, clock=clock)
    node.server.storage = Blackhole(clock)
    await node.start(host, 0, bootstrap)
    return node


async def open_idle_connections(host: str, port: int, count: int
                                ) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``count`` connections: every other one sends half a request's headers, the rest nothing."""
    held = []
    for i in range(count):
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            break
        if i % 2:
            writer.write(b"POST /p2p/v1/negotiate HTTP/1.1\r\nHost: x\r\n")
        held.append((reader, writer))
    return held


def copy_without_wal(db: Path, to: Path) -> None:
    """The database file alone, as a copy or backup that missed its ``-wal`` file."""
    shutil.copy(db, to)


def put_back(copy: Path, db: Path) -> None:
    """Replace the (closed) database by ``copy``: its ``-wal`` and ``-shm`` files are lost, the
    head marker beside it stays (it is another file)."""
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    os.replace(copy, db)


def deposit_block(account: SigningKey, issuer: SigningKey, amount_micro: int,
                  voucher_id: bytes, *, seq: int = 1, time_ms: int = 0) -> bytes:
    """A DEPOSIT block of ``account``'s chain holding a voucher ``issuer`` signed."""
    voucher = seal(CreditVoucher(issuer.public, account.public, voucher_id, amount_micro), issuer)
    body = BlockBody(author=account.public, seq=seq, prev=GENESIS_HASH, type=BlockType.DEPOSIT,
                     payload=DepositPayload(voucher.message, voucher.signature), link_key=b"",
                     link_seq=0, link_hash=b"", time_ms=time_ms)
    return seal(body, account).raw


def greedy_requests(key: SigningKey, offers: Iterable, energy_wh: int, now_ms: int,
                    blocks: tuple[bytes, ...] = ()) -> list[tuple[str, bytes]]:
    """(endpoint, signed REQUEST) for ``energy_wh`` of each offer record, at its price."""
    return [(offer.endpoint, seal(PeerRequest(
        key.public, offer.seller, Kind.REQUEST, os.urandom(16), os.urandom(16), now_ms,
        offer.offer_id, offer.interval_start_s, energy_wh, offer.price_micro_per_kwh, blocks),
        key).raw) for offer in offers]
