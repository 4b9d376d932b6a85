"""Grid tariffs with time-of-day frames, and the price of every interval.

The grid retail price is ``retail_per_kwh`` times the multiplier of the time-of-day frame the
interval starts in (frames are :class:`optimizer.frames.TimeFrame` s) (off-peak 22-06, normal 06-18, peak 18-22 by default).  The feed-in tariff is
flat.  Peer-to-peer prices live between the two: a buyer never pays more than the grid would
charge, a seller never takes less than the grid would pay.  ``export_limit_kw`` caps what a house
may feed into the grid (``None``: no cap); energy above the cap that is not sold locally is
wasted (curtailed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.frames import TimeFrame as DayFrame, day_coverage_problem
from simulator.checks import Checker


@dataclass(frozen=True)
class TimeFrame(DayFrame):
    """Hours ``[start_hour, end_hour)`` of each day (:class:`optimizer.frames.TimeFrame`) with
    the multiplier of the retail price."""

    multiplier: float

    def __post_init__(self):
        check = Checker(f"tariffs.frames.{self.name}")
        check.integer("start_hour", self.start_hour, 0, 23)
        check.integer("end_hour", self.end_hour, 0, 24)
        check.number("multiplier", self.multiplier, 0, low_open=True)
        if self.start_hour == self.end_hour:
            check.fail("end_hour", self.end_hour, "must differ from start_hour")
        check.done()


DEFAULT_FRAMES = (TimeFrame("off_peak", 22, 6, 0.8), TimeFrame("normal", 6, 18, 1.0),
                  TimeFrame("peak", 18, 22, 1.3))


@dataclass(frozen=True)
class Tariffs:
    """Grid prices in ``currency`` per kWh; frames must cover each hour of the day once."""

    retail_per_kwh: float = 0.30
    feed_in_per_kwh: float = 0.08
    currency: str = "EUR"
    export_limit_kw: float | None = None
    frames: tuple[TimeFrame, ...] = DEFAULT_FRAMES

    def __post_init__(self):
        check = Checker("tariffs")
        check.number("retail_per_kwh", self.retail_per_kwh, 0, low_open=True)
        check.number("feed_in_per_kwh", self.feed_in_per_kwh, 0)
        check.text("currency", self.currency)
        if self.export_limit_kw is not None:
            check.number("export_limit_kw", self.export_limit_kw, 0)
        if not check.problems:
            self._check_frames(check)
        check.done()

    def _check_frames(self, check: Checker) -> None:
        names = [frame.name for frame in self.frames]
        if len(set(names)) != len(names):
            check.fail("frames", names, "frame names must be unique")
        problem = day_coverage_problem(self.frames)
        if problem:
            check.fail("frames", names, problem)
            return
        lowest = self.retail_per_kwh * min(frame.multiplier for frame in self.frames)
        if self.feed_in_per_kwh >= lowest:
            check.fail("feed_in_per_kwh", self.feed_in_per_kwh,
                       f"must be below the lowest retail price ({lowest:g}), or trading "
                       "cannot benefit both sides")

    def frame_index(self, interval_start: np.ndarray) -> np.ndarray:
        """Index into ``frames`` for every interval start (``datetime64``)."""
        table = np.empty(24, dtype=int)
        for k, frame in enumerate(self.frames):
            table[list(frame.hours())] = k
        return table[hour_of_day(interval_start)]

    def retail_prices(self, interval_start: np.ndarray) -> np.ndarray:
        """Grid retail price per kWh of every interval."""
        multipliers = np.array([frame.multiplier for frame in self.frames])
        return self.retail_per_kwh * multipliers[self.frame_index(interval_start)]

    def feed_in_prices(self, interval_start: np.ndarray) -> np.ndarray:
        """Feed-in tariff per kWh of every interval (flat)."""
        return np.full(np.shape(interval_start), float(self.feed_in_per_kwh))

    def export_limit_wh(self, interval_s: float) -> float | None:
        """Most energy one house may export in one interval, ``None`` if unlimited."""
        if self.export_limit_kw is None:
            return None
        return self.export_limit_kw * 1000.0 * interval_s / 3600.0


def hour_of_day(interval_start: np.ndarray) -> np.ndarray:
    stamps = np.asarray(interval_start, dtype="datetime64[s]")
    return (stamps.astype("datetime64[h]").astype(np.int64) % 24).astype(int)
