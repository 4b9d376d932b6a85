"""The exact optimum: hand-solved cases, LP against the closed forms, constraints respected."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from simulator import (
    MarketClearing, MatchConstraints, ProfileSpec, Tariffs, build_profiles, max_local_match_wh,
    merit_order, run_baselines, score, solve_interval_lp, solve_optimum,
)

# Houses 0, 1 sell (1000 Wh at 0.10, 2000 Wh at 0.20); houses 2, 3 buy (1500 Wh up to 0.30,
# 1000 Wh up to 0.15).  By hand: house 2 takes 1000 Wh from house 0 (gain 0.20/kWh) and 500 Wh
# from house 1 (gain 0.10/kWh); house 3's bid is below house 1's ask, so welfare stops there:
# 0.2 + 0.05 = 0.25 over 1500 Wh.  The most energy that can move is min(3000, 2500) = 2500 Wh.
SURPLUS = np.array([1000.0, 2000.0, 0.0, 0.0])
ASK = np.array([0.10, 0.20, 0.0, 0.0])
DEFICIT = np.array([0.0, 0.0, 1500.0, 1000.0])
BID = np.array([0.0, 0.0, 0.30, 0.15])


def test_hand_solved_merit_order():
    solution = merit_order(SURPLUS, ASK, DEFICIT, BID)
    assert solution.matched_wh == pytest.approx(1500)
    assert solution.welfare == pytest.approx(0.25)
    np.testing.assert_allclose(solution.sold_wh, [1000, 500, 0, 0])
    np.testing.assert_allclose(solution.bought_wh, [0, 0, 1500, 0])


def test_hand_solved_lp_both_objectives():
    welfare = solve_interval_lp(SURPLUS, ASK, DEFICIT, BID, objective="welfare")
    assert welfare.status == "optimal"
    assert welfare.welfare == pytest.approx(0.25) and welfare.matched_wh == pytest.approx(1500)
    energy = solve_interval_lp(SURPLUS, ASK, DEFICIT, BID, objective="energy")
    assert energy.matched_wh == pytest.approx(2500)
    np.testing.assert_allclose(energy.bought_wh, [0, 0, 1500, 1000])


def test_closed_form_match_is_min_of_totals():
    surplus = np.array([[500.0, 0.0, 0.0], [300.0, 0.0, 100.0], [0.0, 0.0, 0.0]])
    deficit = np.array([[0.0, 200.0, 0.0], [0.0, 0.0, 0.0], [600.0, 0.0, 50.0]])
    np.testing.assert_allclose(max_local_match_wh(surplus, deficit), [600, 0, 50])


@pytest.mark.parametrize("seed", range(8))
def test_lp_equals_closed_form_without_constraints(seed):
    rng = np.random.default_rng(seed)
    net = rng.normal(0, 800, 15) * (rng.random(15) < 0.8)
    surplus, deficit = np.maximum(net, 0), np.maximum(-net, 0)
    ask, bid = rng.uniform(0.05, 0.25, 15), rng.uniform(0.10, 0.35, 15)
    closed = merit_order(surplus, ask, deficit, bid)
    welfare = solve_interval_lp(surplus, ask, deficit, bid, objective="welfare")
    energy = solve_interval_lp(surplus, ask, deficit, bid, objective="energy")
    assert welfare.welfare == pytest.approx(closed.welfare, abs=1e-9)
    assert energy.matched_wh == pytest.approx(min(surplus.sum(), deficit.sum()), abs=1e-6)
    # With every bid above every ask, the welfare optimum also moves the most energy.
    uniform = merit_order(surplus, np.full(15, 0.08), deficit, np.full(15, 0.30))
    assert uniform.matched_wh == pytest.approx(min(surplus.sum(), deficit.sum()))
    assert uniform.welfare == pytest.approx(uniform.matched_wh * 0.22 / 1000)


def test_pair_limit_binds():
    # One seller with 3000 Wh, two buyers with 2000 Wh each, at most 1000 Wh per pair.
    surplus, deficit = np.array([3000.0, 0, 0]), np.array([0, 2000.0, 2000.0])
    prices = np.full(3, 0.1), np.full(3, 0.3)
    solution = solve_interval_lp(surplus, prices[0], deficit, prices[1], objective="energy",
                                 constraints=MatchConstraints(max_pair_wh=1000))
    assert solution.matched_wh == pytest.approx(2000)
    np.testing.assert_allclose(solution.bought_wh, [0, 1000, 1000])


def test_allowed_pairs_bind():
    # Sellers 0 (1000 Wh) and 1 (1000 Wh); buyers 2 (1500 Wh) and 3 (500 Wh).  Seller 0 may
    # only sell to buyer 3, seller 1 to anyone: at most 500 + 1000 = 1500 Wh.
    surplus = np.array([1000.0, 1000.0, 0, 0])
    deficit = np.array([0, 0, 1500.0, 500.0])
    allowed = np.ones((4, 4), bool)
    allowed[0, 2] = False
    constraints = MatchConstraints(allowed=allowed)
    solution = solve_interval_lp(surplus, np.full(4, 0.1), deficit, np.full(4, 0.3),
                                 objective="energy", constraints=constraints)
    assert solution.matched_wh == pytest.approx(1500)
    assert solution.sold_wh[0] == pytest.approx(500)


def test_a_house_never_trades_with_itself():
    # House 0 both "has surplus" and "has deficit" (a malformed input): no self trade.
    solution = solve_interval_lp(np.array([500.0, 0]), np.zeros(2), np.array([500.0, 0]),
                                 np.ones(2), objective="energy")
    assert solution.matched_wh == 0


def random_positions(seed, houses=12, intervals=5):
    rng = np.random.default_rng(seed)
    net = rng.normal(0, 600, (houses, intervals))
    return np.maximum(net, 0), np.maximum(-net, 0)


def test_solve_optimum_lp_matches_closed_form_per_interval():
    surplus, deficit = random_positions(1)
    closed = solve_optimum(surplus, deficit, 0.08, 0.30)
    lp = solve_optimum(surplus, deficit, 0.08, 0.30, method="lp")
    assert closed.method == "closed_form" and lp.method == "lp"
    np.testing.assert_allclose(lp.matched_wh, closed.matched_wh, atol=1e-6)
    np.testing.assert_allclose(lp.welfare, closed.welfare, atol=1e-9)
    np.testing.assert_allclose(closed.matched_wh, max_local_match_wh(surplus, deficit))
    assert set(closed.status) == {"optimal"}


def test_solve_optimum_respects_constraints():
    surplus, deficit = random_positions(2)
    free = solve_optimum(surplus, deficit, 0.08, 0.30)
    capped = solve_optimum(surplus, deficit, 0.08, 0.30,
                           constraints=MatchConstraints(max_pair_wh=100.0))
    assert capped.method == "lp"
    assert (capped.matched_wh <= free.matched_wh + 1e-6).all()
    assert (capped.matched_wh < free.matched_wh - 1).any(), "the cap should bind somewhere"
    assert (capped.sold_wh <= surplus + 1e-6).all() and (capped.bought_wh <= deficit + 1e-6).all()
    # Each seller can reach at most (number of buyers) * cap.
    buyers = (deficit > 0).sum(axis=0)
    assert (capped.sold_wh <= buyers * 100.0 + 1e-6).all()
    with pytest.raises(ValueError, match="closed form cannot respect"):
        solve_optimum(surplus, deficit, 0.08, 0.30, method="closed_form",
                      constraints=MatchConstraints(max_pair_wh=1.0))


def test_allocation_respects_positions_and_balances():
    surplus, deficit = random_positions(3, houses=30, intervals=8)
    bid = np.random.default_rng(0).uniform(0.1, 0.4, surplus.shape)
    optimum = solve_optimum(surplus, deficit, 0.15, bid)
    assert (optimum.sold_wh <= surplus + 1e-9).all()
    assert (optimum.bought_wh <= deficit + 1e-9).all()
    np.testing.assert_allclose(optimum.sold_wh.sum(axis=0), optimum.bought_wh.sum(axis=0))
    np.testing.assert_allclose(optimum.bought_wh.sum(axis=0), optimum.welfare_matched_wh)
    assert (optimum.welfare_matched_wh <= optimum.matched_wh + 1e-9).all()


@pytest.fixture(scope="module")
def community():
    return build_profiles(ProfileSpec(houses=24, day=date(2023, 6, 30), seed=1), use_cache=False)


def test_baselines_on_real_profiles(community):
    tariffs = Tariffs()
    baselines = run_baselines(community, tariffs)
    no_trade = baselines.no_trading
    np.testing.assert_array_equal(no_trade.grid_import_wh, community.deficit_wh)
    np.testing.assert_array_equal(no_trade.grid_export_wh, community.surplus_wh)
    assert baselines.optimum.matched_kwh > 0
    np.testing.assert_allclose(baselines.optimum.matched_wh,
                               max_local_match_wh(community.surplus_wh, community.deficit_wh))
    prices = baselines.prices
    metrics = score(baselines.optimum_outcome, baselines.optimum, prices.retail_per_kwh,
                    prices.feed_in_per_kwh)
    assert metrics.local_match_ratio == pytest.approx(1.0)
    assert metrics.welfare_ratio == pytest.approx(1.0)
    assert metrics.households_worse_off == 0


def test_a_market_plugs_in(community):
    """The double auction of optimizer.markets plugs in the same way as this stand-in."""
    calls = []

    def half_of_the_optimum(surplus_wh, ask_per_kwh, deficit_wh, bid_per_kwh, *,
                            retail_per_kwh, feed_in_per_kwh):
        calls.append(retail_per_kwh)
        best = merit_order(surplus_wh, ask_per_kwh, deficit_wh, bid_per_kwh)
        price = (retail_per_kwh + feed_in_per_kwh) / 2
        return MarketClearing.uniform(best.sold_wh / 2, best.bought_wh / 2, price)

    baselines = run_baselines(community, Tariffs(),
                              markets={"double_auction": half_of_the_optimum})
    assert len(calls) == community.intervals
    outcome = baselines.markets["double_auction"]
    prices = baselines.prices
    metrics = score(outcome, baselines.optimum, prices.retail_per_kwh, prices.feed_in_per_kwh)
    assert metrics.local_match_ratio == pytest.approx(0.5)
    np.testing.assert_allclose(outcome.paid.sum(), outcome.received.sum())


def test_export_cap_creates_waste(community):
    tariffs = Tariffs(export_limit_kw=1.0)
    no_trade = run_baselines(community, tariffs).no_trading
    assert (no_trade.grid_export_wh <= 250.0 + 1e-9).all()
    np.testing.assert_allclose(no_trade.grid_export_wh + no_trade.wasted_wh, community.surplus_wh)
    assert no_trade.wasted_wh.sum() > 0
