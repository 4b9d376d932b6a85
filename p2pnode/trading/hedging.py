"""How much to trade on an uncertain forecast: the newsvendor rule, pure.

A node trading ahead of delivery knows its need (or surplus) only as a forecast.  Trading too
much and too little cost differently, and the prices say how much:

* a buyer that bought too much exports the excess at the feed-in tariff (it paid ``price``):
  overage ``price - feed_in`` per kWh; one that bought too little imports the rest at retail:
  underage ``retail - price``;
* a seller that sold too much pays the imbalance charge (``retail - price``, see
  :mod:`p2pnode.trading.delivery`); one that sold too little exports the rest at feed-in:
  underage ``price - feed_in``.

A day-ahead position is different: what it leaves out is traded on the day in the real-time
market at about the same price (underage costs little), while a position that turns out too
large is delivered short or exported (overage costs the whole spread).  So both sides take the
:data:`DAY_AHEAD_RATIO` quantile of their day-ahead forecast (:func:`day_ahead_quantity_wh`),
with the scale of the node's day-ahead errors.

The quantity that minimises the expected cost is the forecast distribution's quantile at the
critical ratio ``underage / (underage + overage)``: a buyer asks for more than its median need
when offers are cheap (a glut: price near feed-in), a seller offers less than its median surplus
then.  The forecast error is taken as Laplace-distributed with the node's recent mean absolute
error as its scale (:func:`quantile`); the ratio is kept within [0.05, 0.95].
"""

from __future__ import annotations

import math

__all__ = ["DAY_AHEAD_RATIO", "buyer_quantity_wh", "chance_offer_wh", "day_ahead_quantity_wh",
           "seller_quantity_wh", "quantile", "ErrorScale"]

MAX_TAIL = 0.45   # |ratio - 0.5| at most: no infinite quantities from a degenerate price
DAY_AHEAD_RATIO = 0.25   # the day-ahead position: a low quantile (see the module doc)


def quantile(median: float, scale: float, ratio: float) -> float:
    """The ``ratio`` quantile of a Laplace distribution (``median``, ``scale`` = its MAE)."""
    tail = min(abs(ratio - 0.5), MAX_TAIL)
    return median + math.copysign(scale * -math.log(1 - 2 * tail), ratio - 0.5)


def _ratio(underage: float, overage: float) -> float:
    total = underage + overage
    return 0.5 if total <= 0 else underage / total


def buyer_quantity_wh(need_wh: int, error_scale_wh: float, price: int, retail: int,
                      feed_in: int) -> int:
    """What a buyer with forecast need ``need_wh`` should buy at ``price`` (µ/kWh)."""
    ratio = _ratio(max(0, retail - price), max(0, price - feed_in))
    return max(0, int(round(quantile(need_wh, error_scale_wh, ratio))))


def seller_quantity_wh(surplus_wh: int, error_scale_wh: float, price: int, retail: int,
                       feed_in: int) -> int:
    """What a seller with forecast surplus ``surplus_wh`` should offer at ``price``."""
    ratio = _ratio(max(0, price - feed_in), max(0, retail - price))
    return max(0, int(round(quantile(surplus_wh, error_scale_wh, ratio))))


def chance_offer_wh(net_wh: int, possible_generation_wh: float, error_scale_wh: float,
                    price: int, retail: int, feed_in: int, enter_wh: int) -> int:
    """What a node whose *median* forecast net ``net_wh`` is below the surplus threshold should
    still offer at ``price``: the seller's newsvendor quantity of that forecast when it reaches
    ``enter_wh``, else 0.

    The surplus threshold (FR-01, :mod:`p2pnode.balance`) judges the median forecast; the
    newsvendor rule judges the whole forecast distribution at the price.  When supply is scarce
    (price near retail) an unsold surplus is exported at feed-in while one sold and not delivered
    costs the seller only ``retail - price`` (its buyer the grid covers), so the quantity is a
    high quantile: a house whose median says "the load takes all my PV" but whose PV may well
    exceed its load (a dip in the load, the morning ramp) has a good chance of a surplus worth
    offering.  The same rule for a buyer gives the mirror image (its quantity of the need is
    ``-quantile`` at the same ratio): at a price where this returns a quantity, the node's
    forecast need is not worth buying.  A chance of surplus needs generation: a house that cannot
    generate in the interval (``possible_generation_wh`` 0: night, no PV) offers nothing however
    uncertain its load is.  It is the *possible* generation, not the forecast, that decides: a
    forecast of no generation with the sun up is a median, not a certainty.
    """
    if possible_generation_wh <= 0:
        return 0
    offered = seller_quantity_wh(net_wh, error_scale_wh, price, retail, feed_in)
    return offered if offered >= enter_wh else 0


def day_ahead_quantity_wh(forecast_wh: int, error_scale_wh: float) -> int:
    """The day-ahead position (Wh to sell, or to buy) on a day-ahead forecast of ``forecast_wh``."""
    return max(0, int(round(quantile(forecast_wh, error_scale_wh, DAY_AHEAD_RATIO))))


class ErrorScale:
    """The node's recent mean absolute forecast error (Wh), exponentially weighted."""

    def __init__(self, weight: float = 0.1):
        self.weight, self.value, self.samples = weight, 0.0, 0

    def add(self, forecast_wh: float, actual_wh: float) -> None:
        error = abs(forecast_wh - actual_wh)
        self.samples += 1
        weight = max(self.weight, 1 / self.samples)   # a plain mean until 1/weight samples
        self.value += weight * (error - self.value)

    def seed(self, errors) -> None:
        """Start from past absolute errors in time order (a backtest of the forecaster on its
        history; NaN entries skipped) as if they had been added; nothing once samples exist."""
        if self.samples:
            return
        for error in errors:
            if error == error:
                self.add(float(error), 0.0)
