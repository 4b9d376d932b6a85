"""What a restarted node reads back from its own ledger: what a seller still has to deliver,
and its deposits (the credit a buyer shows sellers, p2pnode/trading/credit.py).

A seller settles its trades (:meth:`p2pnode.node.Node.settle`): after the interval it proposes
a DELIVERY per confirmed trade and its buyer agrees.  What is not co-settled yet is kept in
memory; after a restart it is rebuilt from the ledger: every trade this node sold whose buyer
agreed (the buyer's TRADE agreement is stored) and whose DELIVERY the buyer has not agreed.  A
DELIVERY already written is resent as it is -- the ledger refuses a second settlement -- and one
not written yet is measured at the next settle.  The buyer's endpoint comes from the store's
``peer_endpoints`` table, written with the proposal.  A buyer needs nothing reloaded: it answers
a DELIVER from its ledger.
"""

from __future__ import annotations

from ledger import BlockBody, BlockType, Ledger, decode_envelope

__all__ = ["undelivered_sales", "mint_seqs", "own_deposits"]


def undelivered_sales(ledger: Ledger) -> set[bytes]:
    """Trade ids ``ledger``'s owner sold, its buyer agreed to, and that are not co-settled."""
    me = ledger.key.public
    agreed = ledger.store.agreed_seqs(me)
    return {trade_id for trade_id, trade in ledger.state.trades.items()
            if trade.payload.seller == me and trade.seq in agreed
            and trade.settlement_seq not in agreed}


def mint_seqs(ledger: Ledger) -> dict[int, int]:
    """Interval start -> the sequence number of our MINT block of it."""
    out = {}
    for raw in ledger.store.chain(ledger.key.public):
        body = decode_envelope(raw, BlockBody)[0].message
        if body.type is BlockType.MINT:
            out[body.payload.reading.interval_start_s] = body.seq
    return out


def own_deposits(ledger: Ledger) -> list[tuple[int, bytes]]:
    """Our DEPOSIT blocks as (voucher µ, raw block): the credit evidence a buyer shows."""
    out = []
    for raw in ledger.store.chain(ledger.key.public):
        body = decode_envelope(raw, BlockBody)[0].message
        if body.type is BlockType.DEPOSIT:
            out.append((body.payload.voucher.amount_micro, raw))
    return out
