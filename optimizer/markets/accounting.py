"""Feeder (transformer) accounting per interval and the persistent-loss alert.

Sign convention: ``transformer_kwh`` (T) is the energy the transformer delivered *into* the
feeder during the interval, positive when the feeder imports from the upstream grid and negative
when it exports (reverse flow). With metered generation G and consumption C:

    loss_kwh = T + G - C

is the unaccounted energy: what entered the feeder (through the transformer or from the
generators) and was not metered as consumption. It is positive for technical losses (lines,
transformer) and for theft or under-reading meters; negative when the meters claim more
consumption than could have been supplied (a faulty or tampered meter, unmetered generation).

``surplus_kwh = max(G - C, 0)`` is what the feeder as a whole has to export and
``deficit_kwh = max(C - G, 0)`` what it needs from upstream (both before losses);
``local_kwh`` is the consumption served by local generation (own use plus the pool).

A :class:`LossWatch` raises the alert when ``|loss_kwh|`` exceeds its threshold for
``persistence`` consecutive intervals (one interval for ``persistence=1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from optimizer.markets.errors import OrderError
from optimizer.markets.pooling import PoolResult


@dataclass(frozen=True)
class LossWatch:
    """Alert when ``|loss|`` stays above ``threshold_kwh`` for ``persistence`` intervals."""

    threshold_kwh: float
    persistence: int = 1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold_kwh) and self.threshold_kwh >= 0):
            raise OrderError(f"loss_threshold_kwh: must be a finite number >= 0, got {self.threshold_kwh}")
        if not (isinstance(self.persistence, int) and self.persistence >= 1):
            raise OrderError(f"persistence: must be an integer >= 1, got {self.persistence!r}")

    def step(self, streak: int, loss_kwh: float) -> tuple[int, bool]:
        """``(new streak, alert)`` after one more interval; the streak counts consecutive
        intervals above the threshold and restarts at 0 below it."""
        streak = streak + 1 if abs(loss_kwh) > self.threshold_kwh else 0
        return streak, streak >= self.persistence

    def alerts(self, losses_kwh: Iterable[float]) -> tuple[bool, ...]:
        """The alert of every interval of a series."""
        streak, out = 0, []
        for loss in losses_kwh:
            streak, alert = self.step(streak, loss)
            out.append(alert)
        return tuple(out)


@dataclass(frozen=True)
class FeederAccount:
    """One interval of a feeder's books (kWh); see the module docstring for signs."""

    generation_kwh: float
    consumption_kwh: float
    transformer_kwh: float
    local_kwh: float
    surplus_kwh: float
    deficit_kwh: float
    loss_kwh: float
    alert: bool
    loss_streak: int


def account_interval(pool: PoolResult, transformer_kwh: float, watch: LossWatch,
                     loss_streak: int = 0) -> FeederAccount:
    """Books of one interval; pass the previous interval's ``loss_streak`` to track persistence."""
    if not math.isfinite(transformer_kwh):
        raise OrderError(f"transformer_kwh: must be a finite number, got {transformer_kwh}")
    generation = sum(a.generation_kwh for a in pool.allocations)
    consumption = sum(a.consumption_kwh for a in pool.allocations)
    loss = transformer_kwh + generation - consumption
    streak, alert = watch.step(loss_streak, loss)
    return FeederAccount(
        generation_kwh=generation, consumption_kwh=consumption, transformer_kwh=transformer_kwh,
        local_kwh=pool.self_kwh + pool.shared_kwh, surplus_kwh=max(generation - consumption, 0.0),
        deficit_kwh=max(consumption - generation, 0.0), loss_kwh=loss, alert=alert,
        loss_streak=streak,
    )
