"""Real nodes on loopback UDP (OS-chosen ports) in one process: publish, discover, attack, fail.

Every test runs under :func:`tests.dhtkit.run`, which fails on any exception reported to the
event loop (a handler that raised, a failed background task) and on any task left running.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import random
import socket

import msgpack
import pytest

from kademlia.node import Node

from p2pnode.dht import FaultPlan
from p2pnode.dht.storage import PAGE_BUDGET_BYTES, Page
from p2pnode.identity import node_id
from p2pnode.offers import PRICE_BAND_MICRO_PER_KWH, OfferRejected, query_keys, record_keys
from tests.dhtkit import (
    FAST, FEEDER, INTERVAL, NOW, Clock, forged, key, key_near, run, sealed, settle, swarm,
)


def offer_of(node, n=1, **fields):
    return sealed(node.key, n, endpoint=f"127.0.0.1:{node.port}", **fields)


def hashes(offers):
    return {o.hash for o in offers}


def holders_of(nodes, key_):
    return [node for node in nodes if node.storage.records(key_)]


def test_thirty_nodes_find_every_offer_of_a_key_holding_more_than_a_datagram():
    async def main():
        async with swarm(30) as nodes:
            offers = [offer_of(node, n, price=120_000 + i) for i, node in enumerate(nodes)
                      for n in range(2)]
            assert sum(len(o.raw) for o in offers) > 2 * PAGE_BUDGET_BYTES
            replicas = await asyncio.gather(*(nodes[i // 2].publish(o)
                                              for i, o in enumerate(offers)))
            assert min(replicas) >= 10
            key_ = record_keys(offers[0].message)[0]
            for buyer in nodes[::6]:
                found = await buyer.find_offers([key_])
                assert hashes(found.offers) == hashes(offers)
                assert found.keys_timed_out == 0 and found.dropped == {}
                assert found.responses >= 10
    run(main())


def test_parallel_discovery_merges_bands_and_ignores_other_feeders_and_intervals():
    async def main():
        async with swarm(20) as nodes:
            width = PRICE_BAND_MICRO_PER_KWH
            prices = [band * width + 4 * width // 5 for band in range(7)]   # one per band
            wanted = [offer_of(nodes[i], price=p) for i, p in enumerate(prices)]
            others = [offer_of(nodes[10], 1, feeder="F2"),
                      offer_of(nodes[11], 1, interval=INTERVAL + 900)]
            for i, offer in enumerate(wanted + others):
                await nodes[i if i < 7 else i + 3].publish(offer)
            keys = query_keys(FEEDER, INTERVAL, 5 * width + width // 10)
            found = await nodes[19].find_offers(keys)
            assert found.keys == len(keys) == 6
            assert hashes(found.offers) == hashes(wanted[:6])  # the band of the maximum is whole
            assert [o.message.price_micro_per_kwh for o in found.offers] == sorted(prices[:6])
            with pytest.raises(ValueError):
                await nodes[0].find_offers([b"short"])
    run(main())


def test_the_newest_seq_wins_and_a_withdrawal_hides_the_offer():
    async def main():
        async with swarm(20) as nodes:
            seller, buyer = nodes[3], nodes[17]
            key_ = record_keys(offer_of(seller).message)[0]
            await seller.publish(offer_of(seller, seq=1, energy_wh=1000))
            await seller.publish(offer_of(seller, seq=2, energy_wh=400))
            found = await buyer.find_offers([key_])
            assert [(o.message.seq, o.message.energy_wh) for o in found.offers] == [(2, 400)]
            with pytest.raises(OfferRejected, match="stale_seq"):
                await seller.publish(offer_of(seller, seq=1, energy_wh=1000))
            with pytest.raises(OfferRejected, match="band_changed"):
                await seller.publish(offer_of(seller, seq=3, price=600_000))
            with pytest.raises(OfferRejected, match="not_ours"):
                await seller.publish(offer_of(buyer, 9))
            tombstone = await seller.withdraw(offer_of(seller).message.offer_id)
            assert (tombstone.message.seq, tombstone.message.energy_wh) == (3, 0)
            assert (await buyer.find_offers([key_])).offers == ()
            assert all(node.storage.records(key_) in ((), (tombstone.raw,)) for node in nodes)
    run(main())


def test_forged_expired_oversize_and_replayed_records_are_refused_and_counted():
    async def main():
        async with swarm(20) as nodes:
            victim, attacker, buyer = nodes[2], nodes[5], nodes[18]
            first = offer_of(victim, seq=1)
            await victim.publish(first)
            await victim.publish(latest := offer_of(victim, seq=2, energy_wh=700))
            key_ = record_keys(first.message)[0]
            holders = [n for n in holders_of(nodes, key_) if n is not attacker]
            bad = [forged(victim.key, attacker.key, seq=9, energy_wh=0),
                   sealed(attacker.key, 2, expires=NOW).raw,
                   b"\x92" + b"\x00" * 1200,
                   first.raw,                       # replay of an older version
                   sealed(attacker.key, 3, price=900_000).raw]   # not this key's band
            for holder in holders:
                contact = Node(holder.node_id, "127.0.0.1", holder.port)
                assert await attacker.server.protocol.call_store(contact, key_, bad) == 0
            # the attacker's own record under the victim's offer id is a different offer
            mine = sealed(attacker.key, 1, endpoint="127.0.0.1:1")
            await attacker.publish(mine)
            reasons = ("bad_signature", "expired", "oversize", "stale_seq", "wrong_key")
            dropped = sum((h.storage.dropped for h in holders), start=collections.Counter())
            assert {r: dropped[r] for r in reasons} == {r: len(holders) for r in reasons}
            assert holders[0].counters()["stored_stale_seq"] == 1
            found = await buyer.find_offers([key_])
            assert hashes(found.offers) == {latest.hash, mine.hash}
    run(main())


def test_junk_from_a_lying_holder_is_dropped_and_counted_by_reason():
    async def main():
        async with swarm(3) as (seller, liar, buyer):
            genuine = offer_of(seller)
            await seller.publish(genuine)
            key_ = record_keys(genuine.message)[0]
            junk = (forged(seller.key, liar.key, 2), sealed(liar.key, 3, expires=NOW).raw,
                    sealed(liar.key, 4, price=900_000).raw, b"junk", genuine.raw)
            liar.storage.page = lambda *args: Page(junk, None)
            found = await buyer.find_offers([key_])
            assert hashes(found.offers) == {genuine.hash}
            assert found.dropped == {"bad_signature": 1, "expired": 1, "wrong_key": 1,
                                     "malformed": 1}
            assert buyer.counters()["found_bad_signature"] == 1
    run(main())


def test_expired_offers_vanish_everywhere_and_are_not_republished():
    async def main():
        clock = Clock()
        async with swarm(15, clock=clock) as nodes:
            offer = offer_of(nodes[0], expires=NOW + 60)
            await nodes[0].publish(offer)
            key_ = record_keys(offer.message)[0]
            assert len(holders_of(nodes, key_)) >= 10
            assert (await nodes[9].find_offers([key_])).offers != ()
            clock.now = NOW + 60
            assert (await nodes[9].find_offers([key_])).offers == ()
            assert holders_of(nodes, key_) == []
            await nodes[0].republish()
            assert holders_of(nodes, key_) == [] and nodes[0].own_offers() == []
    run(main())


def test_only_the_seller_republishes():
    async def main():
        async with swarm(15) as nodes:
            seller = nodes[4]
            offer = offer_of(seller)
            await seller.publish(offer)
            key_ = record_keys(offer.message)[0]
            holders = holders_of(nodes, key_)
            for holder in holders:  # a holder's refresh never stores what it holds for others
                holder.storage.iter_older_than = None
                await holder.server._refresh_table()
            for holder in holders:  # every copy is lost...
                holder.storage._keys.clear()
                holder.storage._per_seller.clear()
            await seller.republish()  # ...and the seller puts it back
            assert len(holders_of(nodes, key_)) >= 10
    run(main())


def test_a_joining_node_receives_the_records_it_should_hold():
    async def main():
        async with swarm(40) as nodes:  # more than k: not everybody holds every key
            offers = [offer_of(nodes[i], i) for i in range(3)]
            for i, offer in enumerate(offers):
                await nodes[i].publish(offer)
            key_ = record_keys(offers[0].message)[0]
            assert 10 <= len(holders_of(nodes, key_)) < 40
            newcomer_key = key_near(key_, 10, random.Random(5))
            async with swarm(1, keys=[newcomer_key]) as (newcomer,):
                await newcomer.bootstrap([nodes[7].address])
                await settle(lambda: len(newcomer.storage.records(key_)) == 3)
                assert set(newcomer.storage.records(key_)) == {o.raw for o in offers}
    run(main())


def test_discovery_survives_twenty_percent_of_nodes_dying_without_warning():
    async def main():
        async with swarm(30) as nodes:
            offers = [offer_of(node, price=100_000 + i) for i, node in enumerate(nodes[:15])]
            await asyncio.gather(*(n.publish(o) for n, o in zip(nodes, offers)))
            for node in random.Random(3).sample(nodes, 6):
                await node.stop()
            alive = [n for n in nodes if not n.server.tasks.closed]
            key_ = record_keys(offers[0].message)[0]
            for buyer in alive[:4]:
                found = await buyer.find_offers([key_])
                assert hashes(found.offers) == hashes(offers)
    run(main())


def test_recall_with_ten_percent_datagram_loss():
    async def main():
        async with swarm(30) as nodes:
            for i, node in enumerate(nodes):
                node.set_faults(FaultPlan(loss=0.1, seed=11 + i))
            offers = [offer_of(node, price=60_000 + 9_000 * i) for i, node in enumerate(nodes[:20])]
            await asyncio.gather(*(n.publish(o) for n, o in zip(nodes, offers)))
            keys = query_keys(FEEDER, INTERVAL, 300_000)
            found = 0
            for buyer in nodes[20:25]:
                found += len(hashes((await buyer.find_offers(keys)).offers) & hashes(offers))
            assert found / (5 * len(offers)) >= 0.95
            assert sum(n.server.protocol.transport.lost for n in nodes) > 100
    run(main())


def test_duplicated_and_delayed_datagrams_change_nothing():
    async def main():
        plan = FaultPlan(duplicate=0.3, delay_min_s=0.0, delay_max_s=0.02, seed=2)
        async with swarm(15, faults=plan) as nodes:
            offers = [offer_of(node, price=100_000 + i) for i, node in enumerate(nodes[:5])]
            await asyncio.gather(*(n.publish(o) for n, o in zip(nodes, offers)))
            found = await nodes[12].find_offers([record_keys(offers[0].message)[0]])
            assert hashes(found.offers) == hashes(offers)
            assert sum(n.counters().get("unexpected_reply", 0) for n in nodes) > 0
    run(main())


def test_garbage_datagrams_are_counted_and_the_node_keeps_serving():
    async def main():
        async with swarm(2) as (node, peer):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            junk = [b"", b"\x00", b"\x05" + b"m" * 20 + b"\x01", b"\x00" + b"m" * 20 + b"\xc1",
                    b"\x00" + b"m" * 20 + msgpack.packb(["ping", [b"short"]]),
                    b"\x00" + b"m" * 20 + msgpack.packb(["store", [node.key.public, b"k", []]]),
                    b"\x00" + b"m" * 20 + msgpack.packb(["find_node", [peer.key.public, 5]]),
                    b"\x00" + b"m" * 20 + msgpack.packb(["ping", [node.key.public]]),  # our key
                    b"\x01" + b"m" * 20 + msgpack.packb("unsolicited")]
            for data in junk:
                sock.sendto(data, node.address)
            await settle(lambda: node.counters().get("bad_datagram", 0) >= 7)
            assert node.counters()["unexpected_reply"] == 1
            sock.close()
            contact = await peer.server.protocol.ping_address(node.address)
            assert contact is not None and contact.id == node.node_id
    run(main())


def test_node_ids_are_bound_to_public_keys():
    async def main():
        async with swarm(5) as nodes:
            for node in nodes:
                assert node.node_id == node_id(node.key.public)
                contacts = node.server.protocol.router.find_neighbors(Node(node.node_id))
                by_id = {n.node_id: n for n in nodes}
                for contact in contacts:
                    assert by_id[contact.id].port == contact.port
            a, b = nodes[0], nodes[1]
            impostor = Node(bytes(20), "127.0.0.1", b.port)  # b's address, an id b does not own
            assert await a.server.protocol._ping_contact(impostor) is False
            assert a.counters()["id_mismatch"] == 1
    run(main())


def test_stop_cancels_every_task_and_is_idempotent():
    async def main():
        async with swarm(4) as nodes:
            await nodes[0].publish(offer_of(nodes[0]))
            assert len(nodes[0].server.tasks) >= 2  # refresh and republish loops
            await nodes[0].stop()
            assert len(nodes[0].server.tasks) == 0 and nodes[0].server.tasks.closed
            await nodes[0].stop()
            assert nodes[0].server.protocol.call_ping(Node(bytes(20), "127.0.0.1", 1)).done()
    run(main())


def test_a_port_in_use_is_a_clear_error():
    async def main():
        from p2pnode.dht import DHTError, OfferDHT
        async with swarm(1) as (node,):
            other = OfferDHT(key("other"))
            with pytest.raises(DHTError, match="cannot bind"):
                await other.start("127.0.0.1", node.port)
            await other.stop()
            assert node.own_offer(b"x" * 16) is None
    run(main())


def test_settings_are_validated():
    from p2pnode.dht import DHTSettings
    with pytest.raises(ValueError, match="ksize"):
        DHTSettings(ksize=0)
    with pytest.raises(ValueError, match="rpc_timeout_s"):
        DHTSettings(rpc_timeout_s=0)
    with pytest.raises(ValueError, match="receive_buffer_bytes"):
        DHTSettings(receive_buffer_bytes=1024)
    assert dataclasses.replace(DHTSettings(), alpha=5).alpha == 5


def test_the_socket_gets_the_receive_buffer_asked_for():
    """Replies come in bursts; a small kernel buffer loses them while the loop is busy."""
    with open("/proc/sys/net/core/rmem_max") as f:
        kernel_cap = int(f.read())
    asked = 1 << 19
    settings = dataclasses.replace(FAST, receive_buffer_bytes=asked)

    async def main():
        async with swarm(1, settings=settings) as (node,):
            sock = node.server.transport.get_extra_info("socket")
            # Linux reports twice what it grants (bookkeeping), capped by rmem_max
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= min(asked, kernel_cap)
    run(main())
