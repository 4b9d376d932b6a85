"""Time-of-day frames: the one model of which hours of the day a frame covers.

A :class:`TimeFrame` is ``[start_hour, end_hour)`` of every day, wrapping past midnight when
``end_hour <= start_hour`` (``end_hour`` 24 is midnight; equal hours cover the whole day).  A
set of frames is valid when it covers each hour of the day exactly once
(:func:`day_coverage_problem` says why not).  What a frame carries is its user's:

* the node's tariffs (:class:`p2pnode.pricing.Frame`): the retail price in µ/kWh;
* the simulator's tariffs (:class:`simulator.tariffs.TimeFrame`): a multiplier of the retail price;
* the markets' frames (:class:`optimizer.markets.TimeFrames`): just the name, to group orders.

Pure and dependency-free, so the node imports it without the markets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

__all__ = ["HOURS", "TimeFrame", "day_coverage_problem", "hour_ranges"]

HOURS = 24


@dataclass(frozen=True)
class TimeFrame:
    """Hours ``[start_hour, end_hour)`` of each day (see the module docstring)."""

    name: str
    start_hour: int
    end_hour: int

    @property
    def length_h(self) -> int:
        return (self.end_hour - self.start_hour) % HOURS or HOURS

    def hours(self) -> tuple[int, ...]:
        """The whole hours of the day the frame covers, from its start."""
        return tuple((self.start_hour + i) % HOURS for i in range(self.length_h))

    def contains(self, hour: float) -> bool:
        """Whether ``hour`` (0 <= hour < 24, fractions allowed) falls in the frame."""
        return (math.floor(hour) - self.start_hour) % HOURS < self.length_h


def day_coverage_problem(frames: Iterable[TimeFrame]) -> str | None:
    """Why ``frames`` do not cover each hour of the day exactly once, or None if they do."""
    owners: dict[int, list[str]] = {hour: [] for hour in range(HOURS)}
    for frame in frames:
        for hour in frame.hours():
            owners[hour].append(frame.name)
    doubled = [(hour, names) for hour, names in owners.items() if len(names) > 1]
    if doubled:
        hour, names = doubled[0]
        return f"every hour must be in exactly one frame; hour {hour} is in both " \
               f"{' and '.join(names)}"
    missing = [hour for hour, names in owners.items() if not names]
    if missing:
        which = f"hour {missing[0]} belongs" if len(missing) == 1 else \
            f"hours {hour_ranges(missing)} belong"
        return f"every hour must be in exactly one frame; {which} to no frame"
    return None


def hour_ranges(hours: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    runs: list[list[int]] = []
    for hour in hours:
        if runs and hour == runs[-1][1] + 1:
            runs[-1][1] = hour
        else:
            runs.append([hour, hour])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)
