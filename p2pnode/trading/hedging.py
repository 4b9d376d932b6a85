"""How much to trade on an uncertain forecast: the newsvendor rule, pure.

A node trading ahead of delivery knows its need (or surplus) only as a forecast.  Trading too
much and too little cost differently, and the prices say how much:

* a buyer that bought too much exports the excess at the feed-in tariff (it paid ``price``):
  overage ``price - feed_in`` per kWh; one that bought too little imports the rest at retail:
  underage ``retail - price``;
* a seller that sold too much pays the imbalance charge (``retail - price``, see
  :mod:`p2pnode.trading.delivery`); one that sold too little exports the rest at feed-in:
  underage ``price - feed_in``.

The quantity that minimises the expected cost is the forecast distribution's quantile at the
critical ratio ``underage / (underage + overage)``: a buyer asks for more than its median need
when offers are cheap (a glut: price near feed-in), a seller offers less than its median surplus
then.  The forecast error is taken as Laplace-distributed with the node's recent mean absolute
error as its scale (:func:`quantile`); the ratio is kept within [0.05, 0.95].
"""

from __future__ import annotations

import math

__all__ = ["buyer_quantity_wh", "seller_quantity_wh", "quantile", "ErrorScale"]

MAX_TAIL = 0.45   # |ratio - 0.5| at most: no infinite quantities from a degenerate price


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


class ErrorScale:
    """The node's recent mean absolute forecast error (Wh), exponentially weighted."""

    def __init__(self, weight: float = 0.1):
        self.weight, self.value, self.samples = weight, 0.0, 0

    def add(self, forecast_wh: float, actual_wh: float) -> None:
        error = abs(forecast_wh - actual_wh)
        self.samples += 1
        weight = max(self.weight, 1 / self.samples)   # a plain mean until 1/weight samples
        self.value += weight * (error - self.value)
