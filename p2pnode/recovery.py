"""What a restarted buyer still has to settle, read back from its own ledger.

A node keeps its pending settlements in memory (``Node._unsettled``); after a restart they are
rebuilt from the ledger: every trade this node bought (a TRADE agreement on its own chain)
whose settlement the seller has not co-signed (no SETTLEMENT agreement by the seller linked to
our proposal) is pending again.  If our settlement proposal is already written it is the one
to resend -- a trade is settled once (the ledger refuses a second settlement) -- so the
proposal's sequence number comes with the trade; :meth:`Node.settle` reuses it.

The seller's endpoint is not in the blocks; it is read from the store's ``peer_endpoints``
table, where :meth:`Ledger.agree` wrote it with the agreement.  Trades agreed before that
table existed have none (``endpoint is None``): they stay pending and counted.
"""

from __future__ import annotations

import dataclasses

from ledger import Ledger, TradePayload

__all__ = ["PendingPurchase", "pending_purchases"]


@dataclasses.dataclass(frozen=True)
class PendingPurchase:
    payload: TradePayload
    agreement_raw: bytes          # our TRADE agreement, which a SETTLE carries
    endpoint: str | None          # the seller's host:port when the trade was agreed
    settlement_seq: int = 0       # our SETTLEMENT proposal already written (0: none yet)


def pending_purchases(ledger: Ledger) -> list[PendingPurchase]:
    """Trades ``ledger``'s owner bought that the seller has not co-settled, in chain order.

    A stored block linking to our settlement proposal is the seller's agreement: counterparty
    agreements are stored only after :func:`ledger.rules.check_pair` (by the named seller).
    """
    me, store = ledger.key.public, ledger.store
    agreed = store.agreed_seqs(me)
    return [PendingPurchase(trade.payload, ledger.own_block(trade.seq).raw,
                            store.endpoint(trade.payload.trade_id), trade.settlement_seq)
            for trade in ledger.state.trades.values()
            if trade.payload.buyer == me and trade.settlement_seq not in agreed]
