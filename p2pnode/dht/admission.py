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

Shares by source (:class:`SourceShares`, :func:`fair_victim`)
    Standing does not help a *cold* swarm, where no seller has any yet: fresh keys and honest
    sellers look alike, and first come, first kept let a flood that came first keep every
    newcomer place.  Keys are free, network sources are not: every record of a newcomer is
    charged to the *source* that stored it -- the sending contact's address (its IP address
    where each machine has its own, ip:port where nodes share one on purpose), once the
    protocol has checked that address (it answered a request of ours from there); every
    unchecked sender shares the one source :data:`UNCHECKED_SOURCE` (a UDP source address
    is easily forged, a checked one is not).  When the newcomers' room of a key or of the
    node is full, a newcomer record from source S takes the place of the most recently stored
    newcomer record of the source H holding the most there, if H holds at least two more than
    S (max-min fairness: a source never loses a place to one holding as many).  So one machine
    holds at most what the others leave free, however many keys it signs with, and an honest
    seller, storing its own few offers from its own address, always finds room.  Not covered:
    an attacker with many checked addresses (machines on the feeder network; sockets on a
    loopback swarm) has as many shares, and one that forges the source address *and* the
    public key of an honest node it has seen is charged to that node's share (requests are not
    signed).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Hashable

from p2pnode.offers import Drop, OfferRecord

__all__ = [
    "AdmissionPolicy", "MAX_RECORDS_PER_SELLER_PER_KEY", "MAX_STANDING", "MAX_TRACKED_SELLERS",
    "LOCAL_SOURCE", "OFFER_HORIZON_AHEAD_S", "OFFER_HORIZON_BEHIND_S", "STANDING_PERIOD_S",
    "SellerStanding", "SourceShares", "UNCHECKED_SOURCE", "admission_problem", "fair_victim",
]

OFFER_HORIZON_AHEAD_S = 36 * 3600    # day-ahead offers for tomorrow, published before noon today
OFFER_HORIZON_BEHIND_S = 6 * 3600    # an interval is traded after it ends, in its window
MAX_RECORDS_PER_SELLER_PER_KEY = 8   # offers of one seller for one feeder, interval and band
STANDING_PERIOD_S = 900              # standing grows by at most one per period of node time
MAX_STANDING = 1000                  # periods counted per seller (beyond: equal)
MAX_TRACKED_SELLERS = 8192           # sellers whose standing is remembered
UNCHECKED_SOURCE = "unchecked"       # every sender whose address is not checked: one source
LOCAL_SOURCE = "local"               # this node's own offers, stored without a request


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


Entry = tuple[bytes, bytes]   # (key, entry id) of a held record


class SourceShares:
    """Newcomer records held here, by the source that stored them (pure bookkeeping): how many
    each source holds in a key and in all, and which of its records gives way first (the most
    recently stored)."""

    def __init__(self):
        self._source: dict[Entry, Hashable] = {}
        self._in_key: dict[bytes, dict[Hashable, dict[bytes, None]]] = {}   # in storing order
        self._key_count: collections.Counter[bytes] = collections.Counter()
        self._all: dict[Hashable, dict[Entry, None]] = {}                  # in storing order

    def __len__(self) -> int:
        return len(self._source)

    def __contains__(self, item: Entry) -> bool:
        return item in self._source

    def in_key(self, key: bytes) -> int:
        return self._key_count[key]

    def add(self, key: bytes, entry: bytes, source: Hashable) -> None:
        """Charge ``(key, entry)`` to ``source`` (moving it from another source if charged)."""
        self.discard(key, entry)
        self._source[key, entry] = source
        self._in_key.setdefault(key, {}).setdefault(source, {})[entry] = None
        self._key_count[key] += 1
        self._all.setdefault(source, {})[key, entry] = None

    def discard(self, key: bytes, entry: bytes) -> bool:
        source = self._source.pop((key, entry), None)
        if source is None:
            return False
        sources = self._in_key[key]
        del sources[source][entry]
        if not sources[source]:
            del sources[source]
            if not sources:
                del self._in_key[key]
        self._key_count[key] -= 1
        if not self._key_count[key]:
            del self._key_count[key]
        del self._all[source][key, entry]
        if not self._all[source]:
            del self._all[source]
        return True

    def share(self, source: Hashable, key: bytes | None = None) -> int:
        """Records ``source`` holds (in ``key``, or in all)."""
        held = self._all if key is None else self._in_key.get(key, {})
        return len(held.get(source, ()))

    def heaviest(self, key: bytes | None = None) -> tuple[Hashable, int] | None:
        """The source holding the most (in ``key``, or in all) and how many; None when empty."""
        held = self._all if key is None else self._in_key.get(key, {})
        if not held:
            return None
        source = max(held, key=lambda s: len(held[s]))
        return source, len(held[source])

    def latest(self, source: Hashable, key: bytes | None = None) -> Entry:
        """The record ``source`` stored last (in ``key``, or in all)."""
        if key is None:
            return next(reversed(self._all[source]))
        return key, next(reversed(self._in_key[key][source]))


def fair_victim(shares: SourceShares, source: Hashable, key: bytes | None = None
                ) -> Entry | None:
    """The newcomer record that gives its place to one more of ``source`` (in ``key``, or in
    all) when the room is full: the latest of the source holding the most, if that source
    holds at least two more than ``source``; None when ``source`` gets no place."""
    heaviest = shares.heaviest(key)
    if heaviest is None or heaviest[1] < shares.share(source, key) + 2:
        return None
    return shares.latest(heaviest[0], key)
