"""A buyer's view of sellers, from co-signed evidence only (pure apart from reading a ledger).

Every number here comes from DELIVERY settlements (:class:`p2pnode.trackrecord.Settlement`):
the buyer's own (rebuilt from its ledger by :meth:`Reputation.from_ledger` on start, and added
on every settlement it agrees to) and those in the sellers' verified track records
(:mod:`p2pnode.trackrecord`), one entry per trade id however often it is seen.  The dimensions
(TrustChain / E-STAR style):

``quality``         delivered share: Σ delivered / Σ agreed, each counterparty's settlements
                    counting for at most :data:`MAX_SETTLEMENTS_PER_COUNTERPARTY` (a seller
                    cannot outvote its real buyers with trades with its own fresh keys);
                    of a settlement without the buyer's countersignature only the shortfall the
                    seller admits counts; an overdue trade (not settled
                    :data:`~p2pnode.trackrecord.SETTLE_GRACE_S` after delivery) counts as
                    :data:`OVERDUE_WEIGHT` of its energy undelivered
``duration``        mean duration of the settled trades (s)
``participation``   co-signed settlements in the record (market participation, X6)
``volume_wh``       co-signed delivered energy (capped per counterparty)
``age_s``           since the oldest verified block

Quality and duration are of trades sold ahead of delivery only: a *spot* trade, agreed once its
interval was over (the ex-post market, the balancing round), was metered before it was sold and
is delivered in full at once, so it tells nothing of how its seller delivers on a forecast
(:attr:`~p2pnode.trackrecord.Settlement.shows_delivery`); it counts in participation and
volume.  Each counterparty's most recent settlements are counted for each apart, so spot trades
cannot push a shortfall out of the window.

A key without a record is not trusted by default: :meth:`Reputation.share_cap` lets it supply at
most :data:`NEW_KEY_SHARE` of a buyer's demand, rising with its co-signed delivered volume to the
whole demand at :data:`TRUSTED_VOLUME_WH`, each counterparty's deliveries counting
:data:`VOLUME_PER_COUNTERPARTY_WH` at most (a seller's own fresh buyer keys buy it little trust).
The cap binds while other sellers can supply the rest (:meth:`p2pnode.node.Node.buy`).  A seller caught serving a forged, truncated,
reordered or rewritten record is *penalised*: it is no candidate for :data:`PENALTY_S`, and its
cursor is forgotten (the next look starts afresh).
"""

from __future__ import annotations

import collections
import dataclasses
import math

from ledger import BlockBody, BlockType, DeliveryPayload, Ledger, agreed_after, decode_envelope
from p2pnode.trackrecord import RecordCursor, Settlement

__all__ = ["Reputation", "NEW_KEY_SHARE", "QUALITY_EVIDENCE", "QUALITY_FLOOR", "TRUSTED_VOLUME_WH", "PENALTY_S",
           "MAX_SETTLEMENTS_PER_COUNTERPARTY"]

NEW_KEY_SHARE = 0.5                      # of a buyer's demand, for a seller without a record
TRUSTED_VOLUME_WH = 1_000                # co-signed delivered Wh for an uncapped share ...
VOLUME_PER_COUNTERPARTY_WH = 250         # ... each buyer's settlements counting this much at most
PENALTY_S = 86_400                       # a seller caught cheating is no candidate this long
MAX_SETTLEMENTS_PER_COUNTERPARTY = 24    # the most recent ones count
MAX_SETTLEMENTS_PER_SELLER = 512         # evidence kept per seller (the most recent)
QUALITY_EVIDENCE = 3     # co-signed settlements before a seller's delivered share counts
QUALITY_FLOOR = 0.75     # an informed buyer passes over sellers delivering less than this
                         # share of what the median candidate delivers (others left)
OVERDUE_WEIGHT = 0.5    # an overdue trade counts as half undelivered (its buyer may never
                        # have confirmed it: then the seller had nothing to settle)


@dataclasses.dataclass(frozen=True)
class _Tally:
    """What a seller's counted settlements add up to (see :meth:`Reputation._tally`)."""

    agreed_wh: float        # co-signed agreed, plus the shortfalls it admits in its own word
    delivered_wh: float     # co-signed delivered
    evidence: int           # co-signed settlements of trades sold ahead
    cosigned: int
    mean_duration_s: float  # NaN without settlements
    volume_wh: int          # co-signed delivered, each counterparty capped
    by_price: tuple[tuple[int, float, float, int], ...] = ()
    """The settlements counted in ``agreed_wh``, dearest first, as running sums: (price,
    agreed, delivered, evidence) of those at that price or dearer (see :meth:`share_from`)."""

    def share_from(self, price_micro_per_kwh: int) -> float:
        """Delivered share of the counted settlements priced at least ``price_micro_per_kwh``,
        or at least the price of the :data:`QUALITY_EVIDENCE` dearest co-signed ones when
        fewer are; NaN without any."""
        last = None
        for row in self.by_price:   # dearest first: stop below the price, with enough evidence
            if row[0] < price_micro_per_kwh and last is not None \
                    and last[3] >= QUALITY_EVIDENCE:
                break
            last = row
        if last is None or last[1] <= 0:
            return math.nan
        return last[2] / last[1]


@dataclasses.dataclass
class SellerView:
    settlements: dict[bytes, Settlement] = dataclasses.field(default_factory=dict)
    tally: _Tally | None = None           # of ``settlements``; None when they have changed
    overdue: dict[bytes, int] = dataclasses.field(default_factory=dict)  # trade id -> Wh
    trades: int = 0                       # our own trades with it (this run)
    cursor: RecordCursor | None = None
    first_time_ms: int = 0
    checked_at_s: float = -math.inf       # when its record was last fetched


class Reputation:
    """Sellers' records as this buyer verified them; see the module doc."""

    def __init__(self, me: bytes = b""):
        self.me = me
        self.sellers: dict[bytes, SellerView] = collections.defaultdict(SellerView)
        self.penalties: dict[bytes, tuple[float, str]] = {}
        self.problems: collections.Counter[str] = collections.Counter()

    # -- evidence in ---------------------------------------------------------------------
    @classmethod
    def from_ledger(cls, ledger: Ledger, interval_s: int) -> Reputation:
        """The own evidence in ``ledger``: every DELIVERY settlement its owner agreed to as a
        buyer (the seller's proposal is stored beside it) and its own trades, per seller."""
        me = ledger.key.public
        view = cls(me)
        spot = set()
        for raw in ledger.store.chain(me):
            body = decode_envelope(raw, BlockBody)[0].message
            payload = body.payload
            if body.type is BlockType.TRADE and payload.buyer == me:
                view.sellers[payload.seller].trades += 1
                if agreed_after(payload.interval_start_s, interval_s, body.time_ms):
                    spot.add(payload.trade_id)
            elif body.type is BlockType.SETTLEMENT and isinstance(payload, DeliveryPayload) \
                    and payload.buyer == me:
                view.add(Settlement.of(payload, body.time_ms, cosigned=True,
                                       spot=payload.trade_id in spot))
        return view

    def record_trade(self, seller: bytes) -> None:
        self.sellers[seller].trades += 1

    def add(self, settlement: Settlement) -> None:
        view = self.sellers[settlement.seller]
        held = view.settlements.get(settlement.trade_id)
        if held is None or (settlement.cosigned and not held.cosigned):
            view.settlements[settlement.trade_id] = settlement
            view.tally = None
        view.overdue.pop(settlement.trade_id, None)
        if not view.first_time_ms or settlement.time_ms < view.first_time_ms:
            view.first_time_ms = settlement.time_ms
        if len(view.settlements) > MAX_SETTLEMENTS_PER_SELLER:
            oldest = sorted(view.settlements.values(), key=lambda s: s.time_ms)
            for s in oldest[:len(view.settlements) - MAX_SETTLEMENTS_PER_SELLER]:
                del view.settlements[s.trade_id]
            view.tally = None

    def add_verified(self, seller: bytes, cursor: RecordCursor, settlements, overdue,
                     now_s: float) -> None:
        """A verified page of ``seller``'s record (see :func:`p2pnode.trackrecord.verify_page`)."""
        view = self.sellers[seller]
        view.cursor, view.checked_at_s = cursor, now_s
        for settlement in settlements:
            if settlement.seller == seller:
                self.add(settlement)
        for trade_id, energy_wh in overdue:
            if trade_id not in view.settlements:
                view.overdue[trade_id] = energy_wh
        if cursor.first_time_ms and (not view.first_time_ms
                                     or cursor.first_time_ms < view.first_time_ms):
            view.first_time_ms = cursor.first_time_ms

    def penalise(self, seller: bytes, reason: str, now_s: float) -> None:
        """``seller`` served a bad record: no candidate for PENALTY_S; its cursor is dropped."""
        self.problems[reason] += 1
        self.penalties[seller] = (now_s + PENALTY_S, reason)
        self.sellers[seller].cursor = None

    # -- views -------------------------------------------------------------------------------
    def penalised(self, seller: bytes, now_s: float) -> bool:
        until = self.penalties.get(seller)
        return until is not None and now_s < until[0]

    def known(self, seller: bytes) -> bool:
        """Whether this buyer has traded with ``seller`` or holds a co-signed settlement of it
        (its own or from the seller's verified record); the others are newcomers
        (:func:`p2pnode.ranking.bounded_newcomers`)."""
        view = self.sellers.get(seller)
        return view is not None and (view.trades > 0
                                     or any(s.cosigned for s in view.settlements.values()))

    def cursor(self, seller: bytes) -> RecordCursor | None:
        view = self.sellers.get(seller)
        return view.cursor if view is not None else None

    def checked_at_s(self, seller: bytes) -> float:
        view = self.sellers.get(seller)
        return view.checked_at_s if view is not None else -math.inf

    def _tally(self, seller: bytes) -> _Tally | None:
        """The counted settlements of ``seller`` (each counterparty's most recent
        :data:`MAX_SETTLEMENTS_PER_COUNTERPARTY`) added up, once per change of its evidence: a
        ranking asks for every candidate's quality, participation and volume."""
        view = self.sellers.get(seller)
        if view is None:
            return None
        if view.tally is None:
            by_buyer: dict[bytes, list[Settlement]] = collections.defaultdict(list)
            for s in sorted(view.settlements.values(), key=lambda s: s.time_ms):
                by_buyer[s.buyer].append(s)
            cosigned = volume = 0
            durations, counted = [], []
            for items in by_buyer.values():
                shown = [s for s in items if s.shows_delivery]
                for s in shown[-MAX_SETTLEMENTS_PER_COUNTERPARTY:]:
                    durations.append(s.duration_ms / 1000)
                    if s.cosigned:
                        counted.append((s.price_micro_per_kwh, s.agreed_wh, s.delivered_wh, 1))
                    else:   # the seller's own word: only the shortfall it admits counts
                        counted.append((s.price_micro_per_kwh, s.agreed_wh - s.delivered_wh,
                                        0, 0))
                recent = [s for s in items if s.cosigned][-MAX_SETTLEMENTS_PER_COUNTERPARTY:]
                cosigned += len(recent)
                volume += min(sum(s.delivered_wh for s in recent), VOLUME_PER_COUNTERPARTY_WH)
            by_price = _running_by_price(counted)   # its cheapest row sums all of them
            _, agreed, delivered, evidence = by_price[-1] if by_price else (0, 0.0, 0.0, 0)
            view.tally = _Tally(agreed, delivered, evidence, cosigned,
                                sum(durations) / len(durations) if durations else math.nan,
                                volume, by_price)
        return view.tally

    def quality(self, seller: bytes) -> float:
        """Delivered share (0..1) from the evidence; NaN without any."""
        tally = self._tally(seller)
        if tally is None:
            return math.nan
        agreed = tally.agreed_wh + OVERDUE_WEIGHT * sum(self.sellers[seller].overdue.values())
        if agreed <= 0:
            return math.nan
        return min(1.0, max(0.0, tally.delivered_wh / agreed))

    def expected_share(self, seller: bytes, price_micro_per_kwh: int | None = None) -> float:
        """The share of an agreed trade ``seller`` is expected to deliver: its verified
        :meth:`quality` once it rests on :data:`QUALITY_EVIDENCE` co-signed settlements of
        trades sold ahead, else 1 (a newcomer is bounded by :meth:`share_cap` instead).

        Of a trade at ``price_micro_per_kwh``: less, when the seller delivered less of its
        trades at that price or dearer (at least the :data:`QUALITY_EVIDENCE` dearest ones).
        A seller following the newsvendor rule (:mod:`p2pnode.trading.hedging`) offers a higher
        quantile of its forecast the nearer the price is to retail -- a long shot, which costs
        it little when it misses -- so its dear trades arrive less often than its cheap ones,
        and a record's average would oversell them."""
        quality, tally = self.quality(seller), self._tally(seller)
        if math.isnan(quality) or tally.evidence < QUALITY_EVIDENCE:
            return 1.0
        if price_micro_per_kwh is None:
            return quality
        priced = tally.share_from(price_micro_per_kwh)
        return quality if math.isnan(priced) else min(quality, priced)

    def mean_duration_s(self, seller: bytes) -> float:
        tally = self._tally(seller)
        return tally.mean_duration_s if tally is not None else math.nan

    def participation(self, seller: bytes) -> int:
        """Co-signed settlements in the verified record (X6)."""
        tally = self._tally(seller)
        return tally.cosigned if tally is not None else 0

    def volume_wh(self, seller: bytes) -> int:
        """Co-signed delivered energy, each counterparty's counting at most
        :data:`VOLUME_PER_COUNTERPARTY_WH` (full trust needs several real buyers)."""
        tally = self._tally(seller)
        return tally.volume_wh if tally is not None else 0

    def age_s(self, seller: bytes, now_s: float) -> float:
        view = self.sellers.get(seller)
        if view is None or not view.first_time_ms:
            return 0.0
        return max(0.0, now_s - view.first_time_ms / 1000)

    def share_cap(self, seller: bytes) -> float:
        """The largest share of a buyer's demand ``seller`` may supply (sybil resistance)."""
        trusted = min(1.0, self.volume_wh(seller) / TRUSTED_VOLUME_WH)
        return NEW_KEY_SHARE + (1.0 - NEW_KEY_SHARE) * trusted

    def summary(self, seller: bytes, now_s: float) -> dict:
        return {"quality": self.quality(seller), "duration_s": self.mean_duration_s(seller),
                "participation": self.participation(seller), "volume_wh": self.volume_wh(seller),
                "age_s": self.age_s(seller, now_s), "penalised": self.penalised(seller, now_s)}


def _running_by_price(counted: list[tuple[int, float, float, int]]
                      ) -> tuple[tuple[int, float, float, int], ...]:
    """(price, agreed, delivered, evidence) rows, dearest first, as running sums over the
    rows at each price or dearer (one row per price)."""
    rows: list[tuple[int, float, float, int]] = []
    agreed = delivered = 0.0
    evidence = 0
    for price, a, d, e in sorted(counted, key=lambda row: -row[0]):
        agreed, delivered, evidence = agreed + a, delivered + d, evidence + e
        if rows and rows[-1][0] == price:
            rows.pop()
        rows.append((price, agreed, delivered, evidence))
    return tuple(rows)
