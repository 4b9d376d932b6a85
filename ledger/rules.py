"""Validation of blocks: the ledger's "smart contract" (pure: no I/O, no clock).

:func:`check_block` collects *every* reason a block is invalid on its author's chain, given the
chain's state so far; :meth:`ChainState.apply` folds a valid block into that state.  Balances:

* energy tokens are per trading interval (energy cannot be stored in a token: surplus of the
  12:00 interval can only be sold for the 12:00 interval).  MINT adds the interval's tokens,
  from the signed reading measured after the interval.  A *spot* trade (the seller's TRADE
  proposal comes after the interval's MINT: the ex-post market) spends them when proposed; a
  proposal that is never agreed keeps them spent.  A *forward* trade (proposed before the
  interval was minted: traded ahead of delivery) spends none when proposed; the seller's
  DELIVERY settlement spends the delivered energy, which must be covered by the tokens its
  meter's reading minted -- a seller cannot claim more delivered than it measured.
* credit (µ) is added by DEPOSIT vouchers and by the seller's settlement block (payment for
  delivered energy, less its imbalance charge); the buyer's TRADE agreement spends the agreed
  cost; the buyer's settlement block refunds the undelivered part and credits the imbalance
  charge.  No balance may go negative.

Who writes what: the seller proposes a TRADE and the buyer agrees.  A SETTLEMENT with a
:class:`~ledger.block.DeliveryPayload` is proposed by the seller (its meter measured the
delivery) and agreed by the buyer; one with the older :class:`~ledger.block.SettlementPayload`
(ledger files of the ex-post market before forward trading) was proposed by the buyer.
"""

from __future__ import annotations

import dataclasses

from ledger import keys
from ledger.block import (
    GENESIS_HASH, BlockBody, BlockType, DeliveryPayload, DepositPayload, GridPayload, MintPayload,
    SettlementPayload, TradePayload, cost_micro,
)
from ledger.sealed import Sealed

__all__ = ["LedgerRules", "Problem", "ChainState", "check_block", "check_pair", "RULES"]

# Rule codes: every Problem carries one of these.
MALFORMED = "malformed"
SIGNATURE = "signature"
SEQUENCE = "sequence"
PREVIOUS_HASH = "previous-hash"
TIME = "time"
LINK = "link"
TOKEN_BALANCE = "token-balance"
CREDIT_BALANCE = "credit-balance"
DOUBLE_SPEND = "double-spend"
BOUNDS = "bounds"
READING = "reading"
VOUCHER = "voucher"
FORK = "fork"
RULES = (MALFORMED, SIGNATURE, SEQUENCE, PREVIOUS_HASH, TIME, LINK, TOKEN_BALANCE,
         CREDIT_BALANCE, DOUBLE_SPEND, BOUNDS, READING, VOUCHER, FORK)

Block = Sealed[BlockBody]


@dataclasses.dataclass(frozen=True)
class LedgerRules:
    """Bounds and trust anchors of validation (the ledger package's configuration)."""

    max_trade_wh: int = 1_000_000  # 1 MWh in one trade
    max_price_micro_per_kwh: int = 10_000_000  # 10 currency units per kWh
    max_mint_wh: int = 1_000_000
    max_grid_wh: int = 10_000_000
    max_deposit_micro: int = 10**12
    trusted_issuers: frozenset[bytes] | None = None  # None: any issuer's voucher is accepted
    trusted_meters: frozenset[bytes] = frozenset()  # meter keys besides the author's own
    # True: a MINT needs a reading signed by one of ``trusted_meters``; the author's own
    # (self-signed) reading is refused -- a node cannot mint from a reading it made up.
    require_trusted_meter: bool = False
    max_clock_skew_ms: int = 5 * 60_000


@dataclasses.dataclass(frozen=True)
class Problem:
    """One broken rule of one block."""

    rule: str
    author: bytes
    seq: int
    detail: str

    def __str__(self) -> str:
        return f"{self.author.hex()[:16]} #{self.seq}: {self.rule}: {self.detail}"


@dataclasses.dataclass
class TradeState:
    payload: TradePayload
    seq: int  # the TRADE block of this chain
    settlement_seq: int = 0  # its SETTLEMENT block, once settled
    forward: bool = False  # sold before the interval was minted: tokens spent on delivery

    @property
    def settled(self) -> bool:
        return self.settlement_seq > 0


class ChainState:
    """What validation needs to know about one author's chain after its last block."""

    def __init__(self, author: bytes):
        self.author = author
        self.seq = 0
        self.head = GENESIS_HASH
        self.time_ms = 0
        self.credit_micro = 0
        self.tokens_wh: dict[int, int] = {}
        self.minted: set[int] = set()
        self.minted_wh: dict[int, int] = {}   # tokens minted per interval (before any sale)
        self.vouchers: set[bytes] = set()
        self.grid_intervals: set[int] = set()
        self.trades: dict[bytes, TradeState] = {}

    def apply(self, block: Block) -> None:
        """Fold a block into the state.

        Meant for blocks :func:`check_block` accepted; an auditor folding a broken chain may also
        apply invalid blocks (so one bad block does not hide the rest) and it must not crash.
        """
        body = block.message
        self.seq, self.head, self.time_ms = body.seq, block.hash, body.time_ms
        _FOLDS[body.type](self, body, body.payload)

    def _fold_mint(self, body: BlockBody, payload: MintPayload) -> None:
        interval = payload.reading.interval_start_s
        self.minted.add(interval)
        self.minted_wh[interval] = self.minted_wh.get(interval, 0) + payload.tokens_wh
        self.tokens_wh[interval] = self.tokens_for(interval) + payload.tokens_wh

    def _fold_deposit(self, body: BlockBody, payload: DepositPayload) -> None:
        self.vouchers.add(payload.voucher.voucher_id)
        self.credit_micro += payload.voucher.amount_micro

    def _fold_trade(self, body: BlockBody, payload: TradePayload) -> None:
        interval = payload.interval_start_s
        forward = body.author == payload.seller and interval not in self.minted
        self.trades[payload.trade_id] = TradeState(payload, body.seq, forward=forward)
        if body.author == payload.seller:
            if not forward:
                self.tokens_wh[interval] = self.tokens_for(interval) - payload.energy_wh
        else:
            self.credit_micro -= cost_micro(payload.energy_wh, payload.price_micro_per_kwh)

    def _fold_settlement(self, body: BlockBody, payload: SettlementPayload | DeliveryPayload
                         ) -> None:
        trade = self.trades.get(payload.trade_id)
        if trade is not None:
            trade.settlement_seq = body.seq
        imbalance = getattr(payload, "imbalance_micro", 0)
        if body.author == payload.seller:
            self.credit_micro += payload.paid_micro - imbalance
            if trade is not None and trade.forward:
                interval = trade.payload.interval_start_s
                self.tokens_wh[interval] = self.tokens_for(interval) - payload.delivered_wh
        else:
            self.credit_micro += payload.refund_micro + imbalance

    def _fold_grid(self, body: BlockBody, payload: GridPayload) -> None:
        self.grid_intervals.add(payload.interval_start_s)

    def tokens_for(self, interval_start_s: int) -> int:
        return self.tokens_wh.get(interval_start_s, 0)


# How each kind of block changes its author's state (a table, not an if-chain: looking up a
# BlockType member by name costs about 0.1 µs in Python 3.11).
_FOLDS = {
    BlockType.MINT: ChainState._fold_mint, BlockType.DEPOSIT: ChainState._fold_deposit,
    BlockType.TRADE: ChainState._fold_trade, BlockType.SETTLEMENT: ChainState._fold_settlement,
    BlockType.GRID: ChainState._fold_grid,
}


def check_block(block: Block, signature_ok: bool, state: ChainState, rules: LedgerRules,
                now_ms: int | None = None) -> list[Problem]:
    """Every rule ``block`` breaks as the next block of ``state``'s chain."""
    body = block.message
    found: list[tuple[str, str]] = []
    if not signature_ok:
        found.append((SIGNATURE, "signature does not verify"))
    if body.author != state.author:
        found.append((SEQUENCE, "block is not on this author's chain"))
    if body.seq != state.seq + 1:
        found.append((SEQUENCE, f"seq {body.seq} does not follow {state.seq}"))
    if body.prev != state.head:
        found.append((PREVIOUS_HASH, "prev does not match the hash of the previous block"))
    if body.time_ms < state.time_ms:
        found.append((TIME, f"time {body.time_ms} ms is before the previous block's"))
    if now_ms is not None and body.time_ms > now_ms + rules.max_clock_skew_ms:
        found.append((TIME, f"time {body.time_ms} ms is in the future"))
    found.extend(_PAYLOAD_CHECKS[body.type](body, state, rules))
    if not found:
        return []
    return [Problem(rule, body.author, body.seq, detail) for rule, detail in found]


def _check_mint(body: BlockBody, state: ChainState, rules: LedgerRules):
    payload, reading = body.payload, body.payload.reading
    if reading.meter == body.author:
        if rules.require_trusted_meter and reading.meter not in rules.trusted_meters:
            yield READING, "the reading is signed by the node itself, not by a trusted meter key"
        if payload.reading_sig:
            yield READING, "the author's own reading is signed by the block; reading_sig must be empty"
    else:
        if reading.meter not in rules.trusted_meters:
            yield READING, "meter reading is signed by a meter that is neither the author nor trusted"
        if not keys.is_valid_signature(reading.meter, payload.reading_sig, reading.signing_bytes()):
            yield READING, "meter reading signature does not verify"
    if reading.interval_start_s in state.minted:
        yield DOUBLE_SPEND, f"interval {reading.interval_start_s} was already minted"
    if payload.tokens_wh > rules.max_mint_wh:
        yield BOUNDS, f"tokens_wh {payload.tokens_wh} exceeds {rules.max_mint_wh}"


def _check_deposit(body: BlockBody, state: ChainState, rules: LedgerRules):
    payload, voucher = body.payload, body.payload.voucher
    if not keys.is_valid_signature(voucher.issuer, payload.voucher_sig, voucher.signing_bytes()):
        yield VOUCHER, "voucher signature does not verify"
    if voucher.account != body.author:
        yield VOUCHER, "voucher is made out to another account"
    if rules.trusted_issuers is not None and voucher.issuer not in rules.trusted_issuers:
        yield VOUCHER, "voucher issuer is not trusted"
    if voucher.voucher_id in state.vouchers:
        yield DOUBLE_SPEND, "voucher was already deposited"
    if voucher.amount_micro > rules.max_deposit_micro:
        yield BOUNDS, f"deposit {voucher.amount_micro} µ exceeds {rules.max_deposit_micro}"


def _check_parties(body: BlockBody, proposer: bytes, agreer: bytes):
    proposal = body.is_proposal
    author_should_be, counterparty = (proposer, agreer) if proposal else (agreer, proposer)
    if body.author != author_should_be:
        role = "proposal" if proposal else "agreement"
        yield LINK, f"the author cannot write the {body.type.name} {role}"
    if body.link_key != counterparty:
        yield LINK, "link_key does not name the counterparty"


def _check_trade(body: BlockBody, state: ChainState, rules: LedgerRules):
    p = body.payload
    yield from _check_parties(body, proposer=p.seller, agreer=p.buyer)
    if not 0 < p.energy_wh <= rules.max_trade_wh:
        yield BOUNDS, f"energy_wh {p.energy_wh} outside 1..{rules.max_trade_wh}"
    if p.price_micro_per_kwh > rules.max_price_micro_per_kwh:
        yield BOUNDS, f"price {p.price_micro_per_kwh} µ/kWh exceeds {rules.max_price_micro_per_kwh}"
    if p.trade_id in state.trades:
        yield DOUBLE_SPEND, f"trade {p.trade_id.hex()} is already on this chain"
    spot = p.interval_start_s in state.minted   # else forward: tokens are spent on delivery
    if body.author == p.seller and spot and state.tokens_for(p.interval_start_s) < p.energy_wh:
        yield TOKEN_BALANCE, (f"sells {p.energy_wh} Wh but holds "
                              f"{state.tokens_for(p.interval_start_s)} Wh for the interval")
    cost = cost_micro(p.energy_wh, p.price_micro_per_kwh)
    if body.author == p.buyer and state.credit_micro < cost:
        yield CREDIT_BALANCE, f"pays {cost} µ but holds {state.credit_micro} µ"


def _check_settlement(body: BlockBody, state: ChainState, rules: LedgerRules):
    p: SettlementPayload | DeliveryPayload = body.payload
    delivery = isinstance(p, DeliveryPayload)
    if delivery:   # the seller measured the delivery: it proposes
        yield from _check_parties(body, proposer=p.seller, agreer=p.buyer)
    else:
        yield from _check_parties(body, proposer=p.buyer, agreer=p.seller)
    trade = state.trades.get(p.trade_id)
    if trade is None:
        yield LINK, f"settles trade {p.trade_id.hex()} which is not on this chain"
        return
    if trade.settled:
        yield DOUBLE_SPEND, f"trade {p.trade_id.hex()} is already settled"
    t = trade.payload
    if (t.seller, t.buyer, t.energy_wh, t.price_micro_per_kwh) != (
            p.seller, p.buyer, p.agreed_wh, p.price_micro_per_kwh):
        yield LINK, "settlement does not match the trade it settles"
    if delivery:
        yield from _check_delivery(body, p, trade, state, rules)


def _check_delivery(body: BlockBody, p: DeliveryPayload, trade: TradeState, state: ChainState,
                    rules: LedgerRules):
    most = cost_micro(p.agreed_wh - p.delivered_wh, rules.max_price_micro_per_kwh)
    if p.imbalance_micro > most:
        yield BOUNDS, f"imbalance {p.imbalance_micro} µ exceeds {most} µ for the shortfall"
    if body.author != p.seller:
        return
    interval = trade.payload.interval_start_s
    if trade.forward and state.tokens_for(interval) < p.delivered_wh:
        yield TOKEN_BALANCE, (f"delivers {p.delivered_wh} Wh but its meter measured "
                              f"{state.tokens_for(interval)} Wh unsold for interval {interval}")
    if state.credit_micro + p.paid_micro < p.imbalance_micro:
        yield CREDIT_BALANCE, (f"owes an imbalance of {p.imbalance_micro} µ but holds "
                               f"{state.credit_micro + p.paid_micro} µ")


def _check_grid(body: BlockBody, state: ChainState, rules: LedgerRules):
    p = body.payload
    if p.interval_start_s in state.grid_intervals:
        yield DOUBLE_SPEND, f"grid exchange of interval {p.interval_start_s} is already recorded"
    if max(p.import_wh, p.export_wh) > rules.max_grid_wh:
        yield BOUNDS, f"grid energy exceeds {rules.max_grid_wh} Wh"
    for price in (p.import_price_micro_per_kwh, p.export_price_micro_per_kwh):
        if price > rules.max_price_micro_per_kwh:
            yield BOUNDS, f"grid price {price} µ/kWh exceeds {rules.max_price_micro_per_kwh}"


_PAYLOAD_CHECKS = {
    BlockType.MINT: _check_mint, BlockType.DEPOSIT: _check_deposit,
    BlockType.TRADE: _check_trade, BlockType.SETTLEMENT: _check_settlement,
    BlockType.GRID: _check_grid,
}


def check_pair(proposal: Block, agreement: Block) -> list[Problem]:
    """Every way ``agreement`` fails to be the counterparty's half of ``proposal``."""
    p, a = proposal.message, agreement.message
    found = []
    if not p.is_proposal:
        found.append("the linked block is not a proposal")
    if (a.link_key, a.link_seq, a.link_hash) != (p.author, p.seq, proposal.hash):
        found.append("agreement does not link to the proposal's author, seq and hash")
    if p.link_key != a.author:
        found.append("proposal names another counterparty")
    if p.type != a.type or p.payload != a.payload:
        found.append("agreement payload differs from the proposal's")
    if not found:
        return []
    return [Problem(LINK, a.author, a.seq, detail) for detail in found]
