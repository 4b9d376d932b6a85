"""A node's own chain: build, validate, sign and durably append its blocks.

:class:`Ledger` owns one key and writes only that key's chain; counterparty half-blocks it
receives (a seller's trade proposal, a buyer's agreement) are checked and stored beside it so
either party can prove a trade.  Every append is validated by :mod:`ledger.rules` *before* it is
signed and is durable when the call returns (or, inside :meth:`Ledger.batch`, when the batch
exits).  All calls are idempotent by trade id: agreeing to the same proposal twice returns the
first agreement instead of spending twice.

Signatures are checked once per block, never again:

* the own chain is verified when the ledger is opened; after that its blocks are this node's
  own signatures and are read back without a check;
* a counterparty block is checked before a Ledger stores it, so bytes identical to a stored
  block are known good (a ledger database is written through Ledgers only: the low-level
  ``LedgerStore.add`` checks no signature);
* a counterparty block may be passed as a ``Sealed`` whose signature the caller already checked
  (``sealed.verified``, set by :func:`~ledger.sealed.open_envelope`): it is not checked again.
  Raw bytes, or a ``Sealed`` that is not ``verified``, are checked here.

The clock is passed in (``time_ms``), never read here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ledger.block import (
    BlockBody, BlockType, CreditVoucher, DeliveryPayload, DepositPayload, GridPayload, MeterReading,
    MintPayload,
    SettlementPayload, TradePayload,
)
from ledger.errors import BlockRejected, DecodeError, StoreError
from ledger.headmark import LostTail
from ledger.keys import SigningKey
from ledger.rules import (
    FORK, LINK, SIGNATURE, ChainState, LedgerRules, Problem, check_block, check_pair,
)
from ledger.sealed import Sealed, decode_envelope, open_envelope, seal
from ledger.store import AddResult, LedgerStore

__all__ = ["Ledger"]

Block = Sealed[BlockBody]


class Ledger:
    """The chain of ``key`` in ``store``."""

    def __init__(self, store: LedgerStore, key: SigningKey, rules: LedgerRules = LedgerRules()):
        self.store, self.key, self.rules = store, key, rules
        self._replay()

    def _replay(self) -> None:
        """Rebuild the chain state from the database (on open, and after a rolled-back group)."""
        self.state = ChainState(self.key.public)
        for raw in self.store.chain(self.key.public):
            try:
                block, signature_ok = open_envelope(raw, BlockBody)
            except DecodeError as exc:
                raise StoreError(f"{self.store.path}: own block #{self.state.seq + 1}: {exc}") from exc
            problems = check_block(block, signature_ok, self.state, self.rules)
            if problems:
                raise StoreError(f"{self.store.path}: own chain is invalid: {problems[0]}")
            self.state.apply(block)
        marked = self.store.marks.get(self.key.public, 0)
        if marked > self.state.seq:
            raise LostTail(self.store.path, self.key.public, self.state.seq, marked)

    # -- balances ---------------------------------------------------------------------------
    @property
    def credit_micro(self) -> int:
        return self.state.credit_micro

    def tokens_wh(self, interval_start_s: int) -> int:
        return self.state.tokens_for(interval_start_s)

    # -- grouping ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group appends into one durable transaction (group commit, see LedgerStore.group).

        Nothing appended inside is durable -- or may be acknowledged to a peer -- before the
        block exits.  On an exception everything inside is rolled back, in memory too.  Never
        ``await`` inside a batch: another task's appends would join it, and that task could
        acknowledge them before they are durable.
        """
        try:
            with self.store.group():
                yield
        except BaseException:
            self._replay()
            raise

    # -- appending ----------------------------------------------------------------------------
    def _append(self, kind: BlockType, payload, time_ms: int, *, link: Block | None = None,
                counterparty: bytes = b"", extra: tuple[Block, ...] = (),
                endpoint: str | None = None) -> Block:
        body = BlockBody(
            author=self.key.public, seq=self.state.seq + 1, prev=self.state.head, type=kind,
            payload=payload, link_key=link.message.author if link else counterparty,
            link_seq=link.message.seq if link else 0, link_hash=link.hash if link else b"",
            time_ms=time_ms,
        )
        block = seal(body, self.key)
        problems = check_block(block, True, self.state, self.rules)
        if link is not None:
            problems += check_pair(link, block)
        if problems:
            raise BlockRejected(problems)
        with self.store.group():   # the blocks and the endpoint: one transaction
            self.store.add((*extra, block))
            self.store.mark_head(self.key.public, body.seq)
            if endpoint is not None:
                self.store.set_endpoint(payload.trade_id, body.link_key, endpoint)
        self.state.apply(block)
        return block

    def mint(self, reading: Sealed[MeterReading], tokens_wh: int, time_ms: int) -> Block:
        """Tokens for a signed reading (by this node's key or by a trusted meter key)."""
        own = reading.message.meter == self.key.public
        payload = MintPayload(reading.message, b"" if own else reading.signature, tokens_wh)
        return self._append(BlockType.MINT, payload, time_ms)

    def deposit(self, voucher: Sealed[CreditVoucher], time_ms: int) -> Block:
        return self._append(BlockType.DEPOSIT, DepositPayload(voucher.message, voucher.signature),
                            time_ms)

    def record_grid(self, payload: GridPayload, time_ms: int) -> Block:
        return self._append(BlockType.GRID, payload, time_ms)

    def propose_trade(self, trade: TradePayload, time_ms: int) -> Block:
        """The seller's half: reserve the interval's tokens for ``trade``."""
        existing = self.state.trades.get(trade.trade_id)
        if existing is not None and existing.payload == trade:
            return self.own_block(existing.seq)
        return self._append(BlockType.TRADE, trade, time_ms, counterparty=trade.buyer)

    def propose_settlement(self, settlement: SettlementPayload | DeliveryPayload, time_ms: int
                           ) -> Block:
        """Our half of a settlement: a seller's DELIVERY (its meter measured the delivery) or,
        in ledgers of the ex-post market, the buyer's SettlementPayload."""
        trade = self.state.trades.get(settlement.trade_id)
        if trade is not None and trade.settled:
            own = self.own_block(trade.settlement_seq)
            if own.message.payload == settlement:
                return own
        counterparty = settlement.buyer if settlement.seller == self.key.public else settlement.seller
        return self._append(BlockType.SETTLEMENT, settlement, time_ms, counterparty=counterparty)

    def agree(self, proposal: bytes | Block, time_ms: int, *, endpoint: str | None = None
              ) -> Block:
        """Countersign a counterparty's TRADE or SETTLEMENT proposal (idempotent).

        ``proposal``: its raw bytes, or the ``Sealed`` block (checked here unless ``verified``).
        ``endpoint``: where the proposer answers (``host:port``), stored in the same
        transaction as the agreement (:meth:`LedgerStore.set_endpoint`), so a restarted node
        can still reach it to settle.

        Refused (``fork``) when the proposer equivocated: a fork proof of it is stored, or this
        proposal takes a (author, seq) slot another of its blocks holds (the proof is stored
        then).  A chain that forked -- e.g. a node that lost its tail and wrote on -- gets no
        countersignature, so the honest chain never links to a block that conflicts with one
        it holds.
        """
        proposal = self._counterparty_block(proposal)
        body = proposal.message
        if not body.is_proposal or body.link_key != self.key.public:
            raise BlockRejected([Problem(LINK, body.author, body.seq,
                                         "not a proposal addressed to this node")])
        self._refuse_equivocator(proposal)
        for raw in self.store.linked_to(body.author, body.seq):
            agreement = _stored_block(raw)
            if agreement.message.author == self.key.public:
                if endpoint is not None:
                    self.store.set_endpoint(body.payload.trade_id, body.author, endpoint)
                return agreement  # already agreed: answer the retransmission with the same block
        return self._append(body.type, body.payload, time_ms, link=proposal, extra=(proposal,),
                            endpoint=endpoint)

    def _refuse_equivocator(self, proposal: Block) -> None:
        body = proposal.message
        held = self.store.get(body.author, body.seq)
        if held is not None and held != proposal.raw:
            self.store.add([proposal])   # records the fork proof (and keeps the first block)
        if self.store.has_fork(body.author):
            raise BlockRejected([Problem(FORK, body.author, body.seq,
                                         "the proposer equivocated: a fork proof is held")])

    def accept_agreement(self, agreement: bytes | Block) -> Block:
        """Store the counterparty's agreement to one of our proposals (idempotent).

        ``agreement``: its raw bytes, or the ``Sealed`` block (checked unless ``verified``).  An
        agreement already stored with the very same bytes is not checked or written again.
        """
        raw = agreement.raw if isinstance(agreement, Sealed) else agreement
        block = _stored_block(raw)   # DecodeError if malformed; the signature is checked below
        body = block.message
        own_raw = self.store.get(self.key.public, body.link_seq) if body.link_key == self.key.public else None
        if own_raw is None:
            raise BlockRejected([Problem(LINK, body.author, body.seq,
                                         "does not agree to a proposal of this node")])
        problems = check_pair(_stored_block(own_raw), block)
        if problems:
            raise BlockRejected(problems)
        if self.store.get(body.author, body.seq) == raw:
            return block   # stored before, so checked before: a retransmission
        agreement = self._counterparty_block(agreement)
        result = self.store.add([agreement])[0]
        if result is AddResult.FORK:
            raise BlockRejected([Problem(LINK, body.author, body.seq,
                                         "counterparty equivocated: fork proof recorded")])
        return agreement

    def _counterparty_block(self, block: bytes | Block) -> Block:
        """The counterparty's block with its signature checked (once: see the module doc)."""
        if isinstance(block, Sealed):
            if block.verified and isinstance(block.message, BlockBody):
                return block
            block = block.raw
        sealed, signature_ok = open_envelope(block, BlockBody)
        if not signature_ok:
            body = sealed.message
            raise BlockRejected([Problem(SIGNATURE, body.author, body.seq,
                                         "signature does not verify")])
        return sealed

    def own_block(self, seq: int) -> Block:
        """This node's block ``seq`` (its own signature: read back without a check)."""
        raw = self.store.get(self.key.public, seq)
        if raw is None:
            raise StoreError(f"{self.store.path}: own block #{seq} is missing")
        return _stored_block(raw)


def _stored_block(raw: bytes) -> Block:
    """Decode a block whose signature is checked elsewhere (stored blocks were checked before
    they were stored; see the module doc).  Not ``verified``: it is never passed on as such."""
    return decode_envelope(raw, BlockBody)[0]
