"""Continuous double auction: every order is matched on arrival with price-time priority.

Orders arrive in ``Order.seq`` order (input order among equal ``seq``). An arriving buy order
trades against the resting asks from the cheapest (earliest first among equal prices) while
the ask is at most its limit; an arriving sell order against the resting bids from the highest.
Each trade settles at the *resting* order's price. Whatever is left rests in the book. As in the
auction, bids are capped at the grid tariff, so no trade is ever dearer than the tariff (asks
above it rest and never trade).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Iterable, Mapping

from optimizer.markets.auction import check_tariff, tariff_of
from optimizer.markets.orders import Order, Side, TimeFrames, Trade, by_frame


@dataclass(frozen=True)
class ContinuousResult:
    """Trades in execution order and ``(order id, kwh left)`` of the orders left in the book."""

    frame: str
    trades: tuple[Trade, ...]
    resting: tuple[tuple[str, float], ...]

    @property
    def matched_kwh(self) -> float:
        return sum(t.kwh for t in self.trades)


def match_continuous(orders: Iterable[Order], grid_tariff: float,
                     frame: str = "normal") -> ContinuousResult:
    """Match ``orders`` (one frame) as they arrive; see the module docstring."""
    tariff = check_tariff(grid_tariff, frame)
    arrivals = sorted(orders, key=lambda o: o.seq)
    left = [o.kwh for o in arrivals]
    books: dict[Side, list[tuple[float, int]]] = {Side.BUY: [], Side.SELL: []}
    trades: list[Trade] = []
    for n, order in enumerate(arrivals):
        limit = min(order.price, tariff) if order.side is Side.BUY else order.price
        other = books[Side.SELL if order.side is Side.BUY else Side.BUY]
        while left[n] > 0 and other and _crosses(order.side, limit, other[0][0]):
            rest = other[0][1]
            kwh = min(left[n], left[rest])
            price = other[0][0] if order.side is Side.BUY else -other[0][0]
            seller, buyer = (arrivals[rest], order) if order.side is Side.BUY else (order, arrivals[rest])
            trades.append(Trade(seller.id, buyer.id, kwh, price, frame))
            left[n] -= kwh
            left[rest] -= kwh
            if left[rest] <= 0:
                heapq.heappop(other)
        if left[n] > 0:
            key = -limit if order.side is Side.BUY else limit
            heapq.heappush(books[order.side], (key, n))
    resting = tuple((o.id, left[n]) for n, o in enumerate(arrivals) if left[n] > 0)
    return ContinuousResult(frame, tuple(trades), resting)


def match_frames(orders: Iterable[Order], grid_tariff: float | Mapping[str, float],
                 frames: TimeFrames = TimeFrames()) -> tuple[ContinuousResult, ...]:
    """One :func:`match_continuous` per frame, in the order of ``frames``."""
    return tuple(match_continuous(group, tariff_of(grid_tariff, name), name)
                 for name, group in by_frame(orders, frames).items())


def _crosses(side: Side, limit: float, best_key: float) -> bool:
    """Bids rest keyed by ``-price``, asks by ``price``."""
    return best_key <= limit if side is Side.BUY else -best_key >= limit
