"""Every validation rule, each with a block that breaks exactly that rule (no I/O)."""

import dataclasses

import pytest

from ledger import (
    BlockType, ChainState, DeliveryPayload, EncodeError, LedgerRules, MeterReading, MintPayload,
    check_block, check_pair, seal,
)
from ledger.rules import (
    BOUNDS, CREDIT_BALANCE, DOUBLE_SPEND, LINK, PREVIOUS_HASH, READING, SEQUENCE, SIGNATURE,
    TIME, TOKEN_BALANCE, VOUCHER,
)
from tests.chainkit import (
    BANK, BUYER, INTERVAL, OTHER, SELLER, advance, block, body, deposit_payload, funded_states,
    grid_payload, mint_payload, settlement_payload, trade_payload,
)

RULES = LedgerRules()


def rules_broken(sealed, state, rules=RULES, signature_ok=True, now_ms=None):
    return sorted({p.rule for p in check_block(sealed, signature_ok, state, rules, now_ms)})


def traded_states():
    """Seller and buyer after trade 1 (1500 Wh) was proposed and agreed."""
    seller, buyer = funded_states()
    proposal = block(SELLER, seller, BlockType.TRADE, trade_payload(), counterparty=BUYER.public)
    advance(seller, proposal)
    agreement = block(BUYER, buyer, BlockType.TRADE, trade_payload(), link=proposal)
    advance(buyer, agreement)
    return seller, buyer, proposal, agreement


def test_valid_trade_and_settlement_break_nothing():
    seller, buyer, proposal, agreement = traded_states()
    assert seller.tokens_for(INTERVAL) == 2500
    assert buyer.credit_micro == 10_000_000 - 300_000
    assert check_pair(proposal, agreement) == []
    settle = block(BUYER, buyer, BlockType.SETTLEMENT, settlement_payload(),
                   counterparty=SELLER.public)
    assert rules_broken(settle, buyer) == []
    advance(buyer, settle)
    assert buyer.credit_micro == 10_000_000 - 300_000 + 60_000  # 300 Wh undelivered refunded
    ack = block(SELLER, seller, BlockType.SETTLEMENT, settlement_payload(), link=settle)
    assert rules_broken(ack, seller) == []
    advance(seller, ack)
    assert seller.credit_micro == 240_000  # 1200 Wh delivered at 0.20/kWh


def test_signature_rule():
    seller, _ = funded_states()
    good = block(SELLER, seller, BlockType.GRID, grid_payload())
    assert rules_broken(good, seller, signature_ok=False) == [SIGNATURE]


def test_sequence_rule():
    seller, _ = funded_states()
    skipped = block(SELLER, seller, BlockType.GRID, grid_payload(), seq=seller.seq + 2)
    assert rules_broken(skipped, seller) == [SEQUENCE]


def test_block_of_another_author_breaks_sequence():
    seller, _ = funded_states()
    foreign = seal(body(OTHER, seller, BlockType.GRID, grid_payload()), OTHER)
    assert rules_broken(foreign, seller) == [SEQUENCE]


def test_previous_hash_rule():
    seller, _ = funded_states()
    bad = block(SELLER, seller, BlockType.GRID, grid_payload(), prev=b"\x01" * 32)
    assert rules_broken(bad, seller) == [PREVIOUS_HASH]


def test_time_rules():
    seller, _ = funded_states()
    seller.time_ms = 10_000
    backwards = block(SELLER, seller, BlockType.GRID, grid_payload(), time_ms=9_999)
    assert rules_broken(backwards, seller) == [TIME]
    future = block(SELLER, seller, BlockType.GRID, grid_payload(), time_ms=10_000 + 10**9)
    assert rules_broken(future, seller, now_ms=10_000) == [TIME]
    assert rules_broken(future, seller) == []  # no clock given: no future check


def test_token_balance_rule():
    seller, _ = funded_states()
    too_much = block(SELLER, seller, BlockType.TRADE, trade_payload(energy=4001),
                     counterparty=BUYER.public)
    assert rules_broken(too_much, seller) == [TOKEN_BALANCE]
    # an interval not minted yet is sold forward: its tokens are spent on delivery, where the
    # DELIVERY may claim no more than the interval's reading minted
    forward_trade = trade_payload(interval=INTERVAL + 900, energy=300)
    forward = block(SELLER, seller, BlockType.TRADE, forward_trade, counterparty=BUYER.public)
    assert rules_broken(forward, seller) == []
    seller.apply(forward)
    assert seller.trades[forward_trade.trade_id].forward
    delivery = DeliveryPayload(forward_trade.trade_id, SELLER.public, BUYER.public, 300, 200,
                               forward_trade.price_micro_per_kwh, 60_000, 0)
    unmeasured = block(SELLER, seller, BlockType.SETTLEMENT, delivery, counterparty=BUYER.public)
    assert rules_broken(unmeasured, seller) == [TOKEN_BALANCE]
    seller.apply(block(SELLER, seller, BlockType.MINT, MintPayload(
        MeterReading(SELLER.public, INTERVAL + 900, 900, 250, 100), b"", 150)))
    assert rules_broken(block(SELLER, seller, BlockType.SETTLEMENT, delivery,
                              counterparty=BUYER.public), seller) == [TOKEN_BALANCE]  # 200 > 150
    measured = dataclasses.replace(delivery, delivered_wh=150)
    assert rules_broken(block(SELLER, seller, BlockType.SETTLEMENT, measured,
                              counterparty=BUYER.public), seller) == []


def test_credit_balance_rule():
    seller, buyer = funded_states()
    pricey = trade_payload(energy=2000, price=5_000_001)  # 10.000002 units > 10 deposited
    proposal = block(SELLER, seller, BlockType.TRADE, pricey, counterparty=BUYER.public)
    agreement = block(BUYER, buyer, BlockType.TRADE, pricey, link=proposal)
    assert rules_broken(agreement, buyer) == [CREDIT_BALANCE]


def test_link_rules():
    seller, buyer = funded_states()
    # the buyer may not write the trade proposal
    assert rules_broken(block(BUYER, buyer, BlockType.TRADE, trade_payload(),
                              counterparty=SELLER.public), buyer) == [LINK]
    # the proposal must name the buyer as counterparty
    assert rules_broken(block(SELLER, seller, BlockType.TRADE, trade_payload(),
                              counterparty=OTHER.public), seller) == [LINK]
    # a settlement of a trade that is not on the chain
    assert rules_broken(block(BUYER, buyer, BlockType.SETTLEMENT, settlement_payload(),
                              counterparty=SELLER.public), buyer) == [LINK]


def test_settlement_must_match_trade():
    _, buyer, _, _ = traded_states()
    wrong = block(BUYER, buyer, BlockType.SETTLEMENT, settlement_payload(agreed=1400, delivered=1400),
                  counterparty=SELLER.public)
    assert rules_broken(wrong, buyer) == [LINK]


def test_pair_rules():
    seller, buyer, proposal, agreement = traded_states()
    other_payload = trade_payload(energy=1000)
    tampered = block(BUYER, ChainState(BUYER.public), BlockType.TRADE, other_payload, link=proposal)
    assert {p.rule for p in check_pair(proposal, tampered)} == {LINK}
    wrong_hash = block(BUYER, ChainState(BUYER.public), BlockType.TRADE, trade_payload(),
                       link=proposal, link_hash=b"\x02" * 32)
    assert {p.rule for p in check_pair(proposal, wrong_hash)} == {LINK}


@pytest.mark.parametrize("case", ["mint", "voucher", "trade", "settlement", "grid"])
def test_double_spend_rules(case):
    seller, buyer, proposal, agreement = traded_states()
    if case == "mint":
        again = block(SELLER, seller, BlockType.MINT, mint_payload(SELLER, tokens=10))
        state = seller
    elif case == "voucher":
        again = block(BUYER, buyer, BlockType.DEPOSIT, deposit_payload(BUYER))
        state = buyer
    elif case == "trade":
        again = block(SELLER, seller, BlockType.TRADE, trade_payload(energy=10),
                      counterparty=BUYER.public)
        state = seller
    elif case == "settlement":
        first = block(BUYER, buyer, BlockType.SETTLEMENT, settlement_payload(),
                      counterparty=SELLER.public)
        advance(buyer, first)
        again = block(BUYER, buyer, BlockType.SETTLEMENT, settlement_payload(),
                      counterparty=SELLER.public)
        state = buyer
    else:
        advance(seller, block(SELLER, seller, BlockType.GRID, grid_payload()))
        again = block(SELLER, seller, BlockType.GRID, grid_payload())
        state = seller
    assert rules_broken(again, state) == [DOUBLE_SPEND]


def test_bounds_rules():
    seller, _ = funded_states()
    tight = dataclasses.replace(RULES, max_trade_wh=1000)
    big = block(SELLER, seller, BlockType.TRADE, trade_payload(energy=1500), counterparty=BUYER.public)
    assert rules_broken(big, seller, tight) == [BOUNDS]
    price = block(SELLER, seller, BlockType.TRADE, trade_payload(price=RULES.max_price_micro_per_kwh + 1),
                  counterparty=BUYER.public)
    assert rules_broken(price, seller) == [BOUNDS]
    fresh = ChainState(SELLER.public)
    huge_mint = block(SELLER, fresh, BlockType.MINT, mint_payload(SELLER, tokens=2000, generation=3000))
    assert rules_broken(huge_mint, fresh, dataclasses.replace(RULES, max_mint_wh=1000)) == [BOUNDS]


def test_reading_rules():
    fresh = ChainState(SELLER.public)
    trusted = dataclasses.replace(RULES, trusted_meters=frozenset({OTHER.public}))
    by_meter = block(SELLER, fresh, BlockType.MINT, mint_payload(OTHER, signer=OTHER))
    assert rules_broken(by_meter, fresh, trusted) == []
    assert rules_broken(by_meter, fresh) == [READING]  # that meter is not trusted
    forged = block(SELLER, fresh, BlockType.MINT, mint_payload(OTHER, signer=BUYER))
    assert rules_broken(forged, fresh, trusted) == [READING]
    unsigned = block(SELLER, fresh, BlockType.MINT, mint_payload(OTHER))
    assert rules_broken(unsigned, fresh, trusted) == [READING]
    redundant = block(SELLER, fresh, BlockType.MINT, mint_payload(SELLER, signer=SELLER))
    assert rules_broken(redundant, fresh) == [READING]


def test_mint_cannot_exceed_the_reading():
    with pytest.raises(EncodeError, match="exceeds the reading's surplus"):
        mint_payload(SELLER, tokens=4001, generation=5000, consumption=1000)


def test_voucher_rules():
    fresh = ChainState(BUYER.public)
    for_other = block(BUYER, fresh, BlockType.DEPOSIT, deposit_payload(OTHER))
    assert rules_broken(for_other, fresh) == [VOUCHER]
    untrusted = dataclasses.replace(RULES, trusted_issuers=frozenset({OTHER.public}))
    good = block(BUYER, fresh, BlockType.DEPOSIT, deposit_payload(BUYER))
    assert rules_broken(good, fresh, untrusted) == [VOUCHER]
    trusted = dataclasses.replace(RULES, trusted_issuers=frozenset({BANK.public}))
    assert rules_broken(good, fresh, trusted) == []


def test_all_problems_are_collected_at_once():
    seller, _ = funded_states()
    awful = block(SELLER, seller, BlockType.TRADE, trade_payload(energy=9000, price=10**9),
                  counterparty=OTHER.public, prev=b"\x03" * 32, seq=99, time_ms=0)
    assert rules_broken(awful, seller, signature_ok=False) == sorted(
        [SIGNATURE, SEQUENCE, PREVIOUS_HASH, TIME, LINK, BOUNDS, TOKEN_BALANCE])
