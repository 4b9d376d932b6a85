"""Metrics on a hand-computed two-house, two-interval community, and the Gini coefficient."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from simulator import (
    gini, per_interval, savings_per_house, score, settle, solve_optimum, trade_arrays,
)
from simulator.metrics import net_cost

# House 0: PV 1000 Wh then nothing, uses 200 then 500 -> surplus [800, 0], deficit [0, 500].
# House 1: no PV, uses 600 then 300               -> deficit [600, 300].
# In interval 0 house 0 sells 500 Wh to house 1 at 0.25/kWh (0.125 changes hands).
GENERATION = np.array([[1000.0, 0.0], [0.0, 0.0]])
CONSUMPTION = np.array([[200.0, 500.0], [600.0, 300.0]])
SURPLUS = np.array([[800.0, 0.0], [0.0, 0.0]])
DEFICIT = np.array([[0.0, 500.0], [600.0, 300.0]])
RETAIL = np.array([0.30, 0.40])
FEED_IN = np.array([0.10, 0.10])


@pytest.fixture
def outcome():
    return settle(generation_wh=GENERATION, consumption_wh=CONSUMPTION, surplus_wh=SURPLUS,
                  deficit_wh=DEFICIT, bought_wh=[[0, 0], [500, 0]], sold_wh=[[500, 0], [0, 0]],
                  paid=[[0, 0], [0.125, 0]], received=[[0.125, 0], [0, 0]])


@pytest.fixture
def optimum():
    return solve_optimum(SURPLUS, DEFICIT, FEED_IN, RETAIL)


def test_trade_table_becomes_the_same_outcome(outcome):
    # The one trade of the fixture, split in two partial deliveries of the agreed 300 + 300 Wh.
    arrays = trade_arrays(2, 2, interval=[0, 0], seller=[0, 0], buyer=[1, 1],
                          energy_wh=[300, 300], delivered_wh=[300, 200], price_per_kwh=[0.25, 0.25])
    again = settle(generation_wh=GENERATION, consumption_wh=CONSUMPTION, surplus_wh=SURPLUS,
                   deficit_wh=DEFICIT, **arrays)
    for name in ("bought_wh", "sold_wh", "paid", "received", "grid_import_wh"):
        np.testing.assert_allclose(getattr(again, name), getattr(outcome, name))


def test_settle_tolerance_for_whole_wh_tokens():
    rounded_up = [[0, 0], [0, 300.6]]
    with pytest.raises(ValueError):
        settle(generation_wh=GENERATION, consumption_wh=CONSUMPTION, surplus_wh=SURPLUS,
               deficit_wh=DEFICIT, bought_wh=rounded_up)
    settled = settle(generation_wh=GENERATION, consumption_wh=CONSUMPTION, surplus_wh=SURPLUS,
                     deficit_wh=DEFICIT, bought_wh=rounded_up, tolerance_wh=1.0)
    assert settled.grid_import_wh[1, 1] == 0


def test_settle_completes_with_the_grid(outcome):
    np.testing.assert_allclose(outcome.grid_import_wh, [[0, 500], [100, 300]])
    np.testing.assert_allclose(outcome.grid_export_wh, [[300, 0], [0, 0]])
    assert not outcome.wasted_wh.any()


def test_hand_computed_metrics(outcome, optimum):
    m = score(outcome, optimum, RETAIL, FEED_IN)
    assert (m.meters, m.intervals) == (2, 2)
    assert m.generation_kwh == pytest.approx(1.0)
    assert m.consumption_kwh == pytest.approx(1.6)
    assert m.local_match_kwh == pytest.approx(0.5)
    assert m.optimum_match_kwh == pytest.approx(0.6)          # min(800, 600) + min(0, 800)
    assert m.local_match_ratio == pytest.approx(5 / 6)
    assert m.welfare == pytest.approx(0.5 * 0.30 - 0.5 * 0.10)
    assert m.optimum_welfare == pytest.approx(0.6 * 0.20)
    assert m.welfare_ratio == pytest.approx(0.10 / 0.12)
    assert m.grid_import_kwh == pytest.approx(0.9)
    assert m.grid_export_kwh == pytest.approx(0.3)
    assert m.wasted_surplus_kwh == 0
    assert m.self_sufficiency == pytest.approx(1 - 0.9 / 1.6)
    assert m.self_consumption == pytest.approx(1 - 0.3 / 1.0)
    assert m.average_p2p_price_per_kwh == pytest.approx(0.25)
    assert m.average_import_price_per_kwh == pytest.approx((0.5 * 0.4 + 0.1 * 0.3 + 0.3 * 0.4)
                                                           / 0.9)
    # Costs without trading: house 0 pays 0.20 and earns 0.08; house 1 pays 0.18 + 0.12.
    # With trading: house 0 pays 0.20, earns 0.03 + 0.125; house 1 pays 0.03 + 0.12 + 0.125.
    assert m.total_savings == pytest.approx(0.10)
    assert m.mean_savings == pytest.approx(0.05)
    assert m.savings_gini == pytest.approx(0.25)              # (0.075 - 0.025) / (2 * 0.1)
    assert m.households_worse_off == 0


def test_savings_and_costs_per_house(outcome):
    baseline = settle(generation_wh=GENERATION, consumption_wh=CONSUMPTION, surplus_wh=SURPLUS,
                      deficit_wh=DEFICIT)
    np.testing.assert_allclose(net_cost(baseline, RETAIL, FEED_IN), [0.12, 0.30])
    np.testing.assert_allclose(net_cost(outcome, RETAIL, FEED_IN), [0.045, 0.275])
    np.testing.assert_allclose(savings_per_house(outcome, baseline, RETAIL, FEED_IN),
                               [0.075, 0.025])


def test_total_savings_equal_welfare_without_export_cap():
    rng = np.random.default_rng(4)
    net = rng.normal(0, 500, (20, 6))
    surplus, deficit = np.maximum(net, 0), np.maximum(-net, 0)
    retail, feed_in = rng.uniform(0.2, 0.4, 6), np.full(6, 0.08)
    best = solve_optimum(surplus, deficit, feed_in, retail)
    price = rng.uniform(0.08, 0.2, 6)
    outcome = settle(generation_wh=surplus + 100, consumption_wh=deficit + 100,
                     surplus_wh=surplus, deficit_wh=deficit, bought_wh=best.bought_wh,
                     sold_wh=best.sold_wh, paid=best.bought_wh * price / 1000,
                     received=best.sold_wh * price / 1000)
    m = score(outcome, best, retail, feed_in)
    assert m.total_savings == pytest.approx(m.welfare)
    assert m.welfare_ratio == pytest.approx(1.0)


def test_no_trading_scores_zero_and_nothing_to_match_scores_one():
    nothing = np.zeros((3, 2))
    deficit = np.full((3, 2), 100.0)
    outcome = settle(generation_wh=nothing, consumption_wh=deficit, surplus_wh=nothing,
                     deficit_wh=deficit)
    m = score(outcome, solve_optimum(nothing, deficit, 0.1, 0.3), 0.3 * np.ones(2),
              0.1 * np.ones(2))
    assert m.local_match_ratio == 1.0 and m.welfare_ratio == 1.0
    assert m.self_sufficiency == 0.0
    assert math.isnan(m.self_consumption) and math.isnan(m.average_p2p_price_per_kwh)
    record = json.loads(json.dumps(m.as_dict()))
    assert record["self_consumption"] is None and record["savings_gini"] == 0.0


def test_export_cap_counts_waste():
    outcome = settle(generation_wh=SURPLUS, consumption_wh=np.zeros((2, 2)), surplus_wh=SURPLUS,
                     deficit_wh=np.zeros((2, 2)), export_limit_wh=250.0)
    np.testing.assert_allclose(outcome.grid_export_wh, [[250, 0], [0, 0]])
    np.testing.assert_allclose(outcome.wasted_wh, [[550, 0], [0, 0]])
    m = score(outcome, solve_optimum(SURPLUS, np.zeros((2, 2)), 0.1, 0.3), RETAIL, FEED_IN)
    assert m.wasted_surplus_kwh == pytest.approx(0.55)
    assert m.self_consumption == pytest.approx(0.0)


def test_settle_rejects_impossible_trades():
    over = r"bought_wh exceeds deficit_wh by 1 Wh \(house 1, interval 1\)"
    with pytest.raises(ValueError, match=over):
        settle(generation_wh=GENERATION, consumption_wh=CONSUMPTION, surplus_wh=SURPLUS,
               deficit_wh=DEFICIT, bought_wh=[[0, 0], [0, 301]])
    with pytest.raises(ValueError, match="sold_wh has negative"):
        settle(generation_wh=GENERATION, consumption_wh=CONSUMPTION, surplus_wh=SURPLUS,
               deficit_wh=DEFICIT, sold_wh=[[-1, 0], [0, 0]])
    with pytest.raises(ValueError, match="paid has shape"):
        settle(generation_wh=GENERATION, consumption_wh=CONSUMPTION, surplus_wh=SURPLUS,
               deficit_wh=DEFICIT, paid=[1.0])


def test_per_interval_columns(outcome, optimum):
    table = per_interval(outcome, optimum, RETAIL, FEED_IN)
    np.testing.assert_allclose(table["local_match_wh"], [500, 0])
    np.testing.assert_allclose(table["optimum_match_wh"], [600, 0])
    np.testing.assert_allclose(table["p2p_price_per_kwh"], [0.25, np.nan])
    np.testing.assert_allclose(table["grid_import_wh"], [100, 800])
    np.testing.assert_allclose(table["retail_per_kwh"], RETAIL)
    assert {len(column) for column in table.values()} == {2}


@pytest.mark.parametrize("values, expected", [
    ([5.0, 5.0, 5.0], 0.0),
    ([0.0, 0.0, 0.0], 0.0),
    ([0.0, 0.0, 0.0, 1.0], 0.75),
    ([1.0, 3.0], 0.25),
    ([1.0, 2.0, 3.0, 4.0], 0.25),
])
def test_gini_known_values(values, expected):
    assert gini(values) == pytest.approx(expected)


def test_gini_matches_the_pairwise_definition():
    x = np.random.default_rng(2).exponential(1.0, 40)
    brute = np.abs(x[:, None] - x[None, :]).mean() / (2 * x.mean())
    assert gini(x) == pytest.approx(brute)
    assert gini(np.random.default_rng(3).permutation(x)) == pytest.approx(brute)


def test_gini_undefined_cases():
    assert math.isnan(gini([]))
    assert math.isnan(gini([-1.0, 1.0]))
