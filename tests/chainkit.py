"""Test helpers: deterministic keys and hand-made blocks (valid or deliberately broken)."""

from __future__ import annotations

import hashlib

from ledger import (
    BlockBody, BlockType, ChainState, CreditVoucher, DepositPayload, GridPayload,
    LedgerRules, MeterReading, MintPayload, SettlementPayload, SigningKey, TradePayload, seal,
)

INTERVAL = 1_700_000_100
PRICE = 200_000  # µ per kWh (0.20 per kWh)


def key(name: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(name.encode()).digest())


SELLER, BUYER, BANK, OTHER = key("seller"), key("buyer"), key("bank"), key("other")


def tid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def body(author: SigningKey, state: ChainState, kind: BlockType, payload, *, link=None,
         counterparty: bytes = b"", time_ms: int | None = None, **override) -> BlockBody:
    fields = dict(
        author=author.public, seq=state.seq + 1, prev=state.head, type=kind, payload=payload,
        link_key=link.message.author if link else counterparty,
        link_seq=link.message.seq if link else 0, link_hash=link.hash if link else b"",
        time_ms=state.time_ms + 1 if time_ms is None else time_ms,
    )
    fields.update(override)
    return BlockBody(**fields)


def block(author: SigningKey, state: ChainState, kind: BlockType, payload, **kw):
    return seal(body(author, state, kind, payload, **kw), author)


def mint_payload(meter: SigningKey, tokens: int = 4000, interval: int = INTERVAL,
                 generation: int = 5000, consumption: int = 1000, signer: SigningKey | None = None):
    """A mint by ``meter``'s own node (no reading_sig) unless another ``signer`` is given."""
    reading = MeterReading(meter.public, interval, 900, generation, consumption)
    signature = signer.sign(reading.signing_bytes()) if signer else b""
    return MintPayload(reading, signature, tokens)


def deposit_payload(account: SigningKey, amount: int = 10_000_000, voucher_id: bytes = b"v" * 16,
                    issuer: SigningKey = BANK):
    voucher = seal(CreditVoucher(issuer.public, account.public, voucher_id, amount), issuer)
    return DepositPayload(voucher.message, voucher.signature)


def trade_payload(n: int = 1, energy: int = 1500, price: int = PRICE, interval: int = INTERVAL):
    return TradePayload(tid(n), SELLER.public, BUYER.public, interval, energy, price, b"offer")


def settlement_payload(n: int = 1, agreed: int = 1500, delivered: int = 1200, price: int = PRICE):
    return SettlementPayload(tid(n), SELLER.public, BUYER.public, agreed, delivered, price)


def grid_payload(interval: int = INTERVAL, imp: int = 300, exp: int = 0):
    return GridPayload(interval, imp, exp, 300_000, 80_000, "")


def advance(state: ChainState, sealed_block) -> ChainState:
    state.apply(sealed_block)
    return state


def funded_states(rules: LedgerRules = LedgerRules()):
    """A seller with 4000 Wh of tokens and a buyer with 10 units of credit."""
    seller, buyer = ChainState(SELLER.public), ChainState(BUYER.public)
    advance(seller, block(SELLER, seller, BlockType.MINT, mint_payload(SELLER)))
    advance(buyer, block(BUYER, buyer, BlockType.DEPOSIT, deposit_payload(BUYER)))
    return seller, buyer
