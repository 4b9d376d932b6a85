"""Lookups: find the closest live nodes to a key, or merge the record sets of all of them.

Both crawlers subclass kademlia's :class:`~kademlia.crawling.SpiderCrawl` and keep its
``nearest`` heap (the k closest contacts seen, which ones were contacted), but replace its
round-by-round loop with a steady one: up to ``alpha`` requests are in flight, and each reply
immediately launches the next request.  A request unanswered after :data:`STALL_S` stops
counting against ``alpha`` (it may still answer), so dead nodes never hold up the lookup for
a whole RPC timeout, let alone a whole round.

Termination: when every node among the k nearest has been contacted and at least ``quorum``
of them have answered, the lookup ends without waiting for requests still out to silent
(probably dead) nodes.  Those requests stay owned by the server's task registry and still
remove dead contacts from the routing table when they time out.

:class:`OfferLookup` does not stop at the first node holding a value (kademlia's
``ValueSpiderCrawl`` does): it asks every node it contacts for the key's records, merges them
all into an :class:`~p2pnode.offers.OfferMerge` (invalid and expired records dropped and
counted, newest seq per offer kept) and follows the page cursor of up to
:data:`MAX_PAGED_HOLDERS` holders, so keys with more records than fit one datagram are read in
full.  Partial results survive a timeout: the merge is filled as replies come in.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from kademlia.crawling import SpiderCrawl
from kademlia.node import Node

from p2pnode.offers import OfferMerge

__all__ = ["MAX_PAGED_HOLDERS", "MAX_PAGES_PER_HOLDER", "NodeLookup", "OfferLookup"]

log = logging.getLogger(__name__)

MAX_PAGED_HOLDERS = 3      # holders whose record set is read past the first page
MAX_PAGES_PER_HOLDER = 16  # 16 pages of ~6.5 KB cover MAX_RECORDS_PER_KEY records
STALL_S = 0.15             # a query unanswered this long frees its slot for another


class NodeLookup(SpiderCrawl):
    """Find the k closest nodes to ``target_id`` that answer."""

    QUERY, PAGE = "query", "page"

    def __init__(self, protocol, target_id: bytes, peers: list[Node], ksize: int, alpha: int,
                 quorum: int | None = None):
        super().__init__(protocol, Node(target_id), peers, ksize, alpha)
        self.quorum = quorum or max(1, ksize // 2)
        self.responded: set[bytes] = set()
        self.failed: set[bytes] = set()
        self._pending: dict[asyncio.Future, tuple[Node, str]] = {}
        self._sent_at: dict[asyncio.Future, float] = {}

    async def find(self) -> list[Node]:
        loop = asyncio.get_running_loop()
        while True:
            self._launch(loop.time())
            if not self._pending or self._settled():
                break
            done, _ = await asyncio.wait(self._pending, timeout=STALL_S,
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                peer, kind = self._pending.pop(task)
                self._sent_at.pop(task, None)
                reply = None if task.cancelled() else task.result()
                self._absorb(peer, kind, reply)
        return [n for n in self.nearest if n.id in self.responded]

    def _launch(self, now: float) -> None:
        in_flight = sum(1 for task, (_, kind) in self._pending.items()
                        if kind == self.QUERY and now - self._sent_at[task] < STALL_S)
        for peer in self.nearest.get_uncontacted():
            if in_flight >= self.alpha:
                break
            self.nearest.mark_contacted(peer)
            task = self.protocol.spawn(self._query(peer))
            self._pending[task], self._sent_at[task] = (peer, self.QUERY), now
            in_flight += 1

    def _settled(self) -> bool:
        if self.nearest.get_uncontacted():
            return False
        if any(kind != self.QUERY for _, kind in self._pending.values()):
            return False
        answered = sum(1 for n in self.nearest if n.id in self.responded)
        return answered >= self.quorum

    async def _query(self, peer: Node):
        return await self.protocol.call_find_node(peer, self.node)

    def _absorb(self, peer: Node, kind: str, reply) -> None:
        if reply is None:
            self.failed.add(peer.id)
            self.nearest.remove([peer.id])
            return
        self.responded.add(peer.id)
        self._push(reply)

    def _push(self, nodes: list[Node]) -> None:
        own = self.protocol.source_node.id
        fresh = [n for n in nodes if n.id != own and n.id not in self.failed]
        limit = getattr(self.protocol, "max_per_host", None)
        if fresh and limit is not None:   # at most ``limit`` contacts of one address (protocol)
            hosts = collections.Counter(n.ip for _, n in self.nearest.heap)
            kept = []
            for n in fresh:
                if self.nearest.get_node(n.id) is None and hosts[n.ip] < limit:
                    hosts[n.ip] += 1
                    kept.append(n)
            fresh = kept
        if fresh:
            self.nearest.push(fresh)


class OfferLookup(NodeLookup):
    """Merge the record sets of ``key`` held by all the closest nodes that answer."""

    def __init__(self, protocol, key: bytes, peers: list[Node], ksize: int, alpha: int,
                 merge: OfferMerge, quorum: int | None = None):
        super().__init__(protocol, key, peers, ksize, alpha, quorum)
        self.key = key
        self.merge = merge
        self.holders: set[bytes] = set()
        self._paged: dict[bytes, int] = {}  # holder id -> pages fetched past the first

    async def _query(self, peer: Node):
        return await self.protocol.call_find_value(peer, self.node)

    async def _page(self, peer: Node, cursor: bytes):
        return await self.protocol.call_find_value(peer, self.node, cursor)

    def _absorb(self, peer: Node, kind: str, reply) -> None:
        if reply is None:
            if kind == self.QUERY:
                super()._absorb(peer, kind, None)
            return
        for raw in reply.records:
            self.merge.add(raw, self.key)
        if reply.records:
            self.holders.add(peer.id)
        if kind == self.QUERY:
            super()._absorb(peer, kind, [Node(*n) for n in reply.nodes])
        if reply.more is not None:
            self._next_page(peer, reply.more)

    def _next_page(self, peer: Node, cursor: bytes) -> None:
        pages = self._paged.get(peer.id)
        if pages is None and len(self._paged) >= MAX_PAGED_HOLDERS:
            return
        if (pages or 0) >= MAX_PAGES_PER_HOLDER:
            return
        self._paged[peer.id] = (pages or 0) + 1
        self._pending[self.protocol.spawn(self._page(peer, cursor))] = (peer, self.PAGE)
