"""Real nodes trading over libp2p (Noise over TCP, yamux) on loopback, and hostile peers."""

from __future__ import annotations

import asyncio

from ledger import BlockType, open_envelope, BlockBody
from p2pnode.identity import peer_id
from p2pnode.transport.address import parse_libp2p_endpoint
from simulator.swarm import audit_ledgers
from tests.nodekit import START, swarm


def run(coro):
    asyncio.run(asyncio.wait_for(coro, timeout=120))


def trades(node):
    out = []
    for _, _, _, raw in node.ledger.store.raw_blocks():
        block = open_envelope(raw, BlockBody)[0].message
        if block.type is BlockType.TRADE and block.author == node.public:
            out.append(block.payload)
    return out


def test_two_nodes_trade_and_settle_over_libp2p(tmp_path):
    async def main():
        async with swarm([[800], [-300]], tmp_path, transport="libp2p") as s:
            seller, buyer = s.nodes
            endpoint = parse_libp2p_endpoint(seller.endpoint)
            assert endpoint.peer_id == peer_id(seller.public)   # the key `p2pnode id` prints
            assert (endpoint.host, endpoint.port) == ("127.0.0.1", seller.peer_server.port)
            await s.interval(0)
            trade = trades(seller)[0]
            assert (trade.seller, trade.buyer, trade.energy_wh) == (seller.public, buyer.public, 300)
            assert trade.interval_start_s == START
            assert buyer.reports[0].bought_wh == 300 and seller.reports[0].sold_wh == 300
            # REQUEST, CONFIRM and SETTLE went over one connection, dialled once
            assert buyer.peer_server.counters["libp2p_dials"] == 1
            assert seller.peer_server.counters["libp2p_requests_served"] >= 3
            assert audit_ledgers([n.config.ledger for n in s.nodes]) == ([], 0)

    run(main())
