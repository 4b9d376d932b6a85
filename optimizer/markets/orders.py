"""Orders, trades, time-of-day frames and the seller x buyer trade matrix.

Prices are per kWh in one currency unit throughout (the CLI and examples use EUR/kWh). Energy is
kWh. An order's ``seq`` is its arrival order: it breaks ties between equal prices (time priority)
and drives continuous matching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Iterable

import numpy as np

from optimizer.frames import TimeFrame, day_coverage_problem
from optimizer.markets.errors import OrderError


class Side(str, Enum):
    SELL = "sell"
    BUY = "buy"


@dataclass(frozen=True)
class Order:
    """``kwh`` offered (sell) or wanted (buy) at a limit ``price`` per kWh in ``frame``."""

    id: str
    side: Side
    kwh: float
    price: float
    frame: str = "normal"
    seq: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise OrderError(f"order {self.id!r}: id must be a non-empty string")
        if not isinstance(self.side, Side):
            raise OrderError(f"order {self.id}: side must be 'sell' or 'buy', got {self.side!r}")
        if not (math.isfinite(self.kwh) and self.kwh > 0):
            raise OrderError(f"order {self.id}: kwh must be a finite number > 0, got {self.kwh}")
        if not (math.isfinite(self.price) and self.price >= 0):
            raise OrderError(f"order {self.id}: price must be a finite number >= 0, got {self.price}")


@dataclass(frozen=True)
class Trade:
    """``kwh`` sold by ``seller`` to ``buyer`` at ``price`` per kWh (order ids)."""

    seller: str
    buyer: str
    kwh: float
    price: float
    frame: str = "normal"


DEFAULT_FRAMES = (("off_peak", 22, 6), ("normal", 6, 18), ("peak", 18, 22))


@dataclass(frozen=True)
class TimeFrames:
    """Named time-of-day frames ``(name, start_hour, end_hour)``; a frame may wrap midnight.

    The frames must cover every hour of the day exactly once. Default: off-peak 22-06,
    normal 06-18, peak 18-22.
    """

    frames: tuple[tuple[str, int, int], ...] = DEFAULT_FRAMES

    def __post_init__(self) -> None:
        for name, start, end in self.frames:
            if not (0 <= start < 24 and 0 <= end < 24) or start == end:
                raise OrderError(f"frames: {name} needs 0 <= start, end < 24 and start != end")
        problem = day_coverage_problem(self._time_frames())
        if problem:
            raise OrderError(f"frames: {problem}")

    def _time_frames(self) -> tuple[TimeFrame, ...]:
        return tuple(TimeFrame(name, start, end) for name, start, end in self.frames)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.frames)

    def frame_of(self, hour: float) -> str:
        """The frame containing ``hour`` (0 <= hour < 24, fractions allowed)."""
        if not 0 <= hour < 24:
            raise OrderError(f"hour: must be in [0, 24), got {hour}")
        for frame in self._time_frames():
            if frame.contains(hour):
                return frame.name
        raise AssertionError("frames cover the day")  # unreachable after __post_init__

    def hours(self, name: str) -> int:
        """Duration of frame ``name`` in hours."""
        for frame in self._time_frames():
            if frame.name == name:
                return frame.length_h
        raise OrderError(f"frame: unknown {name!r}; known: {', '.join(self.names)}")


@dataclass(frozen=True, eq=False)
class TradeMatrix:
    """``kwh[i, j]``: energy seller ``sellers[i]`` sold to buyer ``buyers[j]``."""

    sellers: tuple[str, ...]
    buyers: tuple[str, ...]
    kwh: np.ndarray


def trade_matrix(trades: Iterable[Trade], sellers: Iterable[str] = (),
                 buyers: Iterable[str] = ()) -> TradeMatrix:
    """The seller x buyer matrix of ``trades``; ``sellers``/``buyers`` fix rows and columns
    (ids that only appear in trades are appended in order of first appearance)."""
    trades = list(trades)
    rows = list(dict.fromkeys([*sellers, *(t.seller for t in trades)]))
    cols = list(dict.fromkeys([*buyers, *(t.buyer for t in trades)]))
    at_row, at_col = {s: i for i, s in enumerate(rows)}, {b: j for j, b in enumerate(cols)}
    kwh = np.zeros((len(rows), len(cols)))
    for trade in trades:
        kwh[at_row[trade.seller], at_col[trade.buyer]] += trade.kwh
    return TradeMatrix(tuple(rows), tuple(cols), kwh)


def by_frame(orders: Iterable[Order], frames: TimeFrames) -> dict[str, list[Order]]:
    """Orders grouped by frame in the order of ``frames``; unknown frame names are refused."""
    groups: dict[str, list[Order]] = {name: [] for name in frames.names}
    for order in orders:
        if order.frame not in groups:
            raise OrderError(f"order {order.id}: frame {order.frame!r} is not one of "
                             f"{', '.join(frames.names)}")
        groups[order.frame].append(order)
    return groups
