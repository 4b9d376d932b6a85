"""The offer DHT as one object: start, publish, withdraw, find offers, stop.

:class:`OfferServer` subclasses :class:`kademlia.network.Server` to plug in the protocol, the
storage and the crawlers, and to change two behaviours: its periodic refresh republishes
*nothing* held for others (only a seller republishes its own offers -- otherwise every node
would keep everybody's records alive forever), and every task it starts is owned and
cancelled on stop.  Its string-keyed ``get``/``set`` do not apply to offers and refuse to run.

:class:`OfferDHT` is the interface the node uses.  Publishing stores a record on the k closest
live nodes of each of its keys (and here, when this node is one of them) and keeps it in the
seller's own table, republished every ``republish_interval_s`` until it expires.  Discovery
(:meth:`OfferDHT.find_offers`) looks up several keys at once, at most
:data:`MAX_PARALLEL_QUERIES` at a time, each under ``asyncio.timeout``, merges every record set
returned and reports counters.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import socket
import time
from typing import NamedTuple
from collections.abc import Callable, Iterable, Mapping

from kademlia.network import Server
from kademlia.node import Node

from ledger import Sealed, SigningKey, seal
from p2pnode.dht.admission import AdmissionPolicy
from p2pnode.dht.crawler import NodeLookup, OfferLookup
from p2pnode.dht.faults import FaultPlan
from p2pnode.dht.protocol import RPC_ATTEMPTS, RPC_MAX_TIMEOUT_S, RPC_TIMEOUT_S, OfferProtocol
from p2pnode.dht.storage import MAX_RECORDS_PER_SELLER, OfferStorage
from p2pnode.dht.tasks import TaskRegistry
from p2pnode.errors import NodeError
from p2pnode.identity import node_id
from p2pnode.offers import (
    BidRecord, KEY_BYTES, Drop, OfferMerge, OfferRecord, OfferRejected, RecordCache, record_keys,
)

__all__ = ["DHTError", "DHTSettings", "Discovery", "MAX_PARALLEL_QUERIES", "MAX_QUERY_KEYS", "OfferDHT",
           "OfferServer"]

log = logging.getLogger(__name__)

KSIZE = 20                   # replicas per key and width of a lookup (Kademlia's k)
ALPHA = 3                    # requests in flight per lookup
MAX_PARALLEL_QUERIES = 8     # keys looked up at once by one discovery
MAX_QUERY_KEYS = 32          # keys one discovery may ask for
LOOKUP_TIMEOUT_S = 3.0       # one key's lookup
PUBLISH_TIMEOUT_S = 5.0      # one key's lookup and stores
REPUBLISH_INTERVAL_S = 300.0
REFRESH_INTERVAL_S = 3600.0
RECEIVE_BUFFER_BYTES = 1 << 20
MAX_CONTACTS_PER_HOST = 2
"""Asked of the kernel for the DHT socket (it caps the request at ``net.core.rmem_max``).  A
lookup's replies arrive in bursts of up to ``alpha`` x 8 KB pages per key and discovery asks
several keys at once; with the default ~200 KB buffer a node whose event loop is busy for a
moment loses replies to a full buffer -- in a 1000-node swarm on two cores millions of them
(``RcvbufErrors`` in /proc/net/snmp), each costing an RPC time-out."""
MAX_OWN_OFFERS = MAX_RECORDS_PER_SELLER
CLOSEST_REUSE_S = 60.0   # node seconds a key's closest nodes are reused for publishing
MAX_CLOSEST_KEPT = 256   # keys whose closest nodes are remembered


class DHTError(NodeError):
    """The DHT cannot run (its socket cannot be bound)."""


@dataclasses.dataclass(frozen=True)
class DHTSettings:
    ksize: int = KSIZE
    alpha: int = ALPHA
    rpc_timeout_s: float = RPC_TIMEOUT_S          # floor of the measured time-out
    rpc_max_timeout_s: float = RPC_MAX_TIMEOUT_S  # its ceiling (p2pnode.dht.rtt)
    rpc_attempts: int = RPC_ATTEMPTS
    lookup_timeout_s: float = LOOKUP_TIMEOUT_S
    publish_timeout_s: float = PUBLISH_TIMEOUT_S
    republish_interval_s: float = REPUBLISH_INTERVAL_S
    refresh_interval_s: float = REFRESH_INTERVAL_S
    receive_buffer_bytes: int = RECEIVE_BUFFER_BYTES
    admission: AdmissionPolicy = AdmissionPolicy()   # which offers are held for others
    # contacts of one IP address per bucket, find_node reply and lookup (p2pnode.dht.protocol);
    # None for swarms that share one address on purpose (every node on 127.0.0.1)
    max_contacts_per_host: int | None = MAX_CONTACTS_PER_HOST

    def __post_init__(self) -> None:
        if not 1 << 16 <= self.receive_buffer_bytes <= 1 << 26:
            raise ValueError("DHTSettings.receive_buffer_bytes must be within 64 KiB..64 MiB")
        for name in ("ksize", "alpha", "rpc_attempts"):
            if not 1 <= getattr(self, name) <= 64:
                raise ValueError(f"DHTSettings.{name} must be within 1..64")
        if self.max_contacts_per_host is not None and not 1 <= self.max_contacts_per_host <= 64:
            raise ValueError("DHTSettings.max_contacts_per_host must be within 1..64 or None")
        if self.rpc_max_timeout_s < self.rpc_timeout_s:
            raise ValueError("DHTSettings.rpc_max_timeout_s must be >= rpc_timeout_s")
        for name in ("rpc_timeout_s", "lookup_timeout_s", "publish_timeout_s",
                     "republish_interval_s", "refresh_interval_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"DHTSettings.{name} must be > 0")


@dataclasses.dataclass(frozen=True)
class Discovery:
    """What one parallel discovery found: the newest live version of each offer, cheapest first."""

    offers: tuple[Sealed[OfferRecord], ...]
    keys: int
    keys_timed_out: int
    responses: int        # replies from nodes (all keys)
    failures: int         # nodes that did not answer
    dropped: Mapping[str, int]
    bids: tuple[Sealed[BidRecord], ...] = ()   # buyers' bids under the same keys


class StoreOutcome(NamedTuple):
    """What the nodes a record was stored on under one key said: ``accepted`` (this node
    included when it is among the closest), ``refused`` (a storage rule dropped it, counted
    there as ``stored_<reason>``), ``unanswered`` (no reply in time)."""

    accepted: int
    refused: int
    unanswered: int


class OfferServer(Server):
    """kademlia's server with our protocol and storage, owned tasks and no foreign republish."""

    protocol_class = OfferProtocol

    def __init__(self, key: SigningKey, settings: DHTSettings, clock: Callable[[], float],
                 cache: RecordCache, faults: FaultPlan | None = None):
        super().__init__(ksize=settings.ksize, alpha=settings.alpha, node_id=node_id(key.public),
                         storage=OfferStorage(clock, cache, settings.admission))
        if self.node.id != node_id(key.public):  # the id is bound to the key, never chosen
            raise ValueError("node id is not derived from the node's key")
        self.public = key.public
        self.settings = settings
        self.faults = faults
        self.tasks = TaskRegistry(f"dht {self.node.id.hex()[:8]}")
        self.counters: collections.Counter[str] = collections.Counter()

    def _create_protocol(self) -> OfferProtocol:
        return self.protocol_class(
            self.node, self.storage, self.ksize, public=self.public, tasks=self.tasks,
            counters=self.counters, faults=self.faults,
            rpc_timeout_s=self.settings.rpc_timeout_s, rpc_attempts=self.settings.rpc_attempts,
            rpc_max_timeout_s=self.settings.rpc_max_timeout_s,
            max_per_host=self.settings.max_contacts_per_host)

    def refresh_table(self, interval: float | None = None) -> None:
        """Called by ``listen``: start the owned refresh loop (kademlia chains call_later)."""
        self.tasks.spawn(self._refresh_forever(interval or self.settings.refresh_interval_s),
                         name="refresh")

    async def _refresh_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self._refresh_table()

    async def _refresh_table(self) -> None:
        """Refresh lonely buckets.  Records held for others are never republished here."""
        for bucket_id in self.protocol.get_refresh_ids():
            await self.closest(bucket_id)

    async def closest(self, target_id: bytes) -> list[Node]:
        """The k closest nodes to ``target_id`` that answered a lookup."""
        peers = self.protocol.router.find_neighbors(Node(target_id))
        if not peers:
            return []
        return await NodeLookup(self.protocol, target_id, peers, self.ksize, self.alpha).find()

    async def bootstrap(self, addrs: Iterable[tuple[str, int]]) -> list[Node]:
        found = await asyncio.gather(*(self.bootstrap_node(a) for a in addrs))
        nodes = [n for n in found if n is not None]
        if not nodes:
            return []
        return await NodeLookup(self.protocol, self.node.id, nodes, self.ksize, self.alpha).find()

    async def bootstrap_node(self, addr: tuple[str, int]) -> Node | None:
        return await self.protocol.ping_address((addr[0], int(addr[1])))

    async def get(self, key):
        raise NotImplementedError("offers are found with OfferDHT.find_offers")

    async def set(self, key, value):
        raise NotImplementedError("offers are stored with OfferDHT.publish")

    async def close(self) -> None:
        """Stop serving, cancel every task this server started and wait for them."""
        if self.protocol is not None:
            self.protocol.close()
        self.stop()
        await self.tasks.close()


class OfferDHT:
    """A node's handle on the offer DHT.  Use ``async with`` or ``start()``/``stop()``."""

    def __init__(self, key: SigningKey, *, settings: DHTSettings | None = None,
                 clock: Callable[[], float] = time.time, faults: FaultPlan | None = None):
        self.key = key
        self.settings = settings or DHTSettings()
        self.clock = clock
        self.cache = RecordCache()
        self.server = OfferServer(key, self.settings, clock, self.cache, faults)
        self.lookup_dropped: collections.Counter[str] = collections.Counter()
        self._own: dict[bytes, Sealed[OfferRecord]] = {}
        self._closest_seen: dict[bytes, tuple[float, list[Node]]] = {}   # key -> (until, nodes)
        self._started = False

    # -- life cycle ------------------------------------------------------------------------
    @property
    def node_id(self) -> bytes:
        return self.server.node.id

    @property
    def storage(self) -> OfferStorage:
        return self.server.storage

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the DHT socket is bound to (port chosen by the OS for port 0)."""
        if self.server.transport is None:
            raise RuntimeError("the DHT is not started")
        host, port = self.server.transport.get_extra_info("sockname")[:2]
        return host, port

    @property
    def port(self) -> int:
        return self.address[1]

    async def start(self, host: str = "127.0.0.1", port: int = 0,
                    bootstrap: Iterable[tuple[str, int]] = ()) -> None:
        if self._started:
            raise RuntimeError("the DHT is already started")
        self._started = True
        try:
            await self.server.listen(port, host)
        except OSError as exc:
            raise DHTError(f"cannot bind the DHT socket to {host}:{port}: {exc.strerror}") from exc
        sock = self.server.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.settings.receive_buffer_bytes)
        self.server.tasks.spawn(self._republish_forever(), name="republish")
        bootstrap = list(bootstrap)
        if bootstrap:
            await self.bootstrap(bootstrap)

    async def bootstrap(self, addrs: Iterable[tuple[str, int]]) -> int:
        """Join through known addresses; returns how many close nodes answered."""
        return len(await self.server.bootstrap(list(addrs)))

    async def stop(self) -> None:
        await self.server.close()

    async def __aenter__(self) -> OfferDHT:
        if not self._started:
            await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    def set_faults(self, plan: FaultPlan | None) -> None:
        """Switch datagram faults on this node's transport (tests, benchmarks)."""
        self.server.protocol.transport.set_plan(plan)

    def counters(self) -> dict[str, int]:
        """Every drop and failure counted so far: protocol, storage (``stored_*``), lookups."""
        out = dict(self.server.counters)
        out.update({f"stored_{k}": v for k, v in self.storage.dropped.items()})
        out.update({f"found_{k}": v for k, v in self.lookup_dropped.items()})
        return out

    # -- publishing ------------------------------------------------------------------------
    async def publish(self, sealed: Sealed[OfferRecord]) -> int:
        """Store our own record on the closest nodes of its keys; returns how many accepted it.

        Raises :class:`OfferRejected` when the record is not ours, invalid, expired, older than
        the version already published, or moves an offer id to another price band -- and
        (reason ``not_stored``) when no node, this one included, stored it under one of its
        keys: it stays ours and the next republish tries again, but nobody can find it yet.
        """
        self._adopt(sealed)
        outcome = await self._store_everywhere(sealed)
        if outcome.accepted == 0:
            self.server.counters["publish_not_stored"] += 1
            raise OfferRejected("not_stored", f"no node stored the record ({outcome.refused} "
                                f"refused it, {outcome.unanswered} did not answer)")
        return outcome.accepted

    async def withdraw(self, offer_id: bytes) -> Sealed[OfferRecord]:
        """Replace our offer by a tombstone (next seq, 0 Wh) and publish it."""
        held = self._own.get(offer_id)
        if held is None:
            raise OfferRejected("unknown_offer", offer_id.hex())
        record = dataclasses.replace(held.message, seq=held.message.seq + 1, energy_wh=0)
        tombstone = seal(record, self.key)
        await self.publish(tombstone)
        return tombstone

    def own_offer(self, offer_id: bytes) -> Sealed[OfferRecord] | None:
        """The latest version we published of ``offer_id`` (its seq + 1 is the next version)."""
        return self._own.get(offer_id)

    def own_offers(self) -> list[Sealed[OfferRecord]]:
        now_s = self.clock()
        return [s for s in self._own.values() if s.message.expires_at_s > now_s]

    def _adopt(self, sealed: Sealed[OfferRecord]) -> None:
        checked = self.cache.check(sealed.raw, self.clock())
        if isinstance(checked, Drop):
            raise OfferRejected(checked)
        record = checked.message
        if record.seller != self.key.public:
            raise OfferRejected("not_ours", "only the seller publishes its offers")
        self._forget_expired()
        held = self._own.get(record.offer_id)
        if held is None and len(self._own) >= MAX_OWN_OFFERS:
            raise OfferRejected(Drop.SELLER_FULL, f"at most {MAX_OWN_OFFERS} live offers")
        if held is not None and held.raw != checked.raw:
            if held.message.seq >= record.seq:
                raise OfferRejected(Drop.STALE_SEQ, f"seq {record.seq} <= {held.message.seq}")
            if record_keys(held.message) != record_keys(record):
                raise OfferRejected("band_changed",
                                    "an offer id keeps its price band; withdraw it instead")
        self._own[record.offer_id] = checked

    def _forget_expired(self) -> None:
        now_s = self.clock()
        for offer_id in [o for o, s in self._own.items() if s.message.expires_at_s <= now_s]:
            del self._own[offer_id]

    async def _store_everywhere(self, sealed: Sealed[OfferRecord]) -> StoreOutcome:
        """Store under every key of the record; the outcome of the key that fared worst."""
        outcomes = await asyncio.gather(*(self._store_under(key, sealed.raw)
                                          for key in record_keys(sealed.message)))
        return min(outcomes)

    async def _store_under(self, key: bytes, raw: bytes) -> StoreOutcome:
        accepted = refused = unanswered = 0
        try:
            async with asyncio.timeout(self.settings.publish_timeout_s):
                nodes = await self._closest(key)
                if self._among_closest(key, nodes):
                    if self.storage.offer(key, raw) is None:
                        accepted += 1
                    else:
                        refused += 1
                replies = await asyncio.gather(
                    *(self.server.protocol.call_store(n, key, [raw]) for n in nodes))
                stored = sum(1 for r in replies if r)
                unanswered = sum(1 for r in replies if r is None)
                refused += len(replies) - stored - unanswered
                if nodes and not stored:   # the nodes we remembered are gone: look again
                    self._closest_seen.pop(key, None)
                accepted += stored
        except TimeoutError:
            self.server.counters["publish_timeout"] += 1
        self.server.counters["store_refused"] += refused
        self.server.counters["store_unanswered"] += unanswered
        return StoreOutcome(accepted, refused, unanswered)

    async def _closest(self, key: bytes) -> list[Node]:
        """The closest nodes of ``key``, looked up at most once per :data:`CLOSEST_REUSE_S` of
        node time: an offer is published, repriced and republished after each sale within
        seconds, each time under the same key (a full lookup each time was most of the cost of
        publishing)."""
        now = self.clock()
        held = self._closest_seen.get(key)
        if held is not None and held[0] > now:
            self.server.counters["closest_reused"] += 1
            return held[1]
        nodes = await self.server.closest(key)
        if len(nodes) >= self.settings.ksize:   # a full set (a young network's may grow)
            if len(self._closest_seen) >= MAX_CLOSEST_KEPT:
                self._closest_seen.pop(next(iter(self._closest_seen)))
            self._closest_seen[key] = (now + CLOSEST_REUSE_S, nodes)
        return nodes

    def _among_closest(self, key: bytes, nodes: list[Node]) -> bool:
        if len(nodes) < self.settings.ksize:
            return True
        target = Node(key)
        return self.server.node.distance_to(target) < max(n.distance_to(target) for n in nodes)

    async def _republish_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.republish_interval_s)
            await self.republish()

    async def republish(self) -> None:
        """Store every live offer of ours again (the only republishing anybody does)."""
        self._forget_expired()
        await asyncio.gather(*(self._store_everywhere(s) for s in list(self._own.values())))

    # -- discovery -------------------------------------------------------------------------
    async def find_offers(self, keys: Iterable[bytes], now_s: float | None = None) -> Discovery:
        """Look up ``keys`` in parallel and merge every record set the network returns."""
        keys = tuple(dict.fromkeys(keys))
        if len(keys) > MAX_QUERY_KEYS:
            raise ValueError(f"at most {MAX_QUERY_KEYS} keys per discovery, got {len(keys)}")
        if any(type(k) is not bytes or len(k) != KEY_BYTES for k in keys):
            raise ValueError(f"every key must be {KEY_BYTES} bytes")
        merge = OfferMerge(self.clock() if now_s is None else now_s, self.cache)
        stats: collections.Counter[str] = collections.Counter()
        limit = asyncio.Semaphore(MAX_PARALLEL_QUERIES)
        async with asyncio.TaskGroup() as group:
            for key in keys:
                group.create_task(self._find_key(key, merge, limit, stats))
        self.lookup_dropped.update(merge.dropped)
        return Discovery(tuple(merge.offers()), len(keys), stats["timed_out"],
                         stats["responses"], stats["failures"], dict(merge.dropped),
                         tuple(merge.bids()))

    async def _find_key(self, key: bytes, merge: OfferMerge, limit: asyncio.Semaphore,
                        stats: collections.Counter) -> None:
        async with limit:
            for raw in self.storage.records(key):
                merge.add(raw, key)
            peers = self.server.protocol.router.find_neighbors(Node(key))
            if not peers:
                return
            lookup = OfferLookup(self.server.protocol, key, peers, self.settings.ksize,
                                 self.settings.alpha, merge)
            try:
                async with asyncio.timeout(self.settings.lookup_timeout_s):
                    await lookup.find()
            except TimeoutError:
                stats["timed_out"] += 1
            stats["responses"] += len(lookup.responded)
            stats["failures"] += len(lookup.failed)
