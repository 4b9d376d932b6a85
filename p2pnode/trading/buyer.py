"""The buyer's side of a trade, pure: what to ask for, when to give a seller up.

:class:`Purchase` is the buyer's bookkeeping of one trade from agreement to delivery;
:class:`Buying` one interval's need.  The shell (:mod:`p2pnode.node`) discovers, ranks and
sends; these say how much to ask and what a denial means.
"""

from __future__ import annotations

import dataclasses

from ledger import TradePayload

__all__ = ["Buying", "Purchase", "GIVE_UP_REASONS", "RECONFIRM_TRIES", "Unconfirmed", "want_wh"]

# a seller that answers one of these has nothing more for us this interval
GIVE_UP_REASONS = frozenset({"sold_out", "unknown_offer", "closed", "gate_closed", "not_selling",
                             "price_below_ask", "trade_id_reused", "buyer_limit",
                             "no_credit", "bad_credit_proof"})
RECONFIRM_TRIES = 4   # times an agreement whose CONFIRM got no answer is sent again


@dataclasses.dataclass
class Purchase:
    """A trade this node bought, from agreement to delivery."""

    payload: TradePayload
    endpoint: str
    agreement_raw: bytes
    decision_ms: float
    messages: int
    delivered_wh: int | None = None   # set once the delivery is co-signed
    duration_ms: int | None = None
    imbalance_micro: int = 0

    @property
    def settled(self) -> bool:
        return self.delivered_wh is not None

    @property
    def received_wh(self) -> int:
        """What the trade brings us: delivered once settled, until then what was agreed."""
        return self.delivered_wh if self.settled else self.payload.energy_wh


@dataclasses.dataclass
class Buying:
    """One interval's need (forecast in real time, metered ex post and in the balancing round)
    and what was bought."""

    deficit_wh: int
    remaining_wh: int
    trades: list[Purchase] = dataclasses.field(default_factory=list)
    excluded: set[bytes] = dataclasses.field(default_factory=set)
    hedged: bool = False   # the need was set once from the offers' prices (trading.hedging)
    discoveries: int = 0   # DHT discoveries made for it (see trading.schedule.rediscover_at)
    found_offers: bool = False   # whether any discovery found an offer for the interval
    found_new: bool = True   # whether the last discovery found energy no earlier one offered
    offered_wh: dict[bytes, int] = dataclasses.field(default_factory=dict)  # most seen, by seller
    measured: bool = False   # the balancing round's need: metered, bought as it is

    def found(self, offers) -> None:
        """Note what a discovery found (offer records of the interval): ``found_new`` says
        whether a seller we may still ask offered more than any earlier look showed (a seller
        late to publish, energy a lapsed reservation freed); looking again after a look that
        found nothing new would find the same."""
        self.found_offers = self.found_offers or bool(offers)
        self.found_new = False
        for offer in offers:
            if offer.seller not in self.excluded \
                    and offer.energy_wh > self.offered_wh.get(offer.seller, 0):
                self.offered_wh[offer.seller] = offer.energy_wh
                self.found_new = True

    def hedge(self, quantity_wh: int) -> None:
        """Buy ``quantity_wh`` in all instead of the forecast need (once, before buying)."""
        if not self.hedged:
            self.remaining_wh += quantity_wh - self.deficit_wh
            self.deficit_wh, self.hedged = quantity_wh, True

    def bought(self, purchase: Purchase) -> None:
        self.trades.append(purchase)
        self.remaining_wh -= purchase.payload.energy_wh


def want_wh(remaining_wh: int, offered_wh: int, max_trade_wh: int, credit_micro: int,
            price_micro_per_kwh: int) -> int:
    """What to request of one offer: the need, at most the offer, the limit and the credit."""
    affordable = credit_micro * 1000 // max(price_micro_per_kwh, 1)
    return max(0, min(remaining_wh, offered_wh, max_trade_wh, affordable))


@dataclasses.dataclass
class Unconfirmed:
    """An agreement of ours whose CONFIRM no seller answered with DONE: the seller may not hold
    it, so it cannot deliver, and our credit for the trade stays escrowed until it does.  The
    shell sends it again (a fresh request, the same agreement block) at each of its next opens."""

    endpoint: str
    offer_id: bytes
    tries: int = 0

    def answered(self, done: bool | None) -> str:
        """What one more try came to (``done``: the reply was DONE; False: refused; None: no
        reply): ``"reconfirmed"``, ``"retry"`` (no reply yet, tries left) or
        ``"unconfirmed_given_up"`` (refused, or :data:`RECONFIRM_TRIES` tries unanswered)."""
        self.tries += 1
        if done:
            return "reconfirmed"
        if done is None and self.tries < RECONFIRM_TRIES:
            return "retry"
        return "unconfirmed_given_up"
