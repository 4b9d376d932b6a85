"""The seller's side of a trade, pure: what to grant, what to deliver.

A :class:`SellerBook` holds this node's offer of each open interval and answers the questions
the shell (:mod:`p2pnode.node`) asks when a buyer's message arrives; the shell does the I/O
(ledger appends, replies, republishing).  No clock, socket or randomness here: ``now_ms`` and
the ledger's state are passed in.

Limits against buyers that only take (each one a reason a REQUEST is denied):

* ``gate_closed``   the interval's trading gate has passed (:func:`~p2pnode.trading.schedule.gate_s`);
* ``buyer_limit``   one buyer holds at most :data:`MAX_OPEN_PROPOSALS_PER_BUYER` unconfirmed
  proposals of one interval, and a key with no confirmed trade with us yet gets at most
  ``new_buyer_share`` of the offer;
* ``no_credit``     the buyer's proven credit (:mod:`p2pnode.trading.credit`: the vouchers it
  showed) does not cover a single Wh more after what it owes us -- its open reservations here
  and its confirmed trades not yet delivered; a grant is cut to what the credit covers;
* reservations expire: a proposal not confirmed within :data:`RESERVATION_MS` gives its energy
  back to the offer (:meth:`SellerBook.expire`); a CONFIRM arriving later is still stored (the
  buyer agreed) but the energy may have been sold again -- the delivery rule shares what was
  measured, so an oversold interval shows as a shortfall, never as energy counted twice.
"""

from __future__ import annotations

import dataclasses

from ledger import cost_micro
from p2pnode.negotiation import PeerRequest
from p2pnode.trading.credit import CreditEvidence

__all__ = ["Offer", "SellerBook", "MAX_OPEN_PROPOSALS_PER_BUYER", "RESERVATION_MS",
           "NEW_BUYER_SHARE"]

MAX_OPEN_PROPOSALS_PER_BUYER = 4
RESERVATION_MS = 60_000
NEW_BUYER_SHARE = 1.0   # share of an offer a key with no confirmed trade may hold


@dataclasses.dataclass
class Offer:
    """One interval's offer and what buyers did with it."""

    interval_start_s: int
    surplus_wh: int                 # forecast (real time) or metered (ex post) surplus
    available_wh: int
    price_micro_per_kwh: int
    gate_s: float = 0.0             # no REQUEST accepted from then on
    record: object | None = None    # the Sealed[OfferRecord] published, if any
    proposed: dict[bytes, int] = dataclasses.field(default_factory=dict)     # trade id -> Wh
    proposed_at_ms: dict[bytes, int] = dataclasses.field(default_factory=dict)
    buyer_of: dict[bytes, bytes] = dataclasses.field(default_factory=dict)    # trade id -> key
    confirmed: dict[bytes, int] = dataclasses.field(default_factory=dict)
    released: set[bytes] = dataclasses.field(default_factory=set)
    cost_micro: dict[bytes, int] = dataclasses.field(default_factory=dict)   # trade id -> µ
    credit_seq: dict[bytes, int] = dataclasses.field(default_factory=dict)   # evidence shown
    requested_wh: int = 0
    closed: bool = False

    @property
    def offered_wh(self) -> int:
        """What the offer puts up: still available plus what buyers hold (not released)."""
        return max(0, self.available_wh) + sum(wh for tid, wh in self.proposed.items()
                                       if tid not in self.released)

    def open_proposals(self, buyer: bytes) -> int:
        return sum(1 for tid, who in self.buyer_of.items()
                   if who == buyer and tid not in self.confirmed and tid not in self.released)


class SellerBook:
    """This node's offers by interval, and the seller's decisions on them."""

    def __init__(self, *, new_buyer_share: float = NEW_BUYER_SHARE):
        self.new_buyer_share = new_buyer_share
        self.offers: dict[int, Offer] = {}      # the real-time (or ex-post) offer of an interval
        self.ahead: dict[int, Offer] = {}       # the day-ahead offer of an interval
        self.balancing: dict[int, Offer] = {}   # the balancing round's offer (metered, unsold)
        self.known_buyers: set[bytes] = set()   # keys with a confirmed trade with us

    def open(self, interval_start_s: int, surplus_wh: int, offered_wh: int, price: int, *,
             gate_s: float, day_ahead: bool = False, balancing: bool = False) -> Offer:
        offer = Offer(interval_start_s, surplus_wh, max(0, offered_wh), price, gate_s)
        book = self.ahead if day_ahead else self.balancing if balancing else self.offers
        book[interval_start_s] = offer
        return offer

    def _of(self, interval_start_s: int) -> list[Offer]:
        """The interval's open offers: real-time (or ex-post), day-ahead, balancing."""
        return [offer for book in (self.offers, self.ahead, self.balancing)
                if (offer := book.get(interval_start_s)) is not None]

    def _all(self) -> list[Offer]:
        return [*self.offers.values(), *self.ahead.values(), *self.balancing.values()]

    def reprice(self, interval_start_s: int, offered_wh: int, price: int) -> Offer | None:
        """The real-time offer of the interval at a new price and quantity (before buyers
        come: what is already reserved stays reserved); None when there is no open offer."""
        offer = self.offers.get(interval_start_s)
        if offer is None or offer.closed:
            return None
        reserved = sum(wh for tid, wh in offer.proposed.items() if tid not in offer.released)
        offer.price_micro_per_kwh = price
        offer.available_wh = max(0, offered_wh - reserved)
        return offer

    def find(self, interval_start_s: int, offer_id: bytes) -> Offer | None:
        """The offer of that interval a REQUEST names (real-time, day-ahead or balancing)."""
        return next((offer for offer in self._of(interval_start_s) if offer.record is not None
                     and offer.record.message.offer_id == offer_id), None)

    def sold_ahead_wh(self, interval_start_s: int) -> int:
        """Energy of the interval sold (confirmed) in the day-ahead market: the position."""
        offer = self.ahead.get(interval_start_s)
        return sum(offer.confirmed.values()) if offer is not None else 0

    def decide(self, request: PeerRequest, *, now_s: float, sells: bool, max_trade_wh: int,
               trade_known: bool, tokens_wh: int | None, credit: CreditEvidence | None = None,
               owed_micro: int = 0) -> int | str:
        """Energy to grant ``request`` (a REQUEST), or the reason it is denied.

        ``sells``, ``max_trade_wh``: the user's constraints now (FR-14, changeable at run time).
        ``tokens_wh``: unsold minted tokens of the interval (ex post), None when the interval is
        sold forward (its energy is measured on delivery).  ``credit``: what the buyer's
        evidence proves (:func:`p2pnode.trading.credit.proven_credit`; None: not checked, for
        callers that hold no evidence); ``owed_micro``: what the buyer owes us for confirmed
        trades not yet delivered.
        """
        offer = self.find(request.interval_start_s, request.offer_id)
        if not sells:
            return "not_selling"
        if offer is None:
            return "unknown_offer"
        offer.requested_wh += request.energy_wh
        if offer.closed or now_s >= offer.gate_s:
            return "gate_closed"
        if request.price_micro_per_kwh < offer.price_micro_per_kwh:
            return "price_below_ask"
        if request.trade_id in offer.proposed or trade_known:
            return "trade_id_reused"
        if offer.open_proposals(request.sender) >= MAX_OPEN_PROPOSALS_PER_BUYER:
            return "buyer_limit"
        grant = min(request.energy_wh, offer.available_wh, max_trade_wh)
        if credit is not None:
            room = credit.credit_micro - owed_micro - self.reserved_micro(request.sender)
            covered = room * 1000 // max(request.price_micro_per_kwh, 1) if room > 0 else 0
            if covered <= 0:
                return "no_credit"
            grant = min(grant, covered)
        if tokens_wh is not None:
            grant = min(grant, tokens_wh)
        if request.sender not in self.known_buyers:
            grant = min(grant, self._new_buyer_room(offer, request.sender))
        return grant if grant > 0 else "sold_out"

    def reserved_micro(self, buyer: bytes) -> int:
        """The cost of ``buyer``'s proposals in our open offers it has not confirmed yet."""
        return sum(offer.cost_micro.get(tid, 0)
                   for offer in self._all()
                   for tid, who in offer.buyer_of.items()
                   if who == buyer and tid not in offer.confirmed and tid not in offer.released)

    def agreement_problem(self, interval_start_s: int, trade_id: bytes, agreement_seq: int
                          ) -> str | None:
        """Why the buyer's agreement (at ``agreement_seq`` of its chain) cannot be accepted:
        it comes before the deposit it showed as credit (its chain spends before it was paid
        in); None when it can (or the proposal is no longer in an open offer)."""
        for offer in self._of(interval_start_s):
            if agreement_seq <= offer.credit_seq.get(trade_id, 0):
                return "agreement_before_credit"
        return None

    def _new_buyer_room(self, offer: Offer, buyer: bytes) -> int:
        """What a key we never traded with may still take of this offer: its share of what
        the offer puts up (not of the median forecast surplus: an offer hedged above the median,
        or a chance offer whose median is no surplus at all, is for sale in full)."""
        held = sum(wh for tid, wh in offer.proposed.items()
                   if offer.buyer_of[tid] == buyer and tid not in offer.released)
        return max(0, int(offer.offered_wh * self.new_buyer_share) - held)

    def granted(self, request: PeerRequest, grant_wh: int, now_ms: int, *,
                credit_seq: int = 0) -> Offer:
        """The proposal for ``request`` is committed: reserve its energy (and the buyer's
        credit; ``credit_seq``: the chain position of the deposits it showed)."""
        offer = self.find(request.interval_start_s, request.offer_id)
        offer.available_wh -= grant_wh
        offer.proposed[request.trade_id] = grant_wh
        offer.cost_micro[request.trade_id] = cost_micro(grant_wh, request.price_micro_per_kwh)
        offer.credit_seq[request.trade_id] = credit_seq
        offer.proposed_at_ms[request.trade_id] = now_ms
        offer.buyer_of[request.trade_id] = request.sender
        return offer

    def confirmed(self, interval_start_s: int, trade_id: bytes, buyer: bytes, energy_wh: int
                  ) -> bool:
        """The buyer's agreement is stored; True when it is late: no open offer holds the trade
        (the interval closed, or the proposal is from before a restart)."""
        self.known_buyers.add(buyer)
        offer = next((o for o in self._of(interval_start_s) if trade_id in o.proposed), None)
        if offer is None or trade_id in offer.confirmed:
            return offer is None
        offer.confirmed[trade_id] = energy_wh
        if trade_id in offer.released:   # confirmed after its reservation expired
            offer.released.discard(trade_id)
            offer.available_wh -= energy_wh
        return offer.closed

    def expire(self, now_ms: int) -> int:
        """Give back the energy of proposals unconfirmed for RESERVATION_MS; returns how many."""
        count = 0
        for offer in self._all():
            for tid, at in offer.proposed_at_ms.items():
                if tid in offer.confirmed or tid in offer.released or now_ms - at < RESERVATION_MS:
                    continue
                offer.released.add(tid)
                offer.available_wh += offer.proposed[tid]
                count += 1
        return count

    def close(self, interval_start_s: int) -> Offer | None:
        """Forget the interval's offers; returns its real-time one."""
        for book in (self.ahead, self.balancing):
            other = book.pop(interval_start_s, None)
            if other is not None:
                other.closed = True
        offer = self.offers.pop(interval_start_s, None)
        if offer is not None:
            offer.closed = True
        return offer
