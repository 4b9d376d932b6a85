"""The negotiation messages and their rules, without sockets."""

from __future__ import annotations

import dataclasses
import os

import pytest

from ledger import (
    CreditVoucher, EncodeError, Ledger, LedgerStore, SigningKey, TradePayload, seal,
)
from p2pnode.negotiation import (
    MAX_PEER_MESSAGE_BYTES, Kind, PeerReply, PeerRequest, ReplayGuard, Status, check_proposal,
    check_reply, parse_request,
)

BUYER, SELLER, OTHER = (SigningKey.from_seed(bytes([i]) * 32) for i in (1, 2, 3))
INTERVAL = 1_782_864_000
NOW_MS = (INTERVAL + 900) * 1000


def request(kind=Kind.REQUEST, *, sender=BUYER, recipient=SELLER, energy_wh=500,
            sent_at_ms=NOW_MS, nonce=None, trade_id=b"t" * 16, blocks=(), price=150_000):
    message = PeerRequest(sender.public, recipient.public, kind, trade_id,
                          nonce or os.urandom(16), sent_at_ms, b"o" * 16, INTERVAL, energy_wh,
                          price, blocks)
    return seal(message, sender)


def test_request_round_trip_and_shape_rules():
    sealed = request()
    assert parse_request(sealed.raw).message == sealed.message
    assert request(blocks=(b"x", b"y")).message.blocks == (b"x", b"y")   # credit evidence
    with pytest.raises(EncodeError, match="blocks"):
        request(blocks=(b"x",) * 3)
    with pytest.raises(EncodeError, match="CONFIRM carries 1 block"):
        request(Kind.CONFIRM)
    with pytest.raises(EncodeError, match="at least 1 Wh"):
        request(energy_wh=0)
    with pytest.raises(EncodeError, match="same key"):
        request(recipient=BUYER)


def test_parse_request_names_why_it_drops():
    sealed = request()
    assert parse_request(b"\x00" * (MAX_PEER_MESSAGE_BYTES + 1)) == "oversize"
    assert parse_request(b"\x81\xa1t\x01") == "malformed"
    assert parse_request(sealed.raw + b"\x00") == "malformed"  # trailing bytes
    tampered = bytearray(sealed.raw)
    tampered[sealed.raw.index(sealed.signature) + 5] ^= 0x01
    assert parse_request(bytes(tampered)) == "bad_signature"
    forged = PeerRequest(BUYER.public, SELLER.public, Kind.REQUEST, b"t" * 16, b"n" * 16,
                         NOW_MS, b"o" * 16, INTERVAL, 5, 1)
    signed_by_other = seal(dataclasses.replace(forged, sender=OTHER.public), OTHER).raw
    assert parse_request(signed_by_other).message.sender == OTHER.public  # signer is the sender
    assert parse_request(signed_by_other.replace(OTHER.public, BUYER.public)) == "bad_signature"


def reply_to(req, *, sender=SELLER, status=Status.DENIED, nonce=None, blocks=(), energy_wh=0):
    message = req.message
    return seal(PeerReply(sender.public, message.sender, message.trade_id,
                          nonce or message.nonce, status, "sold_out", energy_wh, blocks), sender)


def test_a_reply_must_come_from_the_recipient_and_echo_the_nonce():
    req = request()
    assert check_reply(reply_to(req).raw, req.message).message.reason == "sold_out"
    assert check_reply(reply_to(req, sender=OTHER).raw, req.message) == "not_the_reply"
    assert check_reply(reply_to(req, nonce=b"x" * 16).raw, req.message) == "not_the_reply"
    assert check_reply(b"garbage", req.message) == "malformed"
    reply = reply_to(req)
    raw = bytearray(reply.raw)
    raw[reply.raw.index(reply.signature)] ^= 0x80
    assert check_reply(bytes(raw), req.message) == "bad_signature"


@pytest.fixture
def seller_ledger(tmp_path):
    from ledger import MeterReading
    ledger = Ledger(LedgerStore(tmp_path / "seller.db"), SELLER)
    reading = seal(MeterReading(SELLER.public, INTERVAL, 900, 2000, 0), SELLER)
    ledger.mint(reading, 2000, NOW_MS)
    yield ledger
    ledger.store.close()


def proposal(ledger, req, energy_wh, **changes):
    message = req.message
    payload = TradePayload(message.trade_id, SELLER.public, message.sender, INTERVAL, energy_wh,
                           message.price_micro_per_kwh, message.offer_id)
    return ledger.propose_trade(dataclasses.replace(payload, **changes), NOW_MS)


def test_the_buyer_agrees_only_to_what_it_asked_for(seller_ledger):
    req = request(energy_wh=500)
    good = proposal(seller_ledger, req, 400)  # a seller may grant less
    assert check_proposal(good.raw, req.message, 400).hash == good.hash
    assert check_proposal(good.raw, req.message, 500) == "proposal_differs"  # not what it said
    dearer = proposal(seller_ledger, req, 400, trade_id=b"u" * 16, price_micro_per_kwh=160_000)
    assert check_proposal(dearer.raw, request(trade_id=b"u" * 16).message, 400) == "proposal_differs"
    more = proposal(seller_ledger, req, 600, trade_id=b"v" * 16)
    assert check_proposal(more.raw, request(trade_id=b"v" * 16).message, 600) == "proposal_differs"
    assert check_proposal(good.raw, request(recipient=OTHER).message, 400) == "bad_block_signature"
    assert check_proposal(b"junk", req.message, 400) == "malformed_block"


def test_agreement_is_not_a_proposal(seller_ledger, tmp_path):
    buyer = Ledger(LedgerStore(tmp_path / "buyer.db"), BUYER)
    issuer = SigningKey.from_seed(b"i" * 32)
    buyer.deposit(seal(CreditVoucher(issuer.public, BUYER.public, b"v" * 16, 10**9), issuer), NOW_MS)
    req = request()
    agreement = buyer.agree(proposal(seller_ledger, req, 500).raw, NOW_MS)
    assert check_proposal(agreement.raw, req.message, 500) == "bad_block_signature"
    buyer.store.close()


def test_replay_guard_answers_retransmissions_and_refuses_replays():
    guard = ReplayGuard(window_ms=60_000, max_entries=3, max_per_sender=3)
    first = request()
    assert guard.admit(first, NOW_MS) is None                    # new: handle it
    assert guard.admit(first, NOW_MS + 10) == "in_progress"       # a copy while handling
    guard.remember(first, b"reply-1")
    assert guard.admit(first, NOW_MS + 20) == b"reply-1"          # retransmission: same answer
    same_nonce = request(nonce=first.message.nonce, energy_wh=999)
    assert guard.admit(same_nonce, NOW_MS + 30) == "nonce_reused"
    assert guard.admit(request(sent_at_ms=NOW_MS - 60_001), NOW_MS) == "stale"
    assert guard.admit(request(sent_at_ms=NOW_MS + 60_001), NOW_MS) == "future"
    failed = request()
    assert guard.admit(failed, NOW_MS) is None
    guard.forget(failed)                                          # handling raised
    assert guard.admit(failed, NOW_MS) is None                    # handled afresh
    assert guard.admit(request(), NOW_MS) is None
    assert guard.admit(request(), NOW_MS) == "busy"               # this sender's share is full
    # once the window has passed, old entries make room and the old request is stale
    later = NOW_MS + 60_001
    assert guard.admit(first, later) == "stale"
    assert guard.admit(request(sent_at_ms=later), later) is None
    assert len(guard) == 1


def test_replay_guard_answers_only_the_very_bytes_it_answered_while_fresh():
    """``replay_of`` runs before the signature check, so it must know nothing but exact copies
    of requests that were admitted (checked) and answered."""
    guard = ReplayGuard(window_ms=60_000)
    first = request()
    assert guard.replay_of(first.raw, NOW_MS) is None              # never seen
    assert guard.admit(first, NOW_MS) is None
    assert guard.replay_of(first.raw, NOW_MS) is None              # not answered yet
    guard.remember(first, b"reply-1")
    assert guard.replay_of(first.raw, NOW_MS + 10) == b"reply-1"
    tampered = bytearray(first.raw)
    tampered[-10] ^= 1                                             # same nonce, other bytes
    assert guard.replay_of(bytes(tampered), NOW_MS + 10) is None
    assert guard.replay_of(first.raw, NOW_MS + 60_001) is None     # stale: not answered
    assert guard.admit(request(sent_at_ms=NOW_MS + 60_001), NOW_MS + 60_001) is None
    assert guard.replay_of(first.raw, NOW_MS + 10) is None         # expired and forgotten


def test_a_flood_from_many_keys_never_makes_the_guard_refuse_an_honest_sender():
    guard = ReplayGuard(window_ms=60_000, max_entries=100, max_per_sender=4)
    flooders = [SigningKey.from_seed(f"flooder {i}".encode().ljust(32, b".")) for i in range(59)]
    for n in range(500):                                  # ~420 requests/s filled it before
        flood = request(sender=flooders[n % len(flooders)], nonce=n.to_bytes(16, "big"))
        assert guard.admit(flood, NOW_MS + n) in (None, "busy")
    assert len(guard) == 100 and guard.evicted > 0
    honest = request()
    assert guard.admit(honest, NOW_MS + 600) is None      # admitted: the oldest entry made room
    guard.remember(honest, b"reply")
    assert guard.admit(honest, NOW_MS + 601) == b"reply"  # and its retransmission is answered
    one_key = [request(sender=flooders[0]) for _ in range(10)]
    assert [guard.admit(r, NOW_MS + 700) for r in one_key].count("busy") >= 6   # one key: capped


def test_replay_guard_rejects_bad_settings():
    with pytest.raises(ValueError):
        ReplayGuard(window_ms=0)
