"""The trade path between real nodes: every signature checked exactly once, nothing stored twice.

These tests fail if a check is dropped (a forged agreement, delivery proposal, proof of
measurement or delivery agreement gets through), if a check is done twice again (the count per trade), if a replayed
message is acted on twice, or if a step's writes stop being one commit.
"""

from __future__ import annotations

import collections
import dataclasses
import time

import msgpack
import pytest

import ledger.keys
from ledger import (
    BlockBody, BlockRejected, BlockType, DeliveryPayload, Ledger, LedgerStore, MeterReading,
    Sealed, decode_envelope, open_envelope, seal,
)
from p2pnode.config import Constraints
from p2pnode.negotiation import Kind, PeerReply, PeerRequest, Status, check_reply
from p2pnode.peer import PeerClient
from tests.chainkit import BANK, BUYER, INTERVAL, SELLER, deposit_payload, trade_payload
from p2pnode.trading.schedule import step_times
from tests.dhtkit import run as strict_run
from tests.nodekit import START, swarm

TYPE_NAMES = {BlockBody.TYPE: "block", PeerRequest.TYPE: "request", PeerReply.TYPE: "reply"}


def run(coro):
    return strict_run(coro, timeout_s=120)


@pytest.fixture
def checks(monkeypatch):
    """Signature checks by kind of signed message (block, request, reply, other)."""
    counted: collections.Counter[str] = collections.Counter()
    real = ledger.keys.is_valid_signature

    def counting(public: bytes, signature: bytes, data: bytes) -> bool:
        counted[TYPE_NAMES.get(msgpack.unpackb(data)["t"], "other")] += 1
        return real(public, signature, data)

    monkeypatch.setattr(ledger.keys, "is_valid_signature", counting)
    return counted


def forged(raw: bytes) -> bytes:
    """``raw`` with one bit of its signature flipped (the envelope ends with sig, then "t": 1)."""
    out = bytearray(raw)
    out[-10] ^= 1
    return bytes(out)


def trade_ids(node, kind: BlockType) -> list[bytes]:
    """Trade ids of every block of ``kind`` in ``node``'s database (both halves)."""
    out = []
    for _, _, _, raw in node.ledger.store.raw_blocks():
        body = decode_envelope(raw, BlockBody)[0].message
        if body.type is kind:
            out.append(body.payload.trade_id)
    return out


def test_a_trade_costs_eleven_signature_checks_and_two_commits_a_side(tmp_path, checks):
    """Three trades and one settle: 11 checks per trade (3 requests, 3 replies, 5 blocks --
    the seller's REQUEST and CONFIRM and the buyer's DELIVER, their three replies, and the
    trade proposal, its agreement, the DELIVERY proposal, the MINT block that proves it and the
    DELIVERY agreement, each once) and, once for all three, the buyer's DEPOSIT block (its
    credit, p2pnode/trading/credit.py); the seller commits once per step (2 per trade) plus twice
    per settle, the buyer once per agreement and once per delivery."""
    trades = 3

    async def main():
        async with swarm([[900], [-300]], tmp_path,
                         constraints={1: Constraints(max_trade_wh=100)}) as s:
            seller, buyer = s.nodes
            at = step_times(seller.config, START)
            s.clock.now_s = at["open"]
            await seller.open_interval(START)
            await buyer.open_interval(START)
            offer = seller.own_offers()[0]
            s.clock.now_s += 1
            commits = (seller.ledger.store.commits, buyer.ledger.store.commits)
            checks.clear()
            state = buyer._buying[START]
            for _ in range(trades):
                assert await buyer._negotiate(offer, state, time.perf_counter()) == 100
            s.clock.now_s = at["settle"]
            assert await seller.settle(START) == trades
            counted = {kind: checks[kind] for kind in ("request", "reply", "block")}
            # + the buyer's DEPOSIT block it shows as credit: checked once, then remembered
            assert counted == {"request": 3 * trades, "reply": 3 * trades, "block": 5 * trades + 1}
            assert seller.ledger.store.commits - commits[0] == 2 * trades + 2
            assert buyer.ledger.store.commits - commits[1] == 2 * trades
            for node in (seller, buyer):   # both halves of every trade and settlement, once
                assert collections.Counter(trade_ids(node, BlockType.TRADE)) == {
                    tid: 2 for tid in buyer.bought}
                assert collections.Counter(trade_ids(node, BlockType.SETTLEMENT)) == {
                    tid: 2 for tid in buyer.bought}

    run(main())


class Hand:
    """One side of a negotiation, by hand: its requests can carry forged blocks."""

    def __init__(self, node, peer, client: PeerClient):
        self.node, self.peer, self.client = node, peer, client

    async def send(self, kind: Kind, trade_id: bytes, offer, blocks: tuple[bytes, ...] = (),
                   raw: bytes | None = None):
        """(the peer's reply, the request's bytes); ``raw`` sends those bytes again."""
        if raw is None:
            raw = self.node._request(kind, self.peer.public, trade_id, offer.offer_id, START,
                                     300, offer.price_micro_per_kwh, blocks).raw
        answer = await self.client.send(self.peer.endpoint, raw, 2.0)
        assert answer is not None, "the peer dropped the request"
        reply = check_reply(answer, decode_envelope(raw, PeerRequest)[0].message)
        assert not isinstance(reply, str), reply
        return reply.message, raw


def test_forged_blocks_are_refused_and_replays_are_answered_not_stored(tmp_path, checks):
    async def main():
        async with swarm([[800], [-300]], tmp_path) as s:
            seller, buyer = s.nodes
            s.clock.now_s = step_times(seller.config, START)["open"]
            await seller.open_interval(START)
            offer = seller.own_offers()[0]
            client = PeerClient()
            await client.start()
            try:
                await exchange(s, Hand(buyer, seller, client), Hand(seller, buyer, client),
                               offer, checks)
            finally:
                await client.stop()

    run(main())


async def exchange(s, buying: Hand, selling: Hand, offer, checks) -> None:
    buyer, seller = buying.node, selling.node
    trade_id = b"T" * 16
    reply, _ = await buying.send(Kind.REQUEST, trade_id, offer, buyer.credit_evidence())
    assert reply.status is Status.ACCEPTED
    proposal = open_envelope(reply.blocks[0], BlockBody)[0]
    agreement = buyer.ledger.agree(proposal, int(seller.clock() * 1000))
    stored = seller.ledger.store.count()

    # a forged agreement: refused, nothing stored
    reply, _ = await buying.send(Kind.CONFIRM, trade_id, offer, (forged(agreement.raw),))
    assert (reply.status, reply.reason) == (Status.DENIED, "bad_agreement")
    assert seller.ledger.store.count() == stored
    reply, _ = await buying.send(Kind.CONFIRM, trade_id, offer, (agreement.raw,))
    assert reply.status is Status.DONE
    assert seller.ledger.store.count() == stored + 1

    # the interval is delivered: the seller measures 290 of the 300 Wh
    s.clock.now_s = step_times(seller.config, START)["settle"]
    now = int(seller.clock() * 1000)
    mint = seller.ledger.mint(seal(MeterReading(seller.public, START, 900, 290, 0),
                                   seller.key), 290, now)
    delivery = seller.ledger.propose_settlement(DeliveryPayload(
        trade_id, seller.public, buyer.public, 300, 290, offer.price_micro_per_kwh, 1000, 0), now)
    stored = buyer.ledger.store.count()
    # a forged DELIVERY or a forged proof of measurement is refused, nothing stored
    for blocks in ((forged(delivery.raw), mint.raw), (delivery.raw, forged(mint.raw))):
        reply, _ = await selling.send(Kind.DELIVER, trade_id, offer, blocks)
        assert (reply.status, reply.reason) == (Status.DENIED, "bad_block_signature")
        assert buyer.ledger.store.count() == stored
    assert buyer.counters["trades_settled"] == 0

    reply, raw = await selling.send(Kind.DELIVER, trade_id, offer, (delivery.raw, mint.raw))
    assert reply.status is Status.DONE and reply.energy_wh == 290
    closing = reply.blocks[0]
    assert buyer.ledger.store.count() == stored + 2   # the proposal and the agreement
    stored = buyer.ledger.store.count()

    # the same bytes again (a retransmission): the cached reply, no check, nothing stored
    checks.clear()
    again, _ = await selling.send(Kind.DELIVER, trade_id, offer, raw=raw)
    assert again.blocks == (closing,)
    assert buyer.counters["retransmissions_answered"] == 1
    assert checks["request"] == 0 and checks["block"] == 0
    # the same blocks in a new request (a replay past the cache): the ledger answers with the
    # agreement it already made; nothing is stored twice, nothing is refunded twice
    credit = buyer.ledger.credit_micro
    replayed, _ = await selling.send(Kind.DELIVER, trade_id, offer, (delivery.raw, mint.raw))
    assert replayed.blocks == (closing,)
    assert buyer.ledger.store.count() == stored
    assert buyer.ledger.credit_micro == credit
    assert trade_ids(buyer, BlockType.SETTLEMENT) == [trade_id, trade_id]

    # the seller's side: a forged delivery agreement is refused, the real one stored once
    with pytest.raises(BlockRejected, match="signature"):
        seller.ledger.accept_agreement(forged(closing))
    seller.ledger.accept_agreement(closing)
    count = seller.ledger.store.count()
    seller.ledger.accept_agreement(closing)
    assert seller.ledger.store.count() == count


def test_only_a_checked_sealed_block_skips_the_check(tmp_path, checks):
    """A Sealed handed to the ledger is trusted only if seal/open_envelope checked it."""
    store = LedgerStore(tmp_path / "l.db")
    seller, buyer = Ledger(store, SELLER), Ledger(store, BUYER)
    seller.mint(seal(MeterReading(SELLER.public, INTERVAL, 900, 9000, 1000), SELLER), 8000, 1)
    buyer.deposit(seal(deposit_payload(BUYER).voucher, BANK), 1)
    proposal = seller.propose_trade(trade_payload(1), 2)
    bad = forged(proposal.raw)
    unchecked = (decode_envelope(bad, BlockBody)[0],               # decoded, never checked
                 open_envelope(bad, BlockBody)[0],                 # checked: it failed
                 Sealed(proposal.message, proposal.signature[:-1] + b"\0", bad))  # by hand
    for sealed in unchecked:
        assert not sealed.verified
        with pytest.raises(BlockRejected, match="signature"):
            buyer.agree(sealed, 3)
    copy = dataclasses.replace(open_envelope(proposal.raw, BlockBody)[0])
    assert not copy.verified
    checks.clear()
    buyer.agree(copy, 3)                     # a good block, but not known to be checked
    assert checks["block"] == 1
    opened = open_envelope(seller.propose_trade(trade_payload(2), 4).raw, BlockBody)[0]
    checks.clear()
    buyer.agree(opened, 5)                   # checked by open_envelope: not again
    assert checks["block"] == 0
    store.close()
