"""Every baseline on the same profiles, in one call: what a run is compared against.

* ``no_trading``: grid only (each deficit imported, each surplus exported up to the cap).
* ``optimum``: the exact centralised optimum of locally matched energy and welfare
  (:mod:`simulator.optimum`), plus ``optimum_outcome``: its welfare-optimal allocation settled
  at the midpoint of retail price and feed-in tariff, so savings and fairness can be compared.
* ``markets``: any per-interval market mechanism passed in as an :class:`IntervalMarket`.  The
  uniform-price double auction lives in ``optimizer.markets`` (another package); the swarm
  runner wraps it in a small adapter with this signature and passes it as
  ``markets={"double_auction": adapter}``.  Nothing here imports the optimizer.

All functions are pure: they take :class:`~simulator.profiles.Profiles` and
:class:`~simulator.tariffs.Tariffs` and return arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from simulator.optimum import MatchConstraints, Optimum, solve_optimum
from simulator.outcome import Outcome, settle
from simulator.profiles import Profiles
from simulator.tariffs import Tariffs


@dataclass(frozen=True, eq=False)
class MarketClearing:
    """One interval of a market: energy per house ([house]) and what each paid / received."""

    sold_wh: np.ndarray
    bought_wh: np.ndarray
    paid: np.ndarray
    received: np.ndarray

    @classmethod
    def uniform(cls, sold_wh, bought_wh, price_per_kwh: float) -> MarketClearing:
        """A clearing where every kWh changes hands at one price."""
        sold, bought = np.asarray(sold_wh, float), np.asarray(bought_wh, float)
        return cls(sold_wh=sold, bought_wh=bought, paid=bought * price_per_kwh / 1000,
                   received=sold * price_per_kwh / 1000)


class IntervalMarket(Protocol):
    """Clears one interval.  Arrays are [house]; prices per kWh; returns a clearing."""

    def __call__(self, surplus_wh: np.ndarray, ask_per_kwh: np.ndarray,
                 deficit_wh: np.ndarray, bid_per_kwh: np.ndarray, *, retail_per_kwh: float,
                 feed_in_per_kwh: float) -> MarketClearing: ...


@dataclass(frozen=True, eq=False)
class Prices:
    """Retail and feed-in per interval, and the bids/asks per house and interval."""

    retail_per_kwh: np.ndarray
    feed_in_per_kwh: np.ndarray
    bid_per_kwh: np.ndarray
    ask_per_kwh: np.ndarray


@dataclass(frozen=True, eq=False)
class Baselines:
    prices: Prices
    no_trading: Outcome
    optimum: Optimum
    optimum_outcome: Outcome
    markets: dict[str, Outcome] = field(default_factory=dict)


def default_prices(profiles: Profiles, tariffs: Tariffs) -> Prices:
    """Buyers bid the retail price they avoid; sellers ask the feed-in tariff they forgo."""
    retail = tariffs.retail_prices(profiles.interval_start)
    feed_in = tariffs.feed_in_prices(profiles.interval_start)
    shape = (profiles.houses, profiles.intervals)
    return Prices(retail_per_kwh=retail, feed_in_per_kwh=feed_in,
                  bid_per_kwh=np.broadcast_to(retail, shape),
                  ask_per_kwh=np.broadcast_to(feed_in, shape))


def settle_profiles(profiles: Profiles, tariffs: Tariffs, **trades) -> Outcome:
    """:func:`simulator.outcome.settle` with the positions and export cap of ``profiles``.

    ``trades``: ``bought_wh``, ``sold_wh``, ``paid``, ``received`` ([house, interval]); none
    given means no trading.
    """
    return settle(generation_wh=profiles.generation_wh, consumption_wh=profiles.consumption_wh,
                  surplus_wh=profiles.surplus_wh, deficit_wh=profiles.deficit_wh,
                  export_limit_wh=tariffs.export_limit_wh(profiles.interval_s), **trades)


def market_outcome(profiles: Profiles, tariffs: Tariffs, market: IntervalMarket,
                   prices: Prices | None = None) -> Outcome:
    """Run ``market`` on every interval of ``profiles`` and settle the result."""
    prices = prices or default_prices(profiles, tariffs)
    columns = []
    for t in range(profiles.intervals):
        clearing = market(profiles.surplus_wh[:, t], prices.ask_per_kwh[:, t],
                          profiles.deficit_wh[:, t], prices.bid_per_kwh[:, t],
                          retail_per_kwh=float(prices.retail_per_kwh[t]),
                          feed_in_per_kwh=float(prices.feed_in_per_kwh[t]))
        columns.append(clearing)
    stack = {name: np.stack([getattr(c, name) for c in columns], axis=1)
             for name in ("sold_wh", "bought_wh", "paid", "received")}
    return settle_profiles(profiles, tariffs, **stack)


def run_baselines(profiles: Profiles, tariffs: Tariffs, *,
                  markets: Mapping[str, IntervalMarket] | None = None,
                  constraints: MatchConstraints | None = None,
                  prices: Prices | None = None) -> Baselines:
    """No trading, the exact optimum, and each market in ``markets``, on the same data."""
    prices = prices or default_prices(profiles, tariffs)
    optimum = solve_optimum(profiles.surplus_wh, profiles.deficit_wh, prices.ask_per_kwh,
                            prices.bid_per_kwh, constraints=constraints)
    mid = (prices.retail_per_kwh + prices.feed_in_per_kwh) / 2
    optimum_outcome = settle_profiles(
        profiles, tariffs, bought_wh=optimum.bought_wh, sold_wh=optimum.sold_wh,
        paid=optimum.bought_wh * mid / 1000, received=optimum.sold_wh * mid / 1000)
    return Baselines(prices=prices, no_trading=settle_profiles(profiles, tariffs),
                     optimum=optimum, optimum_outcome=optimum_outcome,
                     markets={name: market_outcome(profiles, tariffs, market, prices)
                              for name, market in (markets or {}).items()})
