"""Cross-check: the uniform double auction of ``optimizer.markets``, plugged in as an
:class:`~simulator.IntervalMarket`, reaches the exact optimum when nothing else constrains it
(divisible orders, every bid above every ask).  The adapter below is the shape the swarm runner
uses to pass the auction to :func:`simulator.run_baselines`.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from simulator import MarketClearing, ProfileSpec, Tariffs, build_profiles, run_baselines, score

markets = pytest.importorskip("optimizer.markets")


def double_auction(surplus_wh, ask_per_kwh, deficit_wh, bid_per_kwh, *, retail_per_kwh,
                   feed_in_per_kwh):
    """Adapter: per-house arrays -> orders -> one uniform-price clearing -> per-house arrays."""
    del feed_in_per_kwh  # sellers' asks already carry it
    orders = [markets.Order(f"s{i}", markets.Side.SELL, surplus_wh[i] / 1000, ask_per_kwh[i])
              for i in np.flatnonzero(surplus_wh > 0)]
    orders += [markets.Order(f"b{j}", markets.Side.BUY, deficit_wh[j] / 1000, bid_per_kwh[j])
               for j in np.flatnonzero(deficit_wh > 0)]
    result = markets.clear_double_auction(orders, grid_tariff=retail_per_kwh)
    sold, bought = np.zeros(surplus_wh.size), np.zeros(deficit_wh.size)
    for trade in result.trades:
        sold[int(trade.seller[1:])] += trade.kwh * 1000
        bought[int(trade.buyer[1:])] += trade.kwh * 1000
    return MarketClearing.uniform(np.minimum(sold, surplus_wh), np.minimum(bought, deficit_wh),
                                  result.mcp or 0.0)


def test_double_auction_reaches_the_unconstrained_optimum():
    profiles = build_profiles(ProfileSpec(houses=24, day=date(2023, 6, 30), seed=3),
                              use_cache=False)
    baselines = run_baselines(profiles, Tariffs(), markets={"double_auction": double_auction})
    auction = baselines.markets["double_auction"]
    np.testing.assert_allclose(auction.bought_wh.sum(axis=0), baselines.optimum.matched_wh,
                               atol=1e-6)
    prices = baselines.prices
    metrics = score(auction, baselines.optimum, prices.retail_per_kwh, prices.feed_in_per_kwh)
    assert metrics.local_match_ratio == pytest.approx(1.0)
    assert metrics.welfare_ratio == pytest.approx(1.0)
    assert metrics.households_worse_off == 0
    traded = auction.bought_wh.sum(axis=0) > 0
    unit = auction.paid.sum(axis=0)[traded] / auction.bought_wh.sum(axis=0)[traded] * 1000
    assert ((unit >= prices.feed_in_per_kwh[traded] - 1e-9)
            & (unit <= prices.retail_per_kwh[traded] + 1e-9)).all()
