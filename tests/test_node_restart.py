"""Restarts lose no trade: a restarted buyer finishes the settlements it had pending (from its
ledger and the seller endpoint stored with the agreement), once; a restarted seller answers."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3

from ledger import (
    BlockBody, BlockType, CreditVoucher, Ledger, LedgerStore, MeterReading, cost_micro,
    open_envelope, seal,
)
from p2pnode.node import Node
from p2pnode.recovery import pending_purchases
from tests import chainkit
from simulator.swarm import audit_ledgers
from tests.dhtkit import run as strict_run
from tests.nodekit import CREDIT_MICRO, DHT, INTERVAL_S, START, TIMING, swarm

END = START + INTERVAL_S


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
    """Open interval 0 and buy: the buyer has agreed one trade, not settled it."""
    s.down = {}
    s.clock.now_s = END
    await asyncio.gather(seller.open_interval(START), buyer.open_interval(START))
    s.clock.now_s = END + TIMING.buy_delay_s
    assert await buyer.buy(START) > 0
    assert len(buyer.unsettled()) == 1
    s.clock.now_s = END + TIMING.window_s


async def restart(s, i: int, *, same_port: bool = True, delivery=None) -> Node:
    """Stop node ``i`` (if running) and start a new Node on its key, ledger and meter."""
    old = s.nodes[i]
    if i not in s.down:
        await go_down(s, i)
    port = s.down.pop(i)
    network = dataclasses.replace(old.config.network, peer_port=port if same_port else 0)
    node = Node(dataclasses.replace(old.config, network=network), old.meter, key=old.key,
                clock=s.clock, dht_settings=DHT, delivery=delivery)
    await node.start()
    s.nodes[i] = node
    await node.dht.bootstrap([s.nodes[0].dht.address if i else s.nodes[1].dht.address])
    return node


async def go_down(s, i: int) -> None:
    """Stop node ``i``, remembering its peer port (``s.down``) for :func:`restart`."""
    s.down[i] = s.nodes[i].peer_server.port
    await s.nodes[i].stop()


def test_buyer_restarted_before_settling_settles_once_with_its_delivery(tmp_path):
    async def main():
        async with swarm([[800], [-300]], tmp_path) as s:
            seller, buyer = s.nodes
            await trade_agreed(s, seller, buyer)
            [trade] = buyer.unsettled()
            measured = []

            def delivery(t):
                measured.append(t.payload.trade_id)
                return 250

            buyer = await restart(s, 1, delivery=delivery)
            [again] = buyer.unsettled()
            assert again.payload == trade.payload and again.endpoint == seller.endpoint
            assert again.agreement_raw == trade.agreement_raw
            assert buyer.counters["settlements_recovered"] == 1
            assert await buyer.settle() == 1
            assert measured == [trade.payload.trade_id] and buyer.unsettled() == []
            assert again.delivered_wh == 250
            for node in (seller, buyer):   # one co-signed pair in both ledgers
                pair = settlements(node)
                assert len(pair) == 2 and {b.author for b in pair} == {buyer.public, seller.public}
                assert all(b.payload.delivered_wh == 250 for b in pair)
            price = trade.payload.price_micro_per_kwh
            assert buyer.ledger.credit_micro == CREDIT_MICRO - cost_micro(250, price)
            assert audit_ledgers([n.config.ledger for n in s.nodes]) == ([], 0)

    run(main())


def test_pending_proposal_is_resent_after_restarts_and_never_doubled(tmp_path):
    """The seller is down when the buyer settles; the buyer restarts twice; the seller comes
    back on its port: the proposal written before the restarts is the one co-signed."""
    async def main():
        async with swarm([[800], [-300]], tmp_path) as s:
            seller, buyer = s.nodes
            buyer.delivery = lambda t: 280
            await trade_agreed(s, seller, buyer)
            await go_down(s, 0)
            assert await buyer.settle() == 0
            [proposal] = settlements(buyer)
            assert proposal.author == buyer.public and proposal.payload.delivered_wh == 280
            measured = []

            def delivery(t):   # measuring again would be a second, different proposal
                measured.append(t)
                return 100

            for _ in range(2):
                buyer = await restart(s, 1, delivery=delivery)
                assert [t.payload.trade_id for t in buyer.unsettled()] == \
                    [proposal.payload.trade_id]
                assert await buyer.settle() == 0          # the seller is still down
                assert settlements(buyer) == [proposal]
            seller = await restart(s, 0)                  # back on the same port
            assert seller.peer_server.port == s.nodes[0].config.network.peer_port
            assert await buyer.settle() == 1
            assert measured == [] and buyer.unsettled() == []
            for node in (seller, buyer):
                pair = settlements(node)
                assert len(pair) == 2 and proposal in pair
                assert all(b.payload.delivered_wh == 280 for b in pair)
            buyer = await restart(s, 1, delivery=delivery)   # settled: nothing pending any more
            assert buyer.unsettled() == [] and await buyer.settle() == 0
            assert len(settlements(buyer)) == 2 and len(settlements(seller)) == 2
            assert audit_ledgers([n.config.ledger for n in s.nodes]) == ([], 0)

    run(main())


def test_seller_back_on_another_port_is_found_through_its_next_offer(tmp_path):
    """Node 0 only routes the DHT.  The seller comes back on a new port: the old endpoint
    fails and the trade stays pending (counted) until a discovery sees the seller's new
    offer, then it settles there."""
    async def main():
        async with swarm([[0, 0], [800, 800], [-300, -300]], tmp_path) as s:
            _, seller, buyer = s.nodes
            await trade_agreed(s, seller, buyer)
            old_endpoint = seller.endpoint
            await go_down(s, 1)
            buyer = await restart(s, 2)
            assert buyer.unsettled()[0].endpoint == old_endpoint
            seller = await restart(s, 1, same_port=False)
            assert seller.endpoint != old_endpoint
            assert await buyer.settle() == 0
            assert buyer.counters["settlement_pending"] == 1 and len(buyer.unsettled()) == 1
            await s.interval(1)   # the seller offers again, the buyer discovers and buys
            assert buyer.counters["settlement_endpoint_moved"] == 1
            assert buyer.unsettled() == []
            assert len(settlements(buyer, buyer.public)) == 2        # the two trades, once each
            assert len(settlements(seller, seller.public)) == 2
            with LedgerStore(buyer.config.ledger) as store:
                tids = {b.payload.trade_id for b in settlements(buyer, buyer.public)}
                assert {store.endpoint(t) for t in tids} == {seller.endpoint}
            assert audit_ledgers([n.config.ledger for n in s.nodes]) == ([], 0)

    run(main())


def test_seller_restarted_between_trade_and_settlement_answers_from_its_ledger(tmp_path):
    """Nothing to fix on the seller's side: it answers a SETTLE from its reloaded ledger, even
    without the buyer's agreement (the SETTLE carries it)."""
    async def main():
        async with swarm([[800], [-300]], tmp_path) as s:
            seller, buyer = s.nodes
            await trade_agreed(s, seller, buyer)
            credit = seller.ledger.credit_micro
            await go_down(s, 0)
            db = sqlite3.connect(seller.config.ledger)   # as if the CONFIRM had been lost:
            assert db.execute("DELETE FROM blocks WHERE author=?",   # the SETTLE carries it
                              (buyer.public,)).rowcount == 1
            db.commit()
            db.close()
            seller = await restart(s, 0)
            assert seller.unsettled() == []               # a seller has nothing to retry
            assert await buyer.settle() == 1
            assert seller.counters["settlements_agreed"] == 1
            [trade] = buyer.bought.values()
            price = trade.payload.price_micro_per_kwh
            assert seller.ledger.credit_micro == credit + cost_micro(300, price)
            assert len(settlements(seller)) == 2 and len(settlements(buyer)) == 2
            assert audit_ledgers([n.config.ledger for n in s.nodes]) == ([], 0)

    run(main())


def _drop_endpoints_table(path) -> None:
    """Make ``path`` a ledger file as written before the endpoint table existed."""
    db = sqlite3.connect(path)
    db.execute("DROP TABLE peer_endpoints")
    db.commit()
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name='peer_endpoints'"
                      ).fetchone() == (0,)
    db.close()


def test_ledger_file_from_before_the_endpoint_table_opens_and_works(tmp_path):
    """An old ledger opens (the table is added); a trade agreed before the change has no
    stored endpoint: it is settled once the seller is discovered again, else stays pending."""
    async def main():
        async with swarm([[0, 0], [800, 800], [-300, -300]], tmp_path) as s:
            _, seller, buyer = s.nodes
            await trade_agreed(s, seller, buyer)
            [trade] = buyer.unsettled()
            await buyer.stop()
            _drop_endpoints_table(buyer.config.ledger)
            with LedgerStore(buyer.config.ledger) as store:
                blocks = store.count()
                assert store.endpoint(trade.payload.trade_id) is None
                store.set_endpoint(b"x" * 16, seller.public, "127.0.0.1:1")
                assert store.endpoint(b"x" * 16) == "127.0.0.1:1"
            buyer = await restart(s, 2)
            assert buyer.ledger.store.count() == blocks
            [pending] = buyer.unsettled()
            assert pending.payload == trade.payload and pending.endpoint == ""
            assert await buyer.settle() == 0
            assert buyer.counters["settlement_no_endpoint"] == 1
            [proposal] = settlements(buyer)                   # measured and written, not sent
            await s.interval(1)                               # the seller is discovered again
            assert buyer.unsettled() == []
            mine = settlements(buyer, buyer.public)
            assert len(mine) == 2 and proposal in mine
            assert audit_ledgers([n.config.ledger for n in s.nodes]) == ([], 0)

    run(main())


def test_pending_purchases_are_the_bought_trades_the_seller_has_not_co_settled(tmp_path):
    """Pure: two Ledgers, three trades -- one settled and co-signed, one with our proposal
    only, one not settled -- and a trade the buyer sold to the seller, pending for the seller
    only (agreed without an endpoint, as before endpoints were stored)."""
    seller_key, buyer_key = chainkit.SELLER, chainkit.BUYER
    seller = Ledger(LedgerStore(tmp_path / "s.db"), seller_key)
    buyer = Ledger(LedgerStore(tmp_path / "b.db"), buyer_key)
    for ledger, n in ((seller, 1), (buyer, 2)):
        ledger.deposit(seal(CreditVoucher(chainkit.BANK.public, ledger.key.public,
                                          bytes([n]) * 16, 10_000_000), chainkit.BANK), 1)
    for ledger in (seller, buyer):
        reading = seal(MeterReading(ledger.key.public, chainkit.INTERVAL, 900, 5000, 0),
                       ledger.key)
        ledger.mint(reading, 5000, 2)
    trades = [chainkit.trade_payload(n, energy=500) for n in (1, 2, 3)]
    for trade in trades:
        proposal = seller.propose_trade(trade, 3)
        endpoint, commits = f"127.0.0.1:{trade.trade_id[-1]}", buyer.store.commits
        seller.accept_agreement(buyer.agree(proposal, 4, endpoint=endpoint))
        assert buyer.store.commits == commits + 1    # the agreement and its endpoint: one commit
    sold = chainkit.TradePayload(chainkit.tid(9), buyer_key.public, seller_key.public,
                                 chainkit.INTERVAL, 100, chainkit.PRICE, b"offer")
    buyer.accept_agreement(seller.agree(buyer.propose_trade(sold, 5), 6))
    settled, proposed_only = (buyer.propose_settlement(chainkit.settlement_payload(
        n, agreed=500, delivered=400), 7) for n in (1, 2))
    buyer.accept_agreement(seller.agree(settled, 8))
    pending = pending_purchases(buyer)
    assert [p.payload for p in pending] == trades[1:]
    assert [p.endpoint for p in pending] == ["127.0.0.1:2", "127.0.0.1:3"]
    assert pending[0].settlement_seq == proposed_only.message.seq
    assert pending[1].settlement_seq == 0
    agreement = buyer.own_block(buyer.state.trades[trades[1].trade_id].seq)
    assert pending[0].agreement_raw == agreement.raw
    [bought_back] = pending_purchases(seller)         # trades 1-3 it sold: never pending
    assert bought_back.payload == sold and bought_back.endpoint is None   # agreed without one
    seller.store.close()
    buyer.store.close()
