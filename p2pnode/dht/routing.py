"""The DHT's routing table: kademlia's, with exact neighbours, quiet full buckets and diversity.

See :class:`OfferRoutingTable`; :func:`diverse` keeps at most a few contacts of one IP address
in a list (S/Kademlia's defence against node ids ground next to a target, see
:mod:`p2pnode.dht.protocol`).  No sockets here: the protocol is passed in and only asked to
``call_ping`` a bucket's head.
"""

from __future__ import annotations

import collections
import heapq
import time

from kademlia.node import Node
from kademlia.routing import RoutingTable

__all__ = ["HEAD_PING_INTERVAL_S", "OfferRoutingTable", "diverse"]

HEAD_PING_INTERVAL_S = 30.0   # a full bucket's head is pinged at most this often
MAX_PING_MEMORY = 1024


class OfferRoutingTable(RoutingTable):
    """kademlia's routing table with an exact, cheaper ``find_neighbors`` and quiet full buckets.

    * ``find_neighbors``: the package walks the buckets outward from the target's with a
      generator and stops at the first k contacts it meets, then sorts those; every RPC we answer
      asks for neighbours, so that walk dominated a swarm's CPU profile.  Here all contacts (at
      most 160 buckets of k) are ranked by XOR distance in one pass: the k truly closest.
    * ``add_contact`` for a full bucket that may not split: the package pings the bucket's head
      every time an unknown caller in its range talks to us.  In a swarm of a thousand nodes most
      callers fall in such buckets, so nearly every request we answered cost a ping (and its
      answer): a traffic amplifier under load.  Here the caller waits in the bucket's replacement
      cache as in the paper (section 4.1), and the head is pinged at most once per
      :data:`HEAD_PING_INTERVAL_S` -- if it does not answer, the protocol removes it and the
      newest replacement takes its place.
    """

    def __init__(self, protocol, ksize: int, node: Node, max_per_host: int | None = None):
        super().__init__(protocol, ksize, node)
        self.max_per_host = max_per_host
        self._head_pinged: dict[bytes, float] = {}
        self._contacts: list[Node] | None = None   # every bucket's contacts, rebuilt on change

    def flush(self) -> None:
        super().flush()
        self._contacts = None

    def split_bucket(self, index: int) -> None:
        super().split_bucket(index)
        self._contacts = None

    def remove_contact(self, node: Node) -> None:
        super().remove_contact(node)
        self._contacts = None

    def find_neighbors(self, node, k=None, exclude=None):
        k = k or self.ksize
        if self._contacts is None:
            self._contacts = [n for bucket in self.buckets for n in bucket.nodes.values()]
        target, own = node.long_id, node.id
        # the k closest once the target itself and ``exclude`` (at most a few contacts: the
        # caller's address) are left out; ask for more only when those were among them
        want = k + 1 + (exclude is not None)
        while True:
            closest = heapq.nsmallest(want, self._contacts, key=lambda n: n.long_id ^ target)
            kept = diverse([n for n in closest
                            if n.id != own and (exclude is None or not n.same_home_as(exclude))],
                           self.max_per_host)
            if len(kept) >= k or len(closest) < want:
                return kept[:k]
            want *= 2

    def admits(self, node: Node) -> bool:
        """True when ``add_contact(node)`` puts it in a bucket, not only in a replacement cache."""
        bucket = self.buckets[self.get_bucket_for(node)]
        return (node.id in bucket.nodes or len(bucket) < self.ksize
                or self._may_split(bucket))

    def _may_split(self, bucket) -> bool:
        # Kademlia paper, section 4.2: split a full bucket when its range holds our own id, or
        # (relaxed routing) when its depth is not a multiple of 5
        return bucket.has_in_range(self.node) or _depth(bucket) % 5 != 0

    def add_contact(self, node: Node) -> None:
        index = self.get_bucket_for(node)
        bucket = self.buckets[index]
        if self.max_per_host is not None and node.id not in bucket.nodes and sum(
                1 for n in bucket.nodes.values() if n.ip == node.ip) >= self.max_per_host:
            self.protocol.counters["contact_host_full"] += 1
            return
        if bucket.add_node(node):           # room, or already there (moved to the tail)
            self._contacts = None
            return
        if self._may_split(bucket):
            self.split_bucket(index)
            self.add_contact(node)
            return
        # add_node left ``node`` in the bucket's replacement cache; check the head is alive
        head, now = bucket.head(), time.monotonic()
        if now - self._head_pinged.get(head.id, -HEAD_PING_INTERVAL_S) >= HEAD_PING_INTERVAL_S:
            if len(self._head_pinged) > MAX_PING_MEMORY:
                self._head_pinged = {nid: at for nid, at in self._head_pinged.items()
                                     if now - at < HEAD_PING_INTERVAL_S}
            self._head_pinged[head.id] = now
            self.protocol.call_ping(head)


def diverse(nodes, max_per_host: int | None) -> list:
    """``nodes`` in order, keeping at most ``max_per_host`` of each IP address (None: all)."""
    if max_per_host is None:
        return list(nodes)
    seen: collections.Counter[str] = collections.Counter()
    kept = []
    for n in nodes:
        if seen[n.ip] < max_per_host:
            seen[n.ip] += 1
            kept.append(n)
    return kept


def _depth(bucket) -> int:
    """Length of the id prefix the bucket's contacts share (bits of a 160-bit id)."""
    ids = [n.long_id for n in bucket.nodes.values()]
    if not ids:
        return 160
    spread = 0
    for other in ids[1:]:
        spread |= ids[0] ^ other
    return 160 - spread.bit_length()
