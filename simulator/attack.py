"""An attacker machine on the feeder: forges or floods through the nodes' real network paths.

A malicious house of the scenario (:mod:`simulator.faults`) runs no meter node.  It runs an
:class:`Attacker`: a DHT node of its own (it joins the offer DHT like anybody may), a peer
client and a raw UDP socket.  Once per interval, while the honest nodes buy, it discovers the
interval's offers like a buyer would (that is how it learns the honest sellers' keys and
endpoints) and then, bounded by the rates in :mod:`simulator.faults`:

``forge``   stores offer records into the DHT through the store RPC on the nodes closest to
            the records' keys: records that claim another seller's key, records tampered with
            after signing, and expired ones; and sends negotiation REQUESTs to the sellers' peer
            endpoints that claim another node's key, were tampered with after signing, or are
            old messages replayed past the replay window.
``flood``   sends garbage datagrams to every DHT socket it knows and well-formed, validly
            signed REQUESTs for offers that do not exist to every peer endpoint it knows.
``storage_fill``  stores offers signed by fresh keys (:mod:`simulator.hostile`) on every DHT
            node it knows: :data:`FILL_RECORDS_PER_BAND` under each price-band key of the next
            interval, one under each of :data:`FILL_OTHER_KEYS` other keys.  It stores from
            its own live DHT node, as itself, so the nodes check its address and hold its
            records up to that source's share (what a raw socket claiming fresh keys stores
            is charged to the one source of every unchecked sender).
``ground_ids``  runs :data:`GROUND_NODES_PER_KEY` DHT nodes per price-band key of the next
            interval at ids ground to share :data:`GROUND_BITS` bits with the key; they accept
            every store and return nothing.  (The swarm's honest nodes share 127.0.0.1, so the
            DHT's per-address contact limit is off there: this measures the damage without
            that defence; ``benchmarks/attacks.py`` measures it with.)

``no_credit``  asks every seller it discovered for 1,000,000 Wh of its offer, with no credit
            to show (:func:`simulator.hostile.greedy_requests`); what the sellers granted is
            ``attack_no_credit_granted_wh`` (must stay 0).

``storage_fill`` and ``ground_ids`` start after :data:`DHT_ATTACK_AFTER` intervals.  On a
window of the morning few sellers have standing yet (a cold swarm); the storage is shared by
network source there (:mod:`p2pnode.dht.admission`), see the README's threat model.

Every forged record carries an offer id starting with :data:`FORGED_PREFIX`, so a run can check
that no honest store ever held one.  The attacker counts what it sent and what the honest
nodes accepted or answered (``attack_*`` counters); a store RPC's reply says how many records
the node accepted, so ``attack_forged_records_accepted`` must stay 0.
``attack_forged_records_sent`` counts deliveries: a record stored on ten nodes counts ten times.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import random
from collections.abc import Callable

from ledger import Envelope, SigningKey, decode_envelope, seal
from p2pnode.dht.server import DHTSettings, OfferDHT
from p2pnode.negotiation import Kind, PeerRequest, Status, check_reply
from p2pnode.offers import PRICE_BAND_MICRO_PER_KWH, OfferRecord, query_keys, record_keys
from p2pnode.peer import PeerClient
from simulator import hostile
from simulator.faults import (
    FLOOD_DATAGRAMS_PER_INTERVAL, FLOOD_REQUESTS_PER_INTERVAL, FORGED_MESSAGES_PER_INTERVAL,
    FORGED_RECORDS_PER_INTERVAL,
)

__all__ = ["Attacker", "FORGED_PREFIX", "KINDS"]

KINDS = ("forge", "flood", "storage_fill", "ground_ids", "no_credit")
FILL_RECORDS_PER_BAND = 300      # past a key's 256 records
FILL_OTHER_KEYS = 200
GROUND_NODES_PER_KEY = 5
GROUND_BITS = 10
DHT_ATTACK_AFTER = 2             # intervals storage_fill / ground_ids wait (see the module doc)
FORGED_PREFIX = b"forged:"
SEND_CONCURRENCY = 16            # the attacker's own requests in flight at once
REQUEST_TIMEOUT_S = 0.5
REPLAY_AGE_MS = 600_000          # "captured" ten minutes ago: past the nodes' replay window
MAX_DATAGRAM_BYTES = 600
MAX_TARGETS = 64                 # DHT sockets / endpoints one attacker remembers
NO_CREDIT_ASK_WH = 1_000_000


@dataclasses.dataclass(frozen=True)
class Prices:
    """What the attacker asks discovery for: the buyers' price range (µ/kWh)."""

    floor_micro_per_kwh: int
    max_micro_per_kwh: int


class Attacker:
    """One malicious house: ``kind`` is ``"forge"`` or ``"flood"``; see the module doc."""

    def __init__(self, kind: str, key: SigningKey, *, clock: Callable[[], float], feeder: str,
                 interval_s: int, prices: Prices, dht_settings: DHTSettings, seed: int):
        if kind not in KINDS:
            raise ValueError(f"unknown attack kind {kind!r}")
        self.kind, self.key, self.clock = kind, key, clock
        self.feeder, self.interval_s, self.prices = feeder, interval_s, prices
        self.random = random.Random(seed)
        self.dht = OfferDHT(key, settings=dht_settings, clock=clock)
        self.client = PeerClient()
        self.counters: collections.Counter[str] = collections.Counter()
        self.sellers: dict[str, bytes] = {}          # endpoint -> seller key (learned)
        self._udp: asyncio.DatagramTransport | None = None
        self._ground: list[OfferDHT] = []
        self.dht_settings = dht_settings

    async def start(self) -> None:
        await self.dht.start("127.0.0.1", 0)
        await self.client.start()
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                           local_addr=("127.0.0.1", 0))

    async def stop(self) -> None:
        await self._stop_ground()
        if self._udp is not None:
            self._udp.close()
        await self.client.stop()
        await self.dht.stop()

    # -- one interval --------------------------------------------------------------------------
    async def attack(self, start_s: int) -> None:
        """Discover the interval's offers, then forge or flood (bounded; see the module doc)."""
        discovery = await self.dht.find_offers(query_keys(
            self.feeder, start_s, self.prices.max_micro_per_kwh, self.prices.floor_micro_per_kwh))
        records = [s.message for s in discovery.offers if s.message.seller != self.key.public]
        for record in records:
            if len(self.sellers) < MAX_TARGETS or record.endpoint in self.sellers:
                self.sellers[record.endpoint] = record.seller
        if self.kind == "forge":
            await self._forge_records(start_s, records)
            await self._send_all([self._forged_message(start_s, records, i)
                                  for i in range(FORGED_MESSAGES_PER_INTERVAL) if self.sellers],
                                 "forged_messages")
        elif self.kind == "no_credit":
            await self._ask_without_credit(records)
        elif self.kind in ("storage_fill", "ground_ids"):
            self.counters["attack_intervals_seen"] += 1
            if self.counters["attack_intervals_seen"] <= DHT_ATTACK_AFTER:
                return
            if self.kind == "storage_fill":
                await self._fill_storage(start_s + self.interval_s)
            else:
                await self._ground_ids(start_s + self.interval_s)
        else:
            await self._flood_datagrams()
            await self._send_all([self._bogus_request(start_s)
                                  for _ in range(FLOOD_REQUESTS_PER_INTERVAL) if self.sellers],
                                 "flood_requests")

    # -- forge ---------------------------------------------------------------------------------
    async def _forge_records(self, start_s: int, records: list[OfferRecord]) -> None:
        by_key: dict[bytes, list[bytes]] = collections.defaultdict(list)
        for i in range(FORGED_RECORDS_PER_INTERVAL):
            raw, record = self._forged_record(start_s, records, i)
            by_key[record_keys(record)[0]].append(raw)
        for key, raws in by_key.items():
            nodes = await self.dht.server.closest(key)
            replies = await asyncio.gather(*(self.dht.server.protocol.call_store(n, key, raws)
                                             for n in nodes))
            self.counters["attack_forged_records_sent"] += len(raws) * len(nodes)
            self.counters["attack_forged_records_accepted"] += sum(r or 0 for r in replies)

    def _forged_record(self, start_s: int, records: list[OfferRecord], i: int
                       ) -> tuple[bytes, OfferRecord]:
        """Variant ``i % 3``: another seller's key claimed, tampered after signing, expired."""
        victim = self.random.choice(records).seller if records else os.urandom(32)
        price = self.random.choice(records).price_micro_per_kwh if records \
            else self.prices.floor_micro_per_kwh
        variant = i % 3
        record = OfferRecord(
            seller=victim if variant == 0 else self.key.public,
            offer_id=FORGED_PREFIX + os.urandom(16 - len(FORGED_PREFIX)), seq=1,
            energy_wh=self.random.randint(500, 5000), price_micro_per_kwh=price,
            feeder=self.feeder, interval_start_s=start_s,
            expires_at_s=int(self.clock()) - 1 if variant == 2 else start_s + 2 * self.interval_s,
            endpoint="127.0.0.1:9")
        if variant == 0:
            body = record.encode()
            return Envelope(body, self.key.sign(body)).encode(), record
        sealed = seal(record, self.key)
        if variant == 2:
            return sealed.raw, record
        tampered = dataclasses.replace(record, energy_wh=record.energy_wh * 10)
        return Envelope(tampered.encode(), sealed.signature).encode(), tampered

    def _forged_message(self, start_s: int, records: list[OfferRecord], i: int
                        ) -> tuple[str, bytes]:
        """Variant ``i % 3``: another node's key claimed, tampered after signing, replayed old."""
        endpoint = self.random.choice(sorted(self.sellers))
        seller = self.sellers[endpoint]
        others = [s for s in self.sellers.values() if s != seller] or [os.urandom(32)]
        offer = next((r.offer_id for r in records if r.seller == seller), os.urandom(16))
        variant = i % 3
        now_ms = int(self.clock() * 1000)
        request = PeerRequest(
            sender=self.random.choice(others) if variant == 0 else self.key.public,
            recipient=seller, kind=Kind.REQUEST, trade_id=os.urandom(16), nonce=os.urandom(16),
            sent_at_ms=now_ms - REPLAY_AGE_MS if variant == 2 else now_ms, offer_id=offer,
            interval_start_s=start_s, energy_wh=1000, price_micro_per_kwh=10**6)
        if variant == 0:
            body = request.encode()
            return endpoint, Envelope(body, self.key.sign(body)).encode()
        sealed = seal(request, self.key)
        if variant == 2:
            return endpoint, sealed.raw
        tampered = dataclasses.replace(request, energy_wh=100_000)
        return endpoint, Envelope(tampered.encode(), sealed.signature).encode()

    # -- flood ---------------------------------------------------------------------------------
    async def _flood_datagrams(self) -> None:
        await self.dht.server.closest(os.urandom(20))   # learn more of the DHT
        router = self.dht.server.protocol.router
        targets = [(n.ip, n.port) for n in router.find_neighbors(self.dht.server.node,
                                                                 k=MAX_TARGETS)]
        if not targets:
            return
        for i in range(FLOOD_DATAGRAMS_PER_INTERVAL):
            garbage = self.random.randbytes(self.random.randint(1, MAX_DATAGRAM_BYTES))
            self._udp.sendto(garbage, targets[i % len(targets)])
            self.counters["attack_flood_datagrams_sent"] += 1
            if i % 50 == 49:
                await asyncio.sleep(0)    # let the receivers' loop breathe between bursts

    def _bogus_request(self, start_s: int) -> tuple[str, bytes]:
        """A validly signed REQUEST for an offer id nobody published."""
        endpoint = self.random.choice(sorted(self.sellers))
        request = PeerRequest(
            sender=self.key.public, recipient=self.sellers[endpoint], kind=Kind.REQUEST,
            trade_id=os.urandom(16), nonce=os.urandom(16), sent_at_ms=int(self.clock() * 1000),
            offer_id=FORGED_PREFIX + os.urandom(9), interval_start_s=start_s, energy_wh=1000,
            price_micro_per_kwh=10**6)
        return endpoint, seal(request, self.key).raw

    # -- no credit -------------------------------------------------------------------------------
    async def _ask_without_credit(self, records: list[OfferRecord]) -> None:
        """1,000,000 Wh of every offer, no deposit shown; counts what the sellers grant."""
        requests = hostile.greedy_requests(self.key, records[:MAX_TARGETS], NO_CREDIT_ASK_WH,
                                           int(self.clock() * 1000))
        gate = asyncio.Semaphore(SEND_CONCURRENCY)

        async def one(endpoint: str, raw: bytes) -> int:
            async with gate:
                answer = await self.client.send(endpoint, raw, REQUEST_TIMEOUT_S)
            reply = None if answer is None else check_reply(
                answer, decode_envelope(raw, PeerRequest)[0].message)
            if reply is None or isinstance(reply, str):
                return 0
            self.counters["attack_no_credit_answered"] += 1
            return reply.message.energy_wh if reply.message.status is Status.ACCEPTED else 0

        granted = await asyncio.gather(*(one(e, raw) for e, raw in requests))
        self.counters["attack_no_credit_sent"] += len(requests)
        self.counters["attack_no_credit_granted_wh"] += sum(granted)

    # -- storage fill and ground ids ------------------------------------------------------------
    def _targets(self) -> list[tuple[str, int]]:
        router = self.dht.server.protocol.router
        return [(n.ip, n.port) for n in router.find_neighbors(self.dht.server.node, k=MAX_TARGETS)]

    def _band_keys(self, start_s: int) -> list[bytes]:
        return list(query_keys(self.feeder, start_s, self.prices.max_micro_per_kwh,
                               self.prices.floor_micro_per_kwh))

    async def _fill_storage(self, start_s: int) -> None:
        """Offers by fresh keys for the next interval's keys (and others) on every known node."""
        await self.dht.server.closest(os.urandom(20))   # learn more of the DHT
        targets = self._targets()
        first = self.prices.floor_micro_per_kwh // PRICE_BAND_MICRO_PER_KWH
        bands = range(first, first + len(self._band_keys(start_s)))
        records = hostile.flood_records(self.random, self.feeder, start_s, bands=bands,
                                        per_band=FILL_RECORDS_PER_BAND, other_keys=FILL_OTHER_KEYS,
                                        interval_s=self.interval_s, now_s=self.clock())
        datagrams = hostile.store_datagrams(targets, records, self.random, caller=self.key.public)
        for i, (data, address) in enumerate(datagrams):
            self.dht.server.protocol.transport.sendto(data, address)
            self.counters["attack_fill_datagrams_sent"] += 1
            if i % 50 == 49:
                await asyncio.sleep(0)
        self.counters["attack_fill_records_signed"] += sum(map(len, records.values()))

    async def _ground_ids(self, start_s: int) -> None:
        """Nodes next to the next interval's offer keys (the previous interval's stopped).

        The grinding (about a thousand key pairs per node) runs in a thread: an attacker
        machine grinds on its own CPU, and here it shares an event loop with honest nodes,
        which it must not stall (measured: ~1 s per interval on the loop, the honest nodes'
        requests timing out meanwhile)."""
        await self._stop_ground()
        entry = self._targets()[:3]
        keys = await asyncio.get_running_loop().run_in_executor(
            None, self._grind, self._band_keys(start_s))
        for key in keys:
            self._ground.append(await hostile.start_ground_node(
                key, "127.0.0.1", entry, self.dht_settings, self.clock))
            self.counters["attack_ground_nodes"] += 1

    def _grind(self, targets: list[bytes]) -> list:
        return [key for target in targets
                for key in hostile.ground_keys(target, GROUND_NODES_PER_KEY, GROUND_BITS,
                                               self.random)]

    async def _stop_ground(self) -> None:
        for node in self._ground:
            self.counters["attack_ground_records_swallowed"] += node.storage.swallowed
            await node.stop()
        self._ground = []

    # -- sending -------------------------------------------------------------------------------
    async def _send_all(self, messages: list[tuple[str, bytes]], name: str) -> None:
        gate = asyncio.Semaphore(SEND_CONCURRENCY)

        async def one(endpoint: str, raw: bytes) -> bool:
            async with gate:
                return await self.client.send(endpoint, raw, REQUEST_TIMEOUT_S) is not None

        answered = await asyncio.gather(*(one(e, raw) for e, raw in messages))
        self.counters[f"attack_{name}_sent"] += len(messages)
        self.counters[f"attack_{name}_answered"] += sum(answered)
