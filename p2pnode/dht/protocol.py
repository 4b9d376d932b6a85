"""The DHT's UDP protocol: kademlia's routing with validated multi-record stores and lookups.

:class:`OfferProtocol` subclasses :class:`kademlia.protocol.KademliaProtocol` and keeps its
routing table, but changes what kademlia gets wrong for signed offers:

* ``rpc_store`` hands each record to :class:`~p2pnode.dht.storage.OfferStorage`, which
  validates and merges it -- it never overwrites another seller's record -- naming the store's
  *source*, the caller's address, whose share of the newcomers' room the record takes
  (:mod:`p2pnode.dht.admission`).  Only a checked address (below) is a source of its own: a
  store from an unchecked caller waits for the check ping's answer (at most
  :data:`MAX_HELD_STORES_PER_ADDRESS` per address and :data:`MAX_HELD_STORES` in all), and
  what is stored from a caller still unchecked (no answer, no check possible now, or past
  those limits) is charged to the one
  :data:`~p2pnode.dht.admission.UNCHECKED_SOURCE` (counted as ``store_unchecked``): every
  forged source address together holds one source's share, and an honest store whose
  check ping was lost is still held;
* ``rpc_find_value`` returns one page of the key's record set (records ordered by
  (seller, offer_id), at most :data:`~p2pnode.dht.storage.PAGE_BUDGET_BYTES` of records and
  less when the contact list is long, so the reply stays under 8 KB, plus a cursor for the
  next page) together with the closest contacts, so a lookup can keep crawling and merge the
  sets of every responder;
* ``welcome_if_new`` offers a new neighbour the records it should hold, comparing distances to
  the *stored key itself* (kademlia hashes the already-hashed key again, so the new node gets
  the wrong keys or none);
* no amplification: an unknown caller is not welcomed on its word -- its claimed address may be
  somebody else's (UDP source addresses are not checked by anybody).  It gets the reply to its
  request; it enters the routing table and is handed the records it should hold only once its
  address is checked: it answered a request of ours from there before, or it answers one
  ping, sent once (no resend), unless a ping to that address is out or failed in the last
  :data:`VERIFY_RETRY_S`, at most :data:`VERIFY_PINGS_PER_S` in all.  So a
  request from an unknown contact draws at most its reply and one ping (a ping: under 3x its
  bytes; kademlia's package and this module before sent every record held close to the
  caller's id: one 62-byte ping drew 381 KB).  The hand-over itself scans every key held: it
  is bounded by :data:`HANDOVER_KEYS_PER_S` keys scanned per second (a contact that arrives
  when the budget is spent is welcomed without records -- sellers republish their own) and
  :data:`MAX_HANDOVER_RECORDS` records per contact;
* node ids are bound to public keys: every request carries the caller's public key and every
  reply the responder's; a contact's id is always computed from its key with
  :func:`p2pnode.identity.node_id`, and a reply whose key does not hash to the id we asked is
  refused (counted as ``id_mismatch``, the contact dropped).  Only contacts verified this way
  (callers, and nodes that answered us) enter the routing table.  Verified: nobody can sit at
  an id of their choosing without finding a key that hashes there.  Not verified: possession
  of the private key behind a claimed public key (there is no challenge-response), so a node
  could claim somebody else's key -- it then sits at that key's id, can withhold records but
  cannot forge any, because every record is signed by its seller;
* contacts are diverse (S/Kademlia's defence against ids ground near a target): with
  ``max_per_host`` set, a bucket, a ``find_node`` reply and a lookup's nearest set hold at most
  that many contacts of one IP address.  Ids are hashes of keys, but keys are free: twenty ids
  sharing 16 bits with a key take a second to find, and without this rule nodes at those ids
  would be the k closest to the key -- every store and lookup of it would reach only them.
  On a feeder network each meter has its own address; an attacker has one or a few.  Nodes
  that share one address on purpose (a swarm on loopback) switch the rule off (None);
* requests are explicit coroutines (no rpcudp ``__getattr__`` magic), each awaited under
  ``asyncio.timeout`` from a measured round trip (:mod:`p2pnode.dht.rtt`) and resent once on
  timeout with a new message id; every datagram from
  a peer is parsed strictly (:mod:`p2pnode.dht.wire`), and bad input is logged at debug level,
  counted in ``counters`` and dropped -- it never raises out of ``datagram_received``;
* every background task (stores to new neighbours, pings from the routing table) is owned by
  the server's :class:`~p2pnode.dht.tasks.TaskRegistry` and cancelled on stop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from kademlia.node import Node
from kademlia.protocol import KademliaProtocol

from p2pnode.dht import wire
from p2pnode.dht.admission import UNCHECKED_SOURCE
from p2pnode.dht.budget import TokenBucket
from p2pnode.dht.faults import FaultPlan, FaultyTransport
from p2pnode.dht.routing import OfferRoutingTable
from p2pnode.dht.rtt import RetransmitTimer
from p2pnode.dht.storage import PAGE_BUDGET_BYTES, OfferStorage
from p2pnode.dht.tasks import TaskRegistry
from p2pnode.identity import node_id

__all__ = ["OfferProtocol", "RPC_ATTEMPTS", "RPC_MAX_TIMEOUT_S", "RPC_TIMEOUT_S"]

log = logging.getLogger(__name__)

RPC_TIMEOUT_S = 0.5     # first attempt's time-out until replies are measured, and its floor
RPC_MAX_TIMEOUT_S = 2.0 # ceiling of any attempt's time-out (see p2pnode.dht.rtt)
RPC_ATTEMPTS = 2        # first send + one resend (with a new message id)
MAX_GIVEN_UP = 4096     # requests remembered after giving up, to measure their late replies
NO_REPLY = object()     # what a request returns when no reply came in time
VERIFY_PINGS_PER_S = 100.0     # pings to unknown callers (address checks), all callers together
VERIFY_BURST = 200
MAX_VERIFYING = 4096           # address checks in flight at once
VERIFY_RETRY_S = 5.0           # an address whose check failed is not checked again sooner
MAX_ANSWERED = 8192            # addresses remembered as having answered our requests
HANDOVER_KEYS_PER_S = 4096.0   # keys scanned per second for hand-overs to new contacts
HANDOVER_BURST_KEYS = 8192
MAX_HANDOVER_RECORDS = 512     # records handed to one new contact
MAX_HELD_STORES_PER_ADDRESS = 16   # stores of an unchecked caller waiting for its check ...
MAX_HELD_STORES = 512              # ... and of all unchecked callers together


class OfferProtocol(KademliaProtocol):
    def __init__(self, source_node: Node, storage: OfferStorage, ksize: int, *, public: bytes,
                 tasks: TaskRegistry, counters: collections.Counter,
                 faults: FaultPlan | None = None, rpc_timeout_s: float = RPC_TIMEOUT_S,
                 rpc_attempts: int = RPC_ATTEMPTS, rpc_max_timeout_s: float = RPC_MAX_TIMEOUT_S,
                 max_per_host: int | None = None):
        super().__init__(source_node, storage, ksize)
        self.max_per_host = max_per_host
        self.router = OfferRoutingTable(self, ksize, source_node, max_per_host)
        self.public = public
        self.tasks = tasks
        self.counters = counters
        self.faults = faults
        self.timer = RetransmitTimer(rpc_timeout_s, max(rpc_timeout_s, rpc_max_timeout_s))
        self.rpc_attempts = rpc_attempts
        self.transport: FaultyTransport | None = None
        # msg id -> (reply future, address asked, loop time sent); given up: (address, sent)
        self._outstanding: dict[bytes, tuple[asyncio.Future, tuple[str, int], float]] = {}
        self._given_up: collections.OrderedDict[bytes, tuple[tuple[str, int], float]] = (
            collections.OrderedDict())
        self._verify_budget = TokenBucket(VERIFY_PINGS_PER_S, VERIFY_BURST)
        # address -> the check ping out to it (its result: it answered)
        self._verifying: dict[tuple[str, int], asyncio.Future] = {}
        self._held_stores: collections.Counter[tuple[str, int]] = collections.Counter()
        self._failed_at: dict[tuple[str, int], float] = {}   # address -> when its check failed
        # address -> node id that answered a request of ours from there (most recent last)
        self._answered: collections.OrderedDict[tuple[str, int], bytes] = (
            collections.OrderedDict())
        self._handover_budget = TokenBucket(HANDOVER_KEYS_PER_S, HANDOVER_BURST_KEYS)
        self._handlers: dict[str, Callable[..., Any]] = {
            "ping": self.rpc_ping, "store": self.rpc_store,
            "find_node": self.rpc_find_node, "find_value": self.rpc_find_value,
        }

    def __getattr__(self, name: str):
        # rpcudp turns every unknown attribute into a remote call; a typo must be an error.
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # -- transport -------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = FaultyTransport(transport, self.faults, self.source_node.id.hex())

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            kind, msg_id, payload = wire.decode_datagram(data)
            if kind == wire.REQUEST:
                self._on_request(msg_id, payload, addr)
            else:
                self._accept_response(msg_id, payload, addr)
        except wire.WireError as exc:
            self.counters["bad_datagram"] += 1
            log.debug("dropped a bad datagram from %s: %s", addr, exc)

    def error_received(self, exc: Exception) -> None:
        self.counters["socket_error"] += 1
        log.debug("socket error: %s", exc)

    def _on_request(self, msg_id: bytes, payload: Any, addr) -> None:
        name, args = wire.parse_request(payload)
        reply = self._handlers[name](addr, *args)
        if isinstance(reply, _Later):
            if self.tasks.closed:         # stopping: nobody will await it
                reply.outcome.close()
            else:
                self.spawn(self._reply_later(msg_id, name, reply.outcome, addr))
            return
        self._reply(msg_id, name, reply, addr)

    async def _reply_later(self, msg_id: bytes, name: str, outcome, addr) -> None:
        self._reply(msg_id, name, await outcome, addr)

    def _reply(self, msg_id: bytes, name: str, reply: Any, addr) -> None:
        datagram = wire.encode_reply(msg_id, self.public, reply)
        if len(datagram) > wire.MAX_DATAGRAM_BYTES:
            log.error("reply to %s is %d bytes; not sent", name, len(datagram))
            self.counters["oversize_reply"] += 1
            return
        self._send(datagram, addr)

    def _accept_response(self, msg_id: bytes, payload: Any, address) -> None:
        entry = self._outstanding.get(msg_id)
        if entry is None:
            late = self._given_up.pop(msg_id, None)
            if late is not None and tuple(address[:2]) == late[0]:
                # the request was given up: its time-out was shorter than this round trip
                self.counters["late_reply"] += 1
                self.timer.sample(asyncio.get_running_loop().time() - late[1])
            else:
                self.counters["unexpected_reply"] += 1  # duplicated or never asked for
            return
        future, expected, sent_at = entry
        if tuple(address[:2]) != expected:
            self.counters["spoofed_reply"] += 1
            return
        del self._outstanding[msg_id]          # a duplicate of this reply is unexpected
        if future.done():                      # another attempt's reply came first
            self.counters["unexpected_reply"] += 1
            return
        self.timer.sample(asyncio.get_running_loop().time() - sent_at)
        future.set_result(payload)

    def _send(self, datagram: bytes, address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(datagram, address)

    # -- serving ---------------------------------------------------------------------------
    def _contact(self, sender, public: Any) -> Node:
        """The caller as a routing contact, its id derived from its public key.

        A known contact (same id, same address) stays as it is, and so does one that answered a
        request of ours from that address (welcomed); another unknown one that would enter a
        bucket is checked with a ping first (see the module doc): it enters when it answers.
        """
        contact = Node(node_id(wire.want_public(public)), sender[0], sender[1])
        if contact.id == self.source_node.id:
            raise wire.WireError("a peer claims our own key")
        if self._is_known(contact):
            return contact
        if self._answered.get((contact.ip, contact.port)) == contact.id:
            self.welcome_if_new(contact)   # it answered us from there: its address is checked
        elif self.router.admits(contact):
            self._verify(contact)
        else:   # it would only wait in a full bucket's replacement cache: no records, no ping
            self.router.add_contact(contact)
        return contact

    def _is_known(self, contact: Node) -> bool:
        bucket = self.router.buckets[self.router.get_bucket_for(contact)]
        known = bucket.nodes.get(contact.id)
        return known is not None and known.same_home_as(contact)

    def _verify(self, contact: Node) -> asyncio.Future | None:
        """Ping an unknown caller once (rate-limited); it is welcomed if it answers.  The check
        under way for its address (its result: True when it answered), or None when no check
        can be made now (one failed lately, or the budget is spent)."""
        address = (contact.ip, contact.port)
        pending = self._verifying.get(address)
        if pending is not None:
            return pending
        now = time.monotonic()
        if now - self._failed_at.get(address, -1e9) < VERIFY_RETRY_S:
            return None
        if len(self._verifying) >= MAX_VERIFYING or not self._verify_budget.take(1, now):
            self.counters["verify_skipped"] += 1
            return None
        self.counters["verify_pings"] += 1
        check = self.spawn(self._check_caller(contact, address))
        if not check.done():
            self._verifying[address] = check
        return check

    async def _check_caller(self, contact: Node, address: tuple[str, int]) -> bool:
        answered = None
        try:   # on an answer, _ask welcomes it (and hands records over)
            answered = await self._ask(contact, "ping", [self.public], _no_value, attempts=1)
        finally:
            self._verifying.pop(address, None)
            if answered is None:
                if len(self._failed_at) >= MAX_VERIFYING:
                    self._failed_at.clear()
                self._failed_at[address] = time.monotonic()
        return answered is not None

    def rpc_ping(self, sender, public) -> None:
        self._contact(sender, public)

    def rpc_store(self, sender, public, key, records) -> int | _Later:
        contact = self._contact(sender, public)
        key = wire.want_key(key)
        records = wire.want_records(records, wire.MAX_RECORDS_PER_STORE)
        if self._checked(contact):
            return self._store(contact, key, records)
        address = (contact.ip, contact.port)
        check = None
        if (self._held_stores[address] < MAX_HELD_STORES_PER_ADDRESS
                and sum(self._held_stores.values()) < MAX_HELD_STORES):
            check = self._verify(contact)
        if check is None:
            return self._store(contact, key, records)
        self._held_stores[address] += 1
        return _Later(self._store_when_checked(contact, key, records, check))

    def _checked(self, contact: Node) -> bool:
        """The contact's address answered a request of ours as this contact (or it is in the
        routing table, which it entered that way)."""
        return (self._is_known(contact)
                or self._answered.get((contact.ip, contact.port)) == contact.id)

    async def _store_when_checked(self, contact: Node, key: bytes, records: list[bytes],
                                  check: asyncio.Future) -> int:
        address = (contact.ip, contact.port)
        try:
            await asyncio.shield(check)
        finally:
            self._held_stores[address] -= 1
            if not self._held_stores[address]:
                del self._held_stores[address]
        return self._store(contact, key, records)

    def _store(self, contact: Node, key: bytes, records: list[bytes]) -> int:
        """Store ``records`` charged to their source: a checked contact's IP address, or
        ip:port when ``max_per_host`` is off because nodes share an address on purpose; an
        unchecked contact's are all charged to the one ``UNCHECKED_SOURCE``."""
        if not self._checked(contact):
            self.counters["store_unchecked"] += len(records)
            source = UNCHECKED_SOURCE
        elif self.max_per_host is not None:
            source = contact.ip
        else:
            source = (contact.ip, contact.port)
        return sum(1 for raw in records if self.storage.offer(key, raw, source) is None)

    def rpc_find_node(self, sender, public, key) -> list[list]:
        source = self._contact(sender, public)
        return self._neighbours(wire.want_key(key), exclude=source)

    def rpc_find_value(self, sender, public, key, cursor) -> dict:
        source = self._contact(sender, public)
        key, cursor = wire.want_key(key), wire.want_cursor(cursor)
        nodes = [] if cursor is not None else self._neighbours(key, exclude=source)
        budget = min(PAGE_BUDGET_BYTES, wire.record_budget(nodes))
        page = self.storage.page(key, cursor, budget, wire.MAX_RECORDS_PER_REPLY)
        return wire.find_value_reply(nodes, page.records, page.more)

    def _neighbours(self, key: bytes, exclude: Node | None = None) -> list[list]:
        found = self.router.find_neighbors(Node(key), exclude=exclude)
        return [[n.id, n.ip, n.port] for n in found]

    def welcome_if_new(self, node: Node) -> None:
        """Add a new contact whose address is checked; first send it the records it should
        hold (Kademlia paper, 2.5).

        A caller that only enters a replacement cache (its bucket is full and may not split) is
        far from us, so not among the k closest to any key we hold: it gets no records, and the
        (costly) check is skipped -- such callers are most of a large swarm's traffic."""
        if node.id == self.source_node.id or not self.router.is_new_node(node):
            return
        if not self.router.admits(node):
            self.router.add_contact(node)
            return
        keys = self.storage.keys()
        if keys and not self._handover_budget.take(len(keys), time.monotonic()):
            self.counters["handover_skipped"] += 1
        else:
            self._hand_over(node, keys)
        self.router.add_contact(node)

    def _hand_over(self, node: Node, keys: list[bytes]) -> None:
        budget = MAX_HANDOVER_RECORDS
        for key in keys:
            if budget <= 0:
                self.counters["handover_truncated"] += 1
                return
            if self._should_hand_over(node, key):
                records = self.storage.records(key)[:budget]
                budget -= len(records)
                for batch in _batches(records):
                    self.spawn(self.call_store(node, key, batch))

    def _should_hand_over(self, node: Node, key: bytes) -> bool:
        """True when ``node`` is among the k closest to ``key`` and we are the closest holder."""
        target = Node(key)
        known = self.router.find_neighbors(target)
        if not known:
            return True
        new_is_close = (len(known) < self.router.ksize
                        or node.distance_to(target) < known[-1].distance_to(target))
        we_are_closest = self.source_node.distance_to(target) < known[0].distance_to(target)
        return new_is_close and we_are_closest

    # -- calling ---------------------------------------------------------------------------
    def spawn(self, coro) -> asyncio.Future:
        if self.tasks.closed:
            coro.close()
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return self.tasks.spawn(coro)

    async def _call(self, address: tuple[str, int], name: str, args: list,
                    attempts: int | None = None) -> Any:
        """Send a request and await its reply's payload, or :data:`NO_REPLY` after the retries.

        Each attempt has its own message id (a reply names the attempt it answers, so its round
        trip is measured exactly) and waits :meth:`RetransmitTimer.timeout_s` for it; a reply to
        any attempt answers the request."""
        if self.transport is None or self.transport.is_closing():
            return NO_REPLY
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        address = (address[0], address[1])
        sent: list[tuple[bytes, float]] = []
        try:
            for attempt in range(attempts or self.rpc_attempts):
                msg_id = os.urandom(20)
                sent.append((msg_id, loop.time()))
                self._outstanding[msg_id] = (future, address, sent[-1][1])
                self._send(wire.encode_request(msg_id, name, args), address)
                try:
                    async with asyncio.timeout(self.timer.timeout_s(attempt)):
                        return await asyncio.shield(future)
                except TimeoutError:
                    self.counters["rpc_timeout"] += 1
            return NO_REPLY
        finally:
            for msg_id, at in sent:
                if self._outstanding.pop(msg_id, None) is not None and not future.done():
                    self._given_up[msg_id] = (address, at)
            while len(self._given_up) > MAX_GIVEN_UP:
                self._given_up.popitem(last=False)
            if not future.done():
                future.cancel()

    async def _ask(self, node: Node, name: str, args: list, parse: Callable[[Any], Any],
                   attempts: int | None = None):
        """Call ``node``; parse the reply; update the routing table.  None when it failed."""
        payload = await self._call((node.ip, node.port), name, args, attempts)
        if payload is NO_REPLY:
            self.counters["no_reply"] += 1
            self.router.remove_contact(node)
            return None
        try:
            public, value = wire.parse_reply(payload)
            if node_id(public) != node.id:
                self.counters["id_mismatch"] += 1
                raise wire.WireError("the responder's key does not match the node id asked")
            value = parse(value)
        except wire.WireError as exc:
            self.counters["bad_reply"] += 1
            log.debug("bad %s reply from %s: %s", name, node, exc)
            self.router.remove_contact(node)  # penalty: forget a contact that talks garbage
            return None
        self._remember_answer(node)
        self.welcome_if_new(node)
        return value

    def _remember_answer(self, node: Node) -> None:
        address = (node.ip, node.port)
        self._answered[address] = node.id
        self._answered.move_to_end(address)
        self._failed_at.pop(address, None)
        if len(self._answered) > MAX_ANSWERED:
            self._answered.popitem(last=False)

    def call_ping(self, node_to_ask: Node) -> asyncio.Future:
        """Check a contact is alive (the routing table calls this with ``ensure_future``)."""
        return self.spawn(self._ping_contact(node_to_ask))

    async def _ping_contact(self, node: Node) -> bool:
        return await self._ask(node, "ping", [self.public], _no_value) is not None

    async def ping_address(self, address: tuple[str, int]) -> Node | None:
        """Ping an address (bootstrap); the contact found there, its id from its public key."""
        payload = await self._call(address, "ping", [self.public])
        if payload is NO_REPLY:
            return None
        try:
            public, _ = wire.parse_reply(payload)
        except wire.WireError:
            self.counters["bad_reply"] += 1
            return None
        if public == self.public:
            return None
        contact = Node(node_id(public), address[0], address[1])
        self._remember_answer(contact)
        self.welcome_if_new(contact)
        return contact

    async def call_find_node(self, node_to_ask: Node, node_to_find: Node) -> list[Node] | None:
        nodes = await self._ask(node_to_ask, "find_node", [self.public, node_to_find.id],
                                wire.parse_nodes)
        return None if nodes is None else [Node(*n) for n in nodes]

    async def call_find_value(self, node_to_ask: Node, node_to_find: Node,
                              cursor: bytes | None = None) -> wire.FindValueReply | None:
        return await self._ask(node_to_ask, "find_value",
                               [self.public, node_to_find.id, cursor], wire.parse_find_value)

    async def call_store(self, node_to_ask: Node, key: bytes, value) -> int | None:
        """Store records (one sealed record or a list of them); how many the node accepted."""
        records = [value] if isinstance(value, bytes) else list(value)

        def parse(payload):
            if type(payload) is not int or not 0 <= payload <= len(records):
                raise wire.WireError("a store reply is the number of records accepted")
            return payload
        return await self._ask(node_to_ask, "store", [self.public, key, records], parse)

    def close(self) -> None:
        for future, _, _ in self._outstanding.values():
            if not future.done():
                future.cancel()
        self._given_up.clear()
        if self.transport is not None:
            self.transport.close()


class _Later:
    """A reply that is sent when ``outcome`` (an awaitable of the reply) is done."""

    __slots__ = ("outcome",)

    def __init__(self, outcome):
        self.outcome = outcome


def _no_value(value: Any) -> bool:
    if value is not None:
        raise wire.WireError("a ping reply carries no value")
    return True


def _batches(records: tuple[bytes, ...]):
    """Split records into store requests that fit a datagram."""
    batch: list[bytes] = []
    used = 0
    for raw in records:
        if batch and (used + len(raw) > PAGE_BUDGET_BYTES
                      or len(batch) == wire.MAX_RECORDS_PER_STORE):
            yield batch
            batch, used = [], 0
        batch.append(raw)
        used += len(raw)
    if batch:
        yield batch
