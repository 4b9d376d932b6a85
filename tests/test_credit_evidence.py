"""A buyer's credit from evidence (p2pnode/trading/credit.py) and the seller's book using it,
pure: plain calls, no event loop.  Every reason a proof is refused, what it adds up to, how a
grant is cut to the credit left after what the buyer owes, and the CONFIRM that comes before
the deposits it showed."""

from __future__ import annotations

import os

from ledger import BlockType, ChainState, cost_micro
from p2pnode.negotiation import Kind, PeerRequest
from p2pnode.trading.credit import MAX_CREDIT_BLOCKS, CreditEvidence, proven_credit
from p2pnode.trading.seller import RESERVATION_MS, SellerBook
from simulator.hostile import deposit_block
from tests.chainkit import BANK, BUYER, OTHER, SELLER, block, deposit_payload, grid_payload

START = 1_782_907_200
TRUSTED = frozenset({BANK.public})
PRICE = 200_000     # µ per kWh: 1 Wh costs 200 µ


def deposit(amount=1_000_000, voucher_id=b"v" * 16, account=BUYER, issuer=BANK, seq=1) -> bytes:
    return deposit_block(account, issuer, amount, voucher_id, seq=seq)


def test_deposits_of_trusted_issuers_add_up_to_the_proven_credit():
    assert proven_credit((), BUYER.public, TRUSTED) == CreditEvidence(0, 0)
    two = (deposit(1_000_000, b"a" * 16, seq=1), deposit(500_000, b"b" * 16, seq=4))
    assert proven_credit(two, BUYER.public, TRUSTED) == CreditEvidence(1_500_000, 4)
    untrusted = deposit(10**12, issuer=OTHER)      # a voucher from an issuer the seller ignores
    assert proven_credit((untrusted,), BUYER.public, TRUSTED) == CreditEvidence(0, 0)
    assert proven_credit((untrusted,), BUYER.public, None).credit_micro == 10**12   # any issuer
    # the block the ledger itself writes is the same evidence
    state = ChainState(BUYER.public)
    ledger_block = block(BUYER, state, BlockType.DEPOSIT, deposit_payload(BUYER, 7_000_000))
    assert proven_credit((ledger_block.raw,), BUYER.public, TRUSTED).credit_micro == 7_000_000


def test_every_bad_proof_is_refused():
    good = deposit()
    forged = bytearray(good)
    forged[-10] ^= 1                                   # the block's signature broken
    bad = {
        "another key's deposit": (deposit(account=OTHER),),
        "not a block": (b"\x93\x01\x02",),
        "forged block": (bytes(forged),),
        "the same voucher twice": (good, deposit(seq=2)),
        "too many blocks": (good,) * (MAX_CREDIT_BLOCKS + 1),
    }
    for name, blocks in bad.items():
        assert proven_credit(blocks, BUYER.public, TRUSTED) == "bad_credit_proof", name
    # a block of the buyer's that is no deposit
    state = ChainState(BUYER.public)
    grid = block(BUYER, state, BlockType.GRID, grid_payload())
    assert proven_credit((grid.raw,), BUYER.public, TRUSTED) == "bad_credit_proof"


def request(energy: int, *, sender=BUYER, trade_id=None) -> PeerRequest:
    return PeerRequest(sender.public, SELLER.public, Kind.REQUEST, trade_id or os.urandom(16),
                       os.urandom(16), 0, b"o" * 16, START, energy, PRICE)


def book(available=100_000) -> SellerBook:
    class Record:
        message = type("R", (), {"offer_id": b"o" * 16})()
    out = SellerBook()
    out.open(START, available, available, PRICE, gate_s=START).record = Record()
    return out


def decide(seller: SellerBook, req: PeerRequest, credit_micro: int | None, owed=0):
    credit = None if credit_micro is None else CreditEvidence(credit_micro, 3)
    return seller.decide(req, now_s=START - 600, sells=True, max_trade_wh=1_000_000,
                         trade_known=False, tokens_wh=None, credit=credit, owed_micro=owed)


def test_a_grant_is_cut_to_the_credit_left_after_what_the_buyer_owes():
    seller = book()
    assert decide(seller, request(1_000_000), 0) == "no_credit"            # nothing shown
    assert decide(seller, request(1_000_000), None) == 100_000             # not checked
    assert decide(seller, request(1_000_000), 1_000_000) == 5_000          # 1 € at 200 µ/Wh
    assert decide(seller, request(1_000), 1_000_000) == 1_000
    assert decide(seller, request(1_000), 1_000_000, owed=900_000) == 500   # owes us 0.90 €
    assert decide(seller, request(1), 1_000_000, owed=1_000_000) == "no_credit"
    first = request(3_000)
    assert decide(seller, first, 1_000_000) == 3_000
    seller.granted(first, 3_000, now_ms=0, credit_seq=3)                   # reserved: 0.60 €
    assert seller.reserved_micro(BUYER.public) == cost_micro(3_000, PRICE) == 600_000
    assert decide(seller, request(5_000), 1_000_000) == 2_000
    assert decide(seller, request(5_000, sender=OTHER), 1_000_000) == 5_000   # per buyer
    seller.confirmed(START, first.trade_id, BUYER.public, 3_000)   # now owed, not reserved
    assert seller.reserved_micro(BUYER.public) == 0
    second = request(4_000)
    seller.granted(second, 4_000, now_ms=0, credit_seq=3)
    assert seller.reserved_micro(BUYER.public) == 800_000
    seller.expire(RESERVATION_MS)                                  # never confirmed: released
    assert seller.reserved_micro(BUYER.public) == 0


def test_an_agreement_before_the_deposits_shown_is_refused():
    seller = book()
    req = request(1_000)
    seller.granted(req, 1_000, now_ms=0, credit_seq=5)      # the buyer showed a deposit at #5
    assert seller.agreement_problem(START, req.trade_id, 5) == "agreement_before_credit"
    assert seller.agreement_problem(START, req.trade_id, 1) == "agreement_before_credit"
    assert seller.agreement_problem(START, req.trade_id, 6) is None
    assert seller.agreement_problem(START + 900, req.trade_id, 1) is None   # no open offer
