"""Restarts lose no trade: a restarted seller delivers the trades it sold (rebuilt from its
ledger, with the buyer's endpoint stored with the proposal), once; a DELIVERY written before a
restart is the one resent, never a second one.  Over HTTP and over libp2p (nodes restarted on
their port in the same process: the stopped host's listener must be gone)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from ledger import BlockBody, BlockType, cost_micro, open_envelope
from p2pnode.node import Node
from p2pnode.recovery import undelivered_sales
from p2pnode.trading.schedule import step_times
from simulator.swarm import audit_ledgers
from tests.dhtkit import run as strict_run
from tests.nodekit import CREDIT_MICRO, DHT, START, PerfectForesight, swarm


def run(coro):
    return strict_run(coro, timeout_s=240)


def settlements(node, author=None):
    out = []
    for _, _, _, raw in node.ledger.store.raw_blocks():
        body = open_envelope(raw, BlockBody)[0].message
        if body.type is BlockType.SETTLEMENT and (author is None or body.author == author):
            out.append(body)
    return out


async def trade_agreed(s, seller, buyer) -> None:
    """Open interval 0 and buy: the seller holds the buyer's agreement, nothing delivered."""
    s.down = {}
    at = step_times(seller.config, START)
    s.clock.now_s = at["open"]
    await asyncio.gather(seller.open_interval(START), buyer.open_interval(START))
    s.clock.now_s = at["buy"]
    assert await buyer.buy(START) > 0
    assert len(buyer.unsettled()) == 1 and len(seller._undelivered) == 1
    s.clock.now_s = at["settle"]


async def restart(s, i: int) -> Node:
    """Stop node ``i`` (if running) and start a new Node on its key, ledger, meter and port."""
    old = s.nodes[i]
    if i not in s.down:
        await go_down(s, i)
    network = dataclasses.replace(old.config.network, peer_port=s.down.pop(i))
    node = Node(dataclasses.replace(old.config, network=network), old.meter, key=old.key,
                clock=s.clock, dht_settings=DHT, forecaster=PerfectForesight(old.meter))
    await node.start()
    s.nodes[i] = node
    await node.dht.bootstrap([s.nodes[1 - i].dht.address])
    return node


async def go_down(s, i: int) -> None:
    """Stop node ``i``, remembering its peer port (``s.down``) for :func:`restart`."""
    s.down[i] = s.nodes[i].peer_server.port
    await s.nodes[i].stop()


@pytest.mark.parametrize("transport", ["http", "libp2p"])
def test_seller_restarted_before_delivering_delivers_once_from_its_ledger(tmp_path, transport):
    async def main():
        async with swarm([[800], [-300]], tmp_path, transport=transport) as s:
            seller, buyer = s.nodes
            await trade_agreed(s, seller, buyer)
            [trade] = buyer.unsettled()
            seller = await restart(s, 0)
            assert seller.counters["deliveries_recovered"] == 1
            assert seller._undelivered == {trade.payload.trade_id}
            assert await seller.settle() == 1
            assert await seller.settle() == 0               # nothing left: nothing twice
            for node in (seller, buyer):   # one co-signed pair in both ledgers
                pair = settlements(node)
                assert len(pair) == 2 and {b.author for b in pair} == {buyer.public, seller.public}
                assert all(b.payload.delivered_wh == 300 for b in pair)
            price = trade.payload.price_micro_per_kwh
            assert buyer.ledger.credit_micro == CREDIT_MICRO - cost_micro(300, price)
            assert seller.ledger.credit_micro == CREDIT_MICRO + cost_micro(300, price)
            assert audit_ledgers([n.config.ledger for n in s.nodes]) == ([], 0)

    run(main())


@pytest.mark.parametrize("transport", ["http", "libp2p"])
def test_pending_delivery_is_resent_after_restarts_and_never_doubled(tmp_path, transport):
    """The buyer is down when the seller delivers; the seller restarts twice; the buyer comes
    back on its port: the DELIVERY written before the restarts is the one co-signed."""
    async def main():
        async with swarm([[800], [-300]], tmp_path, transport=transport) as s:
            seller, buyer = s.nodes
            await trade_agreed(s, seller, buyer)
            await go_down(s, 1)
            assert await seller.settle() == 0
            [proposal] = settlements(seller)
            assert proposal.author == seller.public and proposal.payload.delivered_wh == 300
            for _ in range(2):
                seller = await restart(s, 0)
                assert seller.counters["deliveries_recovered"] == 1
            buyer = await restart(s, 1)
            assert await seller.settle() == 1
            pair = settlements(seller)
            assert len(pair) == 2 and proposal in pair   # the same proposal, agreed
            assert len(settlements(buyer)) == 2
            assert undelivered_sales(seller.ledger) == set()
            assert audit_ledgers([n.config.ledger for n in s.nodes]) == ([], 0)

    run(main())
