"""Unknown callers are checked before they are welcomed; contacts stay diverse (loopback + pure)."""

from __future__ import annotations

import asyncio
import dataclasses
import random

from kademlia.node import Node

from p2pnode.dht import protocol as protocol_module
from p2pnode.dht.admission import UNCHECKED_SOURCE
from p2pnode.dht.budget import TokenBucket
from p2pnode.dht.routing import diverse
from p2pnode.dht.server import DHTSettings, OfferDHT
from p2pnode.offers import record_keys
from simulator.hostile import UdpProbe, ping_flood, store_datagrams
from tests.dhtkit import FAST, Clock, key, run, sealed, settle


def test_token_bucket_refills_at_its_rate_up_to_its_burst():
    bucket = TokenBucket(rate=10, burst=5)
    assert bucket.take(5, 0.0) and not bucket.take(1, 0.0)
    assert bucket.take(1, 0.1) and not bucket.take(1, 0.1)
    assert bucket.available(100.0) == 5


def test_diverse_keeps_at_most_n_contacts_per_address_in_order():
    nodes = [Node(bytes([i]) * 20, ip, 1000 + i) for i, ip in
             enumerate(["10.0.0.1", "10.0.0.9", "10.0.0.9", "10.0.0.9", "10.0.0.2", "10.0.0.9"])]
    assert [n.port for n in diverse(nodes, 2)] == [1000, 1001, 1002, 1004]
    assert diverse(nodes, None) == nodes


def test_an_unknown_caller_is_handed_records_only_once_it_answers_from_its_address():
    async def main():
        clock = Clock()
        settings = dataclasses.replace(FAST, max_contacts_per_host=2)
        holder = OfferDHT(key("holder"), settings=settings, clock=clock)
        await holder.start("127.0.0.1", 0)
        offers = [sealed(key(f"seller {i}"), price=i * 250_000) for i in range(5)]
        for offer in offers:
            assert holder.storage.offer(record_keys(offer.message)[0], offer.raw) is None
        probe = await UdpProbe.open("127.0.0.5")          # never answers
        newcomer = OfferDHT(key("newcomer"), settings=FAST, clock=clock)
        try:
            await newcomer.start("127.0.0.1", 0, [holder.address])   # answers the check
            await settle(lambda: len(newcomer.storage) == 5)         # and is handed the records
            assert holder.counters()["verify_pings"] == 1
            await ping_flood(probe, [holder.address], 50, random.Random(1))
            await asyncio.sleep(0.5)
            assert holder.counters()["verify_pings"] == 2     # one check of the probe's address
            assert probe.amplification < 1.5                  # replies and that ping: no records
            router = holder.server.protocol.router
            ips = [n.ip for n in router.find_neighbors(holder.server.node, k=20)]
            assert ips == ["127.0.0.1"]                       # the probe never entered
        finally:
            probe.close()
            await newcomer.stop()
            await holder.stop()

    run(main())


def test_the_hand_over_scans_within_its_budget(monkeypatch):
    """A contact arriving when the keys-scanned budget is spent is welcomed without records."""
    monkeypatch.setattr(protocol_module, "HANDOVER_BURST_KEYS", 3)
    monkeypatch.setattr(protocol_module, "HANDOVER_KEYS_PER_S", 0.001)

    async def main():
        clock = Clock()
        holder = OfferDHT(key("holder"), settings=FAST, clock=clock)
        await holder.start("127.0.0.1", 0)
        for i in range(2):
            offer = sealed(key(f"seller {i}"), price=i * 250_000)
            holder.storage.offer(record_keys(offer.message)[0], offer.raw)
        first = OfferDHT(key("first"), settings=FAST, clock=clock)
        second = OfferDHT(key("second"), settings=FAST, clock=clock)
        try:
            await first.start("127.0.0.1", 0, [holder.address])
            await settle(lambda: len(first.storage) == 2)              # 2 keys scanned of 3
            await second.start("127.0.0.1", 0, [holder.address])
            await settle(lambda: holder.counters().get("handover_skipped") == 1)
            assert len(second.storage) == 0
        finally:
            for node in (second, first, holder):
                await node.stop()

    run(main())


def test_a_bucket_holds_at_most_two_contacts_of_one_address():
    async def main():
        clock = Clock()
        settings = DHTSettings(rpc_timeout_s=0.25, max_contacts_per_host=2)
        hub = OfferDHT(key("hub"), settings=settings, clock=clock)
        await hub.start("127.0.0.2", 0)
        crowd = [OfferDHT(key(f"crowd {i}"), settings=FAST, clock=clock) for i in range(5)]
        try:
            for node in crowd:
                await node.start("127.0.0.3", 0, [hub.address])
            await asyncio.sleep(0.2)
            known = hub.server.protocol.router.find_neighbors(hub.server.node, k=20)
            assert len(known) == 2 and {n.ip for n in known} == {"127.0.0.3"}
            assert hub.counters()["contact_host_full"] >= 3
        finally:
            for node in crowd:
                await node.stop()
            await hub.stop()

    run(main())



def test_a_store_counts_as_its_address_only_once_checked():
    """Raw sockets claiming fresh keys (as forged source addresses would) never answer the
    check ping: whatever they store is charged to the one unchecked source, whose share of a
    key is 16 records however many addresses send.  A live node's first store waits for its
    check and is charged to its own ip:port."""
    async def main():
        clock = Clock()
        holder = OfferDHT(key("holder"), settings=FAST, clock=clock)
        await holder.start("127.0.0.1", 0)
        probes = [await UdpProbe.open("127.0.0.1") for _ in range(2)]
        live = OfferDHT(key("live"), settings=FAST, clock=clock)
        await live.start("127.0.0.1", 0)                 # unknown to the holder
        rng = random.Random(3)
        try:
            for p, probe in enumerate(probes):
                records = {}
                for i in range(40):
                    offer = sealed(key(f"fresh {p} {i}"))
                    records.setdefault(record_keys(offer.message)[0], []).append(offer.raw)
                target = next(iter(records))
                await probe.send(store_datagrams([holder.address], records, rng))
            await settle(lambda: holder.counters().get("store_unchecked") == 80)
            assert holder.counters()["verify_pings"] == 2          # one per address
            assert len(holder.storage) == 16 == holder.storage.newcomers.share(
                UNCHECKED_SOURCE, target)
            router = holder.server.protocol.router   # the live node is not known yet
            assert not router.find_neighbors(holder.server.node)
            mine = sealed(key("live"))
            contact = Node(holder.node_id, *holder.address)
            accepted = await live.server.protocol.call_store(contact, target, [mine.raw])
            assert accepted == 1 and mine.raw in holder.storage.records(target)
            assert holder.storage.newcomers.share(live.address) == 1
            assert holder.counters()["store_unchecked"] == 80
        finally:
            for probe in probes:
                probe.close()
            await live.stop()
            await holder.stop()

    run(main())
