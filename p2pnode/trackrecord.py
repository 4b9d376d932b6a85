"""A seller's track record as evidence: served by the seller, verified by the buyer (pure).

A seller's chain already proves how it delivered: every DELIVERY settlement it proposed (the
delivered vs agreed energy its meter measured, the duration) is a block it signed, and the
buyer's agreement to it is a block the buyer signed.  So a buyer never takes a seller's word for
its record; it asks the seller for a *contiguous segment of its chain* (peer message
``Kind.RECORD``, paged to fit :data:`~p2pnode.negotiation.MAX_PEER_MESSAGE_BYTES`) with the
buyers' agreement after each DELIVERY proposal, and checks it here:

* every block decodes and its signature verifies (``bad_signature``, ``malformed``);
* the seller's blocks are its own (``foreign_block``: a record of another key), numbered
  ``from_seq, from_seq + 1, ...`` (``reordered``; ``gap`` when one is missing) and hash-linked:
  each block's ``prev`` is the hash of the one before, the first one's the hash of the last
  block verified before (``broken_chain``).  A settlement cannot be left out of the middle of
  a segment without breaking the links;
* the segment reaches the head the seller claims, and that head is not behind a block of the
  seller the buyer holds itself (``truncated``: a record cut short before a bad settlement);
  a served block that differs from the one the buyer holds at that sequence number is a
  ``fork`` (the seller rewrote its chain);
* each agreement is the named buyer's countersignature of a DELIVERY proposal of the segment
  (``bad_agreement``).

A page that fails any check is rejected whole, with the reason; the caller counts it and
penalises the seller (:meth:`p2pnode.reputation.Reputation.penalise`).  A DELIVERY proposal
served without its buyer's agreement is still the seller's own signed statement: its shortfall
counts against the seller, its delivery is not credited.  A TRADE the seller proposed whose
interval ended more than :data:`SETTLE_GRACE_S` before the seller's latest verified block without
a DELIVERY is *overdue*: the seller did not settle it (or its buyer never confirmed it).
A settlement of a trade proposed once its interval was over (:func:`ledger.agreed_after`: the
ex-post market, the balancing round) is marked ``spot``: the energy was metered before it was
sold.

What this cannot catch: a seller that rewrote its chain before any buyer who held the original
asked (TrustChain's limit; the buyer that co-signed the original detects the fork), and trades
with buyers that are the seller's own fresh keys (sybil): :mod:`p2pnode.reputation` caps what
each counterparty's settlements count and what share of the demand a seller without a record
gets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from ledger import (
    BlockBody, BlockType, DecodeError, DeliveryPayload, agreed_after, check_pair, decode_envelope,
    open_envelope,
)
from ledger.sealed import Sealed

__all__ = ["PROBLEMS", "PageCheck", "RecordCursor", "Settlement", "SETTLE_GRACE_S",
           "RECORD_WINDOW_BLOCKS", "page_for", "verify_page"]

RECORD_WINDOW_BLOCKS = 96    # a first look at a seller starts this many blocks before its head
SETTLE_GRACE_S = 2 * 3600    # a trade not settled this long after its interval ended is overdue
PROBLEMS = ("malformed", "bad_signature", "foreign_block", "reordered", "gap", "broken_chain",
            "truncated", "fork", "bad_agreement")


@dataclasses.dataclass(frozen=True)
class Settlement:
    """One DELIVERY settlement of a seller, as evidence."""

    trade_id: bytes
    seller: bytes
    buyer: bytes
    agreed_wh: int
    delivered_wh: int
    duration_ms: int
    time_ms: int
    cosigned: bool   # the buyer's agreement was verified (or we are the buyer)
    spot: bool = False   # agreed once its interval was over (:func:`ledger.agreed_after`)
    price_micro_per_kwh: int = 0   # the agreed price

    @classmethod
    def of(cls, payload: DeliveryPayload, time_ms: int, cosigned: bool,
           spot: bool = False) -> Settlement:
        return cls(payload.trade_id, payload.seller, payload.buyer, payload.agreed_wh,
                   payload.delivered_wh, payload.duration_ms, time_ms, cosigned, spot,
                   payload.price_micro_per_kwh)

    @property
    def shows_delivery(self) -> bool:
        """Whether it tells how its seller delivers what it sold ahead: not a spot trade's,
        which is delivered in full by construction (one claimed spot and delivered short
        still counts: a seller cannot hide a shortfall by dating its proposal late)."""
        return not self.spot or self.delivered_wh < self.agreed_wh



@dataclasses.dataclass(frozen=True)
class RecordCursor:
    """How far a buyer verified one seller's chain: the next page must link to ``head``."""

    seller: bytes
    head_seq: int = 0
    head_hash: bytes = b""
    first_time_ms: int = 0                         # the oldest verified block: the record's age
    open_trades: tuple[tuple[bytes, int, int, bool], ...] = ()   # (trade id, interval start,
                                                                  # Wh, agreed after it)


@dataclasses.dataclass(frozen=True)
class PageCheck:
    """The outcome of one page: the cursor after it and the evidence in it, or a problem."""

    cursor: RecordCursor
    settlements: tuple[Settlement, ...] = ()
    overdue: tuple[tuple[bytes, int], ...] = ()    # (trade id, agreed Wh) not settled in time
    problem: str | None = None


def page_for(chain: Sequence[bytes], agreements_of: Callable[[int], list[bytes]],
             budget_bytes: int, max_blocks: int) -> list[bytes]:
    """The seller's page: its blocks in order, each DELIVERY proposal followed by the buyer's
    agreement, as many as fit ``budget_bytes`` and ``max_blocks`` (at least one block)."""
    page, size = [], 0
    for raw in chain:
        body = decode_envelope(raw, BlockBody)[0].message   # our own blocks: no check
        extra = agreements_of(body.seq)[:1] if body.type is BlockType.SETTLEMENT \
            and body.is_proposal else []
        group = [raw, *extra]
        cost = sum(len(r) + 8 for r in group)
        if page and (size + cost > budget_bytes or len(page) + len(group) > max_blocks):
            break
        page.extend(group)
        size += cost
    return page


def verify_page(seller: bytes, raws: Sequence[bytes], *, from_seq: int, claimed_head: int,
                cursor: RecordCursor, known: Callable[[int], bytes | None], known_head: int,
                now_s: float, interval_s: int) -> PageCheck:
    """Check one served page (see the module doc); ``known(seq)`` is the block of the seller
    the buyer holds at ``seq`` (or None), ``known_head`` the highest such seq."""
    blocks = []
    for raw in raws:
        try:
            block, signature_ok = open_envelope(raw, BlockBody)
        except DecodeError:
            return PageCheck(cursor, problem="malformed")
        if not signature_ok:
            return PageCheck(cursor, problem="bad_signature")
        blocks.append(block)
    chain = [b for b in blocks if b.message.author == seller]
    agreements = [b for b in blocks if b.message.author != seller]
    problem = _chain_problem(chain, from_seq, claimed_head, cursor, known, known_head)
    if problem is None:
        problem = _agreement_problem(seller, chain, agreements)
    if problem is not None:
        return PageCheck(cursor, problem=problem)
    return _fold(cursor, chain, {a.message.link_seq for a in agreements}, now_s, interval_s)


def _chain_problem(chain: list[Sealed[BlockBody]], from_seq: int, claimed_head: int,
                   cursor: RecordCursor, known: Callable[[int], bytes | None],
                   known_head: int) -> str | None:
    if claimed_head < max(known_head, cursor.head_seq) or (not chain and from_seq <= claimed_head):
        return "truncated"
    seqs = [b.message.seq for b in chain]
    expected = list(range(from_seq, from_seq + len(chain)))
    if seqs != expected:
        return "reordered" if sorted(seqs) == expected else "gap"
    if chain and chain[-1].message.seq > claimed_head:
        return "truncated"
    previous = cursor.head_hash if cursor.head_seq == from_seq - 1 and cursor.head_seq else None
    for block in chain:
        if previous is not None and block.message.prev != previous:
            return "broken_chain"
        previous = block.hash
        held = known(block.message.seq)
        if held is not None and held != block.raw:
            return "fork"
    return None


def _agreement_problem(seller: bytes, chain: list[Sealed[BlockBody]],
                       agreements: list[Sealed[BlockBody]]) -> str | None:
    proposals = {b.message.seq: b for b in chain
                 if b.message.type is BlockType.SETTLEMENT and b.message.is_proposal}
    for agreement in agreements:
        body = agreement.message
        proposal = proposals.get(body.link_seq)
        if body.link_key != seller or proposal is None:
            return "foreign_block"
        payload = proposal.message.payload
        if check_pair(proposal, agreement) or getattr(payload, "buyer", None) != body.author:
            return "bad_agreement"
    return None


def _fold(cursor: RecordCursor, chain: list[Sealed[BlockBody]], cosigned_seqs: set[int],
          now_s: float, interval_s: int) -> PageCheck:
    open_trades = {t[0]: t for t in cursor.open_trades}
    settlements = []
    for block in chain:
        body = block.message
        if body.type is BlockType.TRADE and body.is_proposal:
            p = body.payload
            open_trades[p.trade_id] = (p.trade_id, p.interval_start_s, p.energy_wh,
                                       agreed_after(p.interval_start_s, interval_s, body.time_ms))
        elif body.type is BlockType.SETTLEMENT and body.is_proposal \
                and isinstance(body.payload, DeliveryPayload):
            trade = open_trades.pop(body.payload.trade_id, None)
            settlements.append(Settlement.of(body.payload, body.time_ms,
                                             body.seq in cosigned_seqs,
                                             spot=trade is not None and trade[3]))
    latest_s = (chain[-1].message.time_ms if chain else 0) / 1000   # how far the chain goes
    cutoff = min(now_s, latest_s) - SETTLE_GRACE_S - interval_s
    overdue = tuple((tid, wh) for tid, start, wh, _ in open_trades.values() if start < cutoff)
    still_open = tuple(t for t in open_trades.values() if t[1] >= cutoff)
    if chain:
        first = cursor.first_time_ms or chain[0].message.time_ms
        cursor = RecordCursor(cursor.seller, chain[-1].message.seq, chain[-1].hash, first,
                              still_open)
    else:
        cursor = dataclasses.replace(cursor, open_trades=still_open)
    return PageCheck(cursor, tuple(settlements), overdue)
