"""Which offers a DHT node agrees to hold for others, and whose go first when it is full (pure).

A record that passes :func:`~p2pnode.offers.check_record` is signed by *some* key; keys are
free, so a signature alone says nothing about whether holding the record helps anybody.  An
attacker who signs thousands of records with fresh keys could otherwise fill every node's
storage (first come, first kept) until no honest offer is held.  Two rules close that:

Admission (:func:`admission_problem`)
    A node holds only records of its own feeder (``AdmissionPolicy.feeder``; ``None`` holds any,
    for a DHT shared by several feeders) for intervals that can still be traded: from
    :data:`OFFER_HORIZON_BEHIND_S` ago (an interval is traded after it ends, within the trading
    window) up to :data:`OFFER_HORIZON_AHEAD_S` ahead (the day-ahead market publishes the next
    day's intervals before its noon gate: 36 h covers the latest of them).  Each seller holds at
    most :data:`MAX_RECORDS_PER_SELLER_PER_KEY` offers under one key (one feeder, interval and
    price band).

Standing (:class:`SellerStanding`)
    When a cap is reached, a record may take the place of a held record whose seller has *less
    standing*: the number of periods of :data:`STANDING_PERIOD_S` (one trading interval) of
    node time, after the first, in which this node stored an offer of that seller.  Standing
    cannot be bought with signatures: it takes storing offers here period after period, so it
    grows with real time only.  A fresh key has standing 0 and can never push anybody out; a
    seller trading here for the last hours outranks any number of fresh keys.  Ties keep what
    is held (first come, first kept).  Not covered: an attacker patient enough to keep many
    keys publishing for hours earns standing like a seller (each key still capped at
    ``MAX_RECORDS_PER_SELLER`` records here).
"""

from __future__ import annotations

import dataclasses

from p2pnode.offers import Drop, OfferRecord

__all__ = [
    "AdmissionPolicy", "MAX_RECORDS_PER_SELLER_PER_KEY", "MAX_STANDING", "MAX_TRACKED_SELLERS",
    "OFFER_HORIZON_AHEAD_S", "OFFER_HORIZON_BEHIND_S", "STANDING_PERIOD_S", "SellerStanding",
    "admission_problem",
]

OFFER_HORIZON_AHEAD_S = 36 * 3600    # day-ahead offers for tomorrow, published before noon today
OFFER_HORIZON_BEHIND_S = 6 * 3600    # an interval is traded after it ends, in its window
MAX_RECORDS_PER_SELLER_PER_KEY = 8   # offers of one seller for one feeder, interval and band
STANDING_PERIOD_S = 900              # standing grows by at most one per period of node time
MAX_STANDING = 1000                  # periods counted per seller (beyond: equal)
MAX_TRACKED_SELLERS = 8192           # sellers whose standing is remembered


@dataclasses.dataclass(frozen=True)
class AdmissionPolicy:
    """What a node holds for others; see the module doc."""

    feeder: str | None = None
    horizon_ahead_s: int = OFFER_HORIZON_AHEAD_S
    horizon_behind_s: int = OFFER_HORIZON_BEHIND_S

    def __post_init__(self) -> None:
        if self.feeder is not None and (not isinstance(self.feeder, str) or not self.feeder):
            raise ValueError("AdmissionPolicy.feeder must be a feeder name or None")
        for name in ("horizon_ahead_s", "horizon_behind_s"):
            if not 0 <= getattr(self, name) <= 7 * 86400:
                raise ValueError(f"AdmissionPolicy.{name} must be within 0..604800")


def admission_problem(record: OfferRecord, policy: AdmissionPolicy, now_s: float) -> Drop | None:
    """Why a valid record is not held here (another feeder, an interval out of the horizon)."""
    if policy.feeder is not None and record.feeder != policy.feeder:
        return Drop.WRONG_FEEDER
    if not now_s - policy.horizon_behind_s <= record.interval_start_s <= (
            now_s + policy.horizon_ahead_s):
        return Drop.OUT_OF_HORIZON
    return None


class SellerStanding:
    """Periods in which each seller stored offers here, after its first (bounded memory)."""

    def __init__(self, max_sellers: int = MAX_TRACKED_SELLERS,
                 period_s: float = STANDING_PERIOD_S):
        self.max_sellers, self.period_s = max_sellers, period_s
        self._periods: dict[bytes, int] = {}   # seller -> periods seen (the first included)
        self._last: dict[bytes, int] = {}      # the latest period counted per seller

    def of(self, seller: bytes) -> int:
        return max(0, self._periods.get(seller, 0) - 1)

    def observe(self, seller: bytes, now_s: float) -> None:
        """``seller`` stored an offer here at ``now_s``: count the period once."""
        period = int(now_s // self.period_s)
        if period <= self._last.get(seller, period - 1):
            return
        if seller not in self._periods and len(self._periods) >= self.max_sellers:
            self._forget_weakest()
        self._last[seller] = period
        self._periods[seller] = min(MAX_STANDING + 1, self._periods.get(seller, 0) + 1)

    def _forget_weakest(self) -> None:
        weakest = min(self._periods, key=self._periods.__getitem__)
        del self._periods[weakest]
        del self._last[weakest]

    def outranks(self, newcomer: bytes, held: bytes) -> bool:
        return self.of(newcomer) > self.of(held)
