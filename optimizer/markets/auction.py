"""Uniform-price double auction, cleared once per time-of-day frame.

Bids (buy orders) are sorted by price, highest first; asks (sell orders) lowest first; equal
prices keep arrival order (``Order.seq``, then id). Walking down both curves and matching while
the bid is at least the ask gives the volume that maximises the gains from trade
``sum(kwh * (bid - ask))`` for divisible orders; each step of the walk is one trade, which gives
the per-trade seller x buyer matrix.

A buyer never pays more than the grid tariff (she can buy from the grid at that price), so bids
are capped at the tariff and asks above it cannot trade. Every trade settles at one market
clearing price (MCP) chosen by a :class:`PricingRule`, a k-double auction: ``mcp = lo + k (hi - lo)``
where ``[lo, hi]`` is

* ``bounds="marginal"`` (default, the usual rule in P2P-energy studies): ``lo`` = highest
  matched ask, ``hi`` = lowest matched bid (capped at the tariff). With ``k = 0.5`` the MCP is
  the midpoint of the marginal pair.
* ``bounds="clearing"``: additionally no unmatched trader may want to trade at the MCP: ``lo``
  is also at least the best bid left unserved and ``hi`` at most the best ask left unsold (a
  partially filled marginal order pins the price to its own limit).

Either way every matched seller's ask <= MCP <= every matched buyer's bid and MCP <= tariff.
``k = 1`` favours sellers, ``k = 0`` buyers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from optimizer.markets.errors import OrderError
from optimizer.markets.orders import Order, Side, TimeFrames, Trade, by_frame

BOUNDS = ("marginal", "clearing")


@dataclass(frozen=True)
class PricingRule:
    """k-double auction: ``mcp = lo + k (hi - lo)``; ``bounds`` chooses ``[lo, hi]``."""

    k: float = 0.5
    bounds: str = "marginal"

    def __post_init__(self) -> None:
        if not 0.0 <= self.k <= 1.0:
            raise OrderError(f"k: must be in [0, 1], got {self.k}")
        if self.bounds not in BOUNDS:
            raise OrderError(f"bounds: must be one of {', '.join(BOUNDS)}, got {self.bounds!r}")


@dataclass(frozen=True)
class AuctionResult:
    """Clearing of one frame. ``mcp`` and ``price_bounds`` are ``None`` when nothing matched;
    ``welfare`` is the gains from trade ``sum(kwh * (capped bid - ask))``; ``unmatched`` lists
    ``(order id, kwh left)`` for every order not completely filled."""

    frame: str
    mcp: float | None
    matched_kwh: float
    trades: tuple[Trade, ...]
    price_bounds: tuple[float, float] | None
    welfare: float
    unmatched: tuple[tuple[str, float], ...]


@dataclass
class _Book:
    bids: list[Order]
    asks: list[Order]
    bid_left: list[float]
    ask_left: list[float]
    tariff: float

    def bid_limit(self, i: int) -> float:
        return min(self.bids[i].price, self.tariff)


def clear_double_auction(orders: Iterable[Order], grid_tariff: float,
                         rule: PricingRule = PricingRule(), frame: str = "normal") -> AuctionResult:
    """Clear ``orders`` (all of one frame) at one price; see the module docstring."""
    tariff = check_tariff(grid_tariff, frame)
    orders = list(orders)
    book = _book(orders, tariff)
    fills, i, j = _walk(book)
    if not fills:
        return AuctionResult(frame, None, 0.0, (), None, 0.0, _unmatched(orders, book))
    lo, hi = _bounds(book, fills[-1], i, j, rule)
    mcp = lo + rule.k * (hi - lo)
    trades = tuple(Trade(book.asks[a].id, book.bids[b].id, kwh, mcp, frame) for a, b, kwh in fills)
    welfare = sum(kwh * (book.bid_limit(b) - book.asks[a].price) for a, b, kwh in fills)
    return AuctionResult(frame, mcp, sum(t.kwh for t in trades), trades, (lo, hi), welfare,
                         _unmatched(orders, book))


def clear_frames(orders: Iterable[Order], grid_tariff: float | Mapping[str, float],
                 rule: PricingRule = PricingRule(),
                 frames: TimeFrames = TimeFrames()) -> tuple[AuctionResult, ...]:
    """One :func:`clear_double_auction` per frame, in the order of ``frames``. ``grid_tariff``
    is one price or a price per frame name (time-of-use tariff)."""
    groups = by_frame(orders, frames)
    return tuple(clear_double_auction(group, tariff_of(grid_tariff, name), rule, name)
                 for name, group in groups.items())


def check_tariff(grid_tariff: float, frame: str) -> float:
    try:
        tariff = float(grid_tariff)
    except (TypeError, ValueError):
        raise OrderError(f"grid_tariff[{frame}]: not a number: {grid_tariff!r}") from None
    if not tariff >= 0 or tariff == float("inf"):
        raise OrderError(f"grid_tariff[{frame}]: must be a finite number >= 0, got {grid_tariff}")
    return tariff


def tariff_of(grid_tariff: float | Mapping[str, float], frame: str) -> float:
    if isinstance(grid_tariff, Mapping):
        if frame not in grid_tariff:
            raise OrderError(f"grid_tariff: no tariff for frame {frame!r}")
        return grid_tariff[frame]
    return grid_tariff


def _book(orders: list[Order], tariff: float) -> _Book:
    bids = sorted((o for o in orders if o.side is Side.BUY),
                  key=lambda o: (-min(o.price, tariff), o.seq, o.id))
    asks = sorted((o for o in orders if o.side is Side.SELL and o.price <= tariff),
                  key=lambda o: (o.price, o.seq, o.id))
    return _Book(bids, asks, [o.kwh for o in bids], [o.kwh for o in asks], tariff)


def _walk(book: _Book) -> tuple[list[tuple[int, int, float]], int, int]:
    """Match down the curves; returns the fills ``(ask, bid, kwh)`` and the first bid and ask
    with energy left (the best unserved orders)."""
    fills, i, j = [], 0, 0
    while i < len(book.bids) and j < len(book.asks) and book.bid_limit(i) >= book.asks[j].price:
        kwh = min(book.bid_left[i], book.ask_left[j])
        fills.append((j, i, kwh))
        book.bid_left[i] -= kwh
        book.ask_left[j] -= kwh
        i += book.bid_left[i] <= 0
        j += book.ask_left[j] <= 0
    return fills, i, j


def _bounds(book: _Book, last: tuple[int, int, float], i: int, j: int,
            rule: PricingRule) -> tuple[float, float]:
    lo, hi = book.asks[last[0]].price, book.bid_limit(last[1])
    if rule.bounds == "clearing":
        if i < len(book.bids):
            lo = max(lo, book.bid_limit(i))
        if j < len(book.asks):
            hi = min(hi, book.asks[j].price)
    return lo, hi


def _unmatched(orders: list[Order], book: _Book) -> tuple[tuple[str, float], ...]:
    left = {o.id: o.kwh for o in orders}
    for side, remaining in ((book.bids, book.bid_left), (book.asks, book.ask_left)):
        for order, kwh in zip(side, remaining):
            left[order.id] = kwh
    return tuple((o.id, left[o.id]) for o in orders if left[o.id] > 0)
