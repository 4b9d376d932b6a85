"""Who churns and who attacks: the pure plan behind ``[faults] churn_share`` / ``malicious_share``.

::

    plan = fault_schedule(seed=42, meters=100, intervals=96, faults=scenario.faults)
    plan.malicious        # {house: "forge" | "flood"}: attacker machines, they never trade
    plan.offline[house]   # ((first, end), ...): offline for intervals first .. end - 1
    plan.lying            # houses whose node lies about its meter (they trade, and inflate)
    plan.skewed[house]    # seconds its node's clock is off (``clock_skew_share``, ``clock_skew_s``)

Seeded and deterministic (no global RNG, no clock).  The malicious houses and the churned ones
are disjoint: a house that trades honestly is never an attacker.  A churned house goes offline
once or twice for :data:`MIN_OUTAGE` .. :data:`MAX_OUTAGE` intervals, never in the first
interval and always back before the last one, so it trades before and after (a meter that
rebooted after a power cut).  A non-zero share always picks at least one house.  Skewed clocks
are drawn from the honest houses that do not churn, on their own random stream (adding them
changes nobody's churn or attack): offsets uniform in ``[-clock_skew_s, clock_skew_s]`` (0.1 s steps), the first two
skewed houses at the extremes, one ahead and one behind.

The attack rates are named here so a run's cost stays bounded: each attacker sends at most
these many messages per interval.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from simulator.settings import Faults

__all__ = ["FaultSchedule", "fault_schedule", "share_count", "MIN_OUTAGE", "MAX_OUTAGE",
           "FORGED_RECORDS_PER_INTERVAL", "FORGED_MESSAGES_PER_INTERVAL",
           "FLOOD_DATAGRAMS_PER_INTERVAL", "FLOOD_REQUESTS_PER_INTERVAL"]

MIN_OUTAGE = 1
MAX_OUTAGE = 8
MAX_OUTAGES_PER_HOUSE = 2
FORGED_RECORDS_PER_INTERVAL = 24     # forged/tampered/expired offer records stored into the DHT
FORGED_MESSAGES_PER_INTERVAL = 24    # negotiation requests with bad signatures or replayed
FLOOD_DATAGRAMS_PER_INTERVAL = 300   # garbage datagrams to honest DHT sockets
FLOOD_REQUESTS_PER_INTERVAL = 60     # well-formed REQUESTs for offers that do not exist
_STREAM = 0xFA17
_SKEW_STREAM = 0xC10C


@dataclasses.dataclass(frozen=True)
class FaultSchedule:
    """Which houses attack (and how) and when the churned ones are offline."""

    intervals: int
    malicious: dict[int, str]
    offline: dict[int, tuple[tuple[int, int], ...]]
    lying: frozenset[int] = frozenset()
    skewed: dict[int, float] = dataclasses.field(default_factory=dict)

    def clock_offset_s(self, house: int) -> float:
        """Seconds house ``house``'s node clock is ahead of the feeder's (negative: behind)."""
        return self.skewed.get(house, 0.0)

    def is_offline(self, house: int, interval: int) -> bool:
        return any(first <= interval < end for first, end in self.offline.get(house, ()))

    def going_down(self, interval: int) -> list[int]:
        """Houses whose outage starts at ``interval`` (they take part in none of its steps)."""
        return sorted(h for h, spans in self.offline.items() if any(f == interval for f, _ in spans))

    def coming_back(self, interval: int) -> list[int]:
        """Houses whose outage ended just before ``interval`` (they trade from it on)."""
        return sorted(h for h, spans in self.offline.items() if any(e == interval for _, e in spans))

    @property
    def outages(self) -> int:
        return sum(len(spans) for spans in self.offline.values())

    def taking_part(self, meters: int) -> np.ndarray:
        """``[meters, intervals]`` bool: the house's honest node is up for the interval."""
        mask = np.ones((meters, self.intervals), dtype=bool)
        for house in self.malicious:
            mask[house] = False
        for house, spans in self.offline.items():
            for first, end in spans:
                mask[house, first:end] = False
        return mask


def share_count(share: float, meters: int) -> int:
    """Houses a share stands for: rounded, at least one for a non-zero share."""
    if share <= 0:
        return 0
    return min(meters, max(1, round(share * meters)))


def fault_schedule(seed: int, meters: int, intervals: int, faults: Faults) -> FaultSchedule:
    """The plan for ``meters`` houses over ``intervals`` intervals; see the module doc."""
    rng = np.random.default_rng([seed, _STREAM])
    order = [int(h) for h in rng.permutation(meters)]
    kinds = faults.malicious_kinds or ("forge",)
    n_malicious = share_count(faults.malicious_share, meters)
    n_churn = min(share_count(faults.churn_share, meters), meters - n_malicious)
    n_lying = min(share_count(faults.lying_share, meters), meters - n_malicious - n_churn)
    malicious = {house: kinds[i % len(kinds)] for i, house in enumerate(order[:n_malicious])}
    churned = order[n_malicious:n_malicious + n_churn]
    offline = {house: spans for house in churned
               if (spans := _outages(rng, intervals))}
    lying = frozenset(order[n_malicious + n_churn:n_malicious + n_churn + n_lying])
    steady = [h for h in range(meters) if h not in malicious and h not in churned]
    return FaultSchedule(intervals, malicious, offline, lying, _skewed(seed, steady, faults))


def _skewed(seed: int, steady: list[int], faults: Faults) -> dict[int, float]:
    """House -> clock offset (s) for ``clock_skew_share`` of the ``steady`` houses (honest,
    never offline); see the module doc."""
    count = min(share_count(faults.clock_skew_share, len(steady)), len(steady))
    if not count or not faults.clock_skew_s:
        return {}
    rng = np.random.default_rng([seed, _SKEW_STREAM])
    houses = [steady[int(i)] for i in rng.permutation(len(steady))[:count]]
    bound = float(faults.clock_skew_s)
    offsets = [bound, -bound] + [round(float(x), 1) for x in rng.uniform(-bound, bound, count)]
    return {house: offsets[i] for i, house in enumerate(houses)}


def _outages(rng: np.random.Generator, intervals: int) -> tuple[tuple[int, int], ...]:
    """One or two non-overlapping outages inside [1, intervals - 1); none if the day is too short."""
    spans: list[tuple[int, int]] = []
    earliest = 1
    for _ in range(int(rng.integers(1, MAX_OUTAGES_PER_HOUSE + 1))):
        room = intervals - 1 - earliest          # intervals available before the last one
        if room < MIN_OUTAGE:
            break
        length = int(rng.integers(MIN_OUTAGE, min(MAX_OUTAGE, room) + 1))
        first = int(rng.integers(earliest, intervals - 1 - length + 1))
        spans.append((first, first + length))
        earliest = first + length + 1            # up for at least one interval in between
    return tuple(sorted(spans))
