"""Scores of a run, computed from its :class:`~simulator.outcome.Outcome` (pure functions).

Definitions (sums over all houses and intervals; energies in kWh, money in the tariff currency):

* **local_match_kwh**: energy bought from peers, ``sum bought``.
* **optimum_match_kwh**: the maximum locally matchable energy on the same data
  (:mod:`simulator.optimum`); **local_match_ratio** = local / optimum (1 if the optimum is 0).
* **welfare**: ``sum(bought * bid - sold * ask) / 1000``, the value trading created over the
  grid alternatives (bid: buyer's maximum price, default the retail price; ask: seller's minimum
  price, default the feed-in tariff); **welfare_ratio** = welfare / optimum welfare.
* **self_sufficiency**: share of consumption not imported from the grid, ``1 - import / cons``.
* **self_consumption**: share of generation used inside the community (own use, own battery or
  sold to a peer), ``1 - (export + wasted) / generation``.
* **grid_import_kwh**, **grid_export_kwh**: energy bought from / fed into the grid.
* **wasted_surplus_kwh**: surplus neither sold locally nor exported because export is capped
  (``Tariffs.export_limit_kw``); always 0 without a cap.
* **average_p2p_price_per_kwh**: volume-weighted peer price, ``sum paid / local_match_kwh``
  (NaN without trades); **average_import_price_per_kwh**: volume-weighted grid retail price paid.
* **savings** per house: its net energy cost without trading minus its net energy cost in the
  run, where net cost = ``import * retail - export * feed_in + paid - received``.
* **savings_gini**: Gini coefficient of the savings of all houses (0: everyone saved the same;
  see :func:`gini`).

Ratios that divide by zero are NaN; :meth:`Metrics.as_dict` writes them as ``None`` (JSON null).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from simulator.optimum import Optimum
from simulator.outcome import Outcome, settle


@dataclass(frozen=True)
class Metrics:
    """The scalar scores of one run (see the module docstring for each definition)."""

    meters: int
    intervals: int
    generation_kwh: float
    consumption_kwh: float
    local_match_kwh: float
    optimum_match_kwh: float
    local_match_ratio: float
    welfare: float
    optimum_welfare: float
    welfare_ratio: float
    self_sufficiency: float
    self_consumption: float
    grid_import_kwh: float
    grid_export_kwh: float
    wasted_surplus_kwh: float
    average_p2p_price_per_kwh: float
    average_import_price_per_kwh: float
    total_savings: float
    mean_savings: float
    savings_gini: float
    households_worse_off: int

    def as_dict(self) -> dict:
        """JSON-friendly: NaN becomes ``None``."""
        return {key: (None if isinstance(value, float) and math.isnan(value) else value)
                for key, value in dataclasses.asdict(self).items()}


def score(outcome: Outcome, optimum: Optimum, retail_per_kwh, feed_in_per_kwh, *,
          bid_per_kwh=None, ask_per_kwh=None, baseline: Outcome | None = None) -> Metrics:
    """Score ``outcome`` against ``optimum`` and the no-trading ``baseline``.

    Prices are per interval ([interval]) or per house and interval; ``bid``/``ask`` default to
    the retail price and the feed-in tariff (what the optimum should have used too).  Without
    ``baseline`` the no-trading outcome of the same positions is used.
    """
    retail = _per_cell(retail_per_kwh, outcome.shape)
    feed_in = _per_cell(feed_in_per_kwh, outcome.shape)
    bid = retail if bid_per_kwh is None else _per_cell(bid_per_kwh, outcome.shape)
    ask = feed_in if ask_per_kwh is None else _per_cell(ask_per_kwh, outcome.shape)
    baseline = baseline if baseline is not None else no_trading_like(outcome)
    savings = savings_per_house(outcome, baseline, retail, feed_in)
    local = float(outcome.bought_wh.sum()) / 1000
    welfare = float((outcome.bought_wh * bid - outcome.sold_wh * ask).sum()) / 1000
    imported = float(outcome.grid_import_wh.sum()) / 1000
    exported = float(outcome.grid_export_wh.sum()) / 1000
    wasted = float(outcome.wasted_wh.sum()) / 1000
    generation = float(outcome.generation_wh.sum()) / 1000
    consumption = float(outcome.consumption_wh.sum()) / 1000
    return Metrics(
        meters=outcome.shape[0], intervals=outcome.shape[1],
        generation_kwh=generation, consumption_kwh=consumption,
        local_match_kwh=local, optimum_match_kwh=optimum.matched_kwh,
        local_match_ratio=_ratio(local, optimum.matched_kwh, if_zero=1.0),
        welfare=welfare, optimum_welfare=optimum.total_welfare,
        welfare_ratio=_ratio(welfare, optimum.total_welfare, if_zero=1.0),
        self_sufficiency=1 - _ratio(imported, consumption),
        self_consumption=1 - _ratio(exported + wasted, generation),
        grid_import_kwh=imported, grid_export_kwh=exported, wasted_surplus_kwh=wasted,
        average_p2p_price_per_kwh=_ratio(float(outcome.paid.sum()), local),
        average_import_price_per_kwh=_ratio(
            float((outcome.grid_import_wh * retail).sum()) / 1000, imported),
        total_savings=float(savings.sum()), mean_savings=float(savings.mean()),
        savings_gini=gini(savings), households_worse_off=int((savings < -1e-9).sum()))


def no_trading_like(outcome: Outcome) -> Outcome:
    """The grid-only outcome of the same positions: everything imported or exported."""
    return settle(generation_wh=outcome.generation_wh, consumption_wh=outcome.consumption_wh,
                  surplus_wh=outcome.surplus_wh, deficit_wh=outcome.deficit_wh,
                  export_limit_wh=outcome.export_limit_wh)


def net_cost(outcome: Outcome, retail_per_kwh, feed_in_per_kwh) -> np.ndarray:
    """Energy bill per house over the run: grid import minus export revenue plus peer net."""
    retail = _per_cell(retail_per_kwh, outcome.shape)
    feed_in = _per_cell(feed_in_per_kwh, outcome.shape)
    grid = (outcome.grid_import_wh * retail - outcome.grid_export_wh * feed_in) / 1000
    return (grid + outcome.paid - outcome.received).sum(axis=1)


def savings_per_house(outcome: Outcome, baseline: Outcome, retail_per_kwh,
                      feed_in_per_kwh) -> np.ndarray:
    """``net_cost(baseline) - net_cost(outcome)`` per house (positive: the house saved)."""
    return (net_cost(baseline, retail_per_kwh, feed_in_per_kwh)
            - net_cost(outcome, retail_per_kwh, feed_in_per_kwh))


def gini(values) -> float:
    """Gini coefficient: mean absolute difference over all pairs / (2 * mean).

    0 when all values are equal (including all zero); up to ``(n-1)/n`` when one house gets
    everything.  Negative values are allowed as long as the mean is positive (the result may
    then exceed 1); NaN for an empty input or a non-positive mean with unequal values.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = x.size
    if n == 0:
        return float("nan")
    if np.ptp(x) == 0:
        return 0.0
    mean = x.mean()
    if mean <= 0:
        return float("nan")
    # sum_{i,j} |x_i - x_j| = 2 * sum_i (2i - n + 1) x_(i) for 0-based ranks of sorted x.
    ranks = np.arange(n)
    mean_abs_diff = 2 * np.sum((2 * ranks - n + 1) * x) / (n * n)
    return float(mean_abs_diff / (2 * mean))


def per_interval(outcome: Outcome, optimum: Optimum, retail_per_kwh,
                 feed_in_per_kwh) -> dict[str, np.ndarray]:
    """Columns of a per-interval table (Wh per interval, prices per kWh)."""
    bought = outcome.bought_wh.sum(axis=0)
    paid = outcome.paid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        price = np.where(bought > 0, paid / (bought / 1000), np.nan)
    return {
        "generation_wh": outcome.generation_wh.sum(axis=0),
        "consumption_wh": outcome.consumption_wh.sum(axis=0),
        "surplus_wh": outcome.surplus_wh.sum(axis=0),
        "deficit_wh": outcome.deficit_wh.sum(axis=0),
        "local_match_wh": bought,
        "optimum_match_wh": np.asarray(optimum.matched_wh, dtype=np.float64),
        "grid_import_wh": outcome.grid_import_wh.sum(axis=0),
        "grid_export_wh": outcome.grid_export_wh.sum(axis=0),
        "wasted_wh": outcome.wasted_wh.sum(axis=0),
        "p2p_price_per_kwh": price,
        "retail_per_kwh": _per_interval_price(retail_per_kwh, outcome.shape),
        "feed_in_per_kwh": _per_interval_price(feed_in_per_kwh, outcome.shape),
    }


def _per_cell(prices, shape: tuple[int, int]) -> np.ndarray:
    """Prices per interval ([T]) or per house and interval ([H, T]) as an [H, T] array."""
    array = np.asarray(prices, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    return np.broadcast_to(array, shape)


def _per_interval_price(prices, shape: tuple[int, int]) -> np.ndarray:
    array = np.asarray(prices, dtype=np.float64)
    return array.mean(axis=0) if array.ndim == 2 else np.broadcast_to(array, shape[1:]).copy()


def _ratio(numerator: float, denominator: float, if_zero: float = float("nan")) -> float:
    if denominator == 0:
        return if_zero if numerator == 0 else float("nan")
    return numerator / denominator
