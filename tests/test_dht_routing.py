"""The routing table's changes to kademlia's: exact neighbours, quiet full buckets."""

from __future__ import annotations

import random

from kademlia.node import Node
from kademlia.routing import KBucket

from p2pnode.dht import routing as routing_module
from p2pnode.dht.routing import OfferRoutingTable, _depth


class Pings:
    """Stands in for the protocol: records which contacts the table asked to ping."""

    def __init__(self):
        self.pinged: list[bytes] = []

    def call_ping(self, node: Node) -> None:
        self.pinged.append(node.id)


def node_with(prefix_bits: str, rng: random.Random, port: int) -> Node:
    """A contact whose 160-bit id starts with ``prefix_bits``, the rest random."""
    rest = 160 - len(prefix_bits)
    value = (int(prefix_bits or "0", 2) << rest) | rng.getrandbits(rest)
    return Node(value.to_bytes(20, "big"), "127.0.0.1", port)


def test_find_neighbors_returns_the_k_closest_by_xor_distance():
    rng = random.Random(7)
    table = OfferRoutingTable(Pings(), 8, Node(rng.randbytes(20)))
    contacts = [Node(rng.randbytes(20), "127.0.0.1", 1000 + i) for i in range(300)]
    for contact in contacts:
        table.add_contact(contact)
    kept = [n for bucket in table.buckets for n in bucket.nodes.values()]
    for _ in range(20):
        target = Node(rng.randbytes(20))
        expected = sorted(kept, key=lambda n: n.long_id ^ target.long_id)[:8]
        assert [n.id for n in table.find_neighbors(target)] == [n.id for n in expected]
        excluded = expected[0]
        got = table.find_neighbors(target, exclude=excluded)
        assert excluded.id not in {n.id for n in got}
        assert [n.id for n in got] == [n.id for n in expected[1:]] + [got[-1].id]


def test_depth_agrees_with_kademlias_bit_string_prefix():
    rng = random.Random(3)
    for prefix in ("", "1", "10000", "1011001110"):
        bucket = KBucket(0, 2 ** 160, 20)
        for port in range(rng.randint(1, 6)):
            bucket.add_node(node_with(prefix, rng, port))
        assert _depth(bucket) == bucket.depth()


def test_a_full_far_bucket_pings_its_head_once_however_many_callers_knock(monkeypatch):
    rng = random.Random(11)
    pings = Pings()
    table = OfferRoutingTable(pings, 2, Node(bytes(20)))           # our id: all zero bits
    first, second = node_with("100000", rng, 1), node_with("100001", rng, 2)
    table.add_contact(first)
    table.add_contact(second)
    table.add_contact(node_with("0" * 10, rng, 3))             # splits the first bucket in two
    # the far half holds first and second (depth 5: they share exactly 10000): full, no split
    callers = [node_with("10000", rng, 10 + i) for i in range(50)]
    now = [1000.0]
    monkeypatch.setattr(routing_module.time, "monotonic", lambda: now[0])
    for caller in callers:
        assert not table.admits(caller)
        table.add_contact(caller)
        table.add_contact(caller)                               # it knocks twice
    assert pings.pinged == [first.id]                           # kademlia: 100 pings
    bucket = table.buckets[table.get_bucket_for(first)]
    assert set(bucket.nodes) == {first.id, second.id}
    assert callers[-1].id in bucket.replacement_nodes
    now[0] += routing_module.HEAD_PING_INTERVAL_S
    table.add_contact(callers[0])
    assert pings.pinged == [first.id, first.id]                 # again after the interval
    table.remove_contact(first)                                 # the head did not answer
    assert first.id not in bucket.nodes and len(bucket.nodes) == 2   # a replacement moved up


def test_a_close_caller_is_admitted_and_buckets_near_us_still_split():
    rng = random.Random(5)
    table = OfferRoutingTable(Pings(), 2, Node(bytes(20)))
    near = [node_with("0" * 20, rng, port) for port in range(6)]
    for contact in near:
        assert table.admits(contact)
        table.add_contact(contact)
    kept = {n.id for bucket in table.buckets for n in bucket.nodes.values()}
    assert len(kept) >= 4                  # the bucket with our id split instead of refusing
