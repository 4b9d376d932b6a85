"""NSGA-II welfare optimisation: repair invariants, quality against the exact optimum, the
90 % capping loop on a feeder with a hand-computable voltage limit, and its outcomes."""

from __future__ import annotations

import math

import numpy as np
import pandapower as pp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.markets.auction import clear_double_auction
from optimizer.markets.errors import OrderError
from optimizer.markets.nsga2 import Nsga2Config, optimise_welfare
from optimizer.markets.orders import Order, Side
from optimizer.markets.welfare import Participant, WelfareProblem, decode, problem_from_orders, welfare
from optimizer.powerflow import feeder_from_pandapower, load_feeder, solve

SMALL = Nsga2Config(population=24, generations=30)


def street_orders() -> list[Order]:
    asks = [(6, 0.08), (4, 0.12), (8, 0.15), (5, 0.19), (3, 0.26)]
    bids = [(5, 0.30), (7, 0.24), (3, 0.21), (6, 0.14), (4, 0.10)]
    return [Order(f"S{i}", Side.SELL, k, p) for i, (k, p) in enumerate(asks)] + \
           [Order(f"B{i}", Side.BUY, k, p) for i, (k, p) in enumerate(bids)]


@pytest.fixture(scope="module")
def village():
    return load_feeder("kerber_dorfnetz")


def village_problem(feeder) -> WelfareProblem:
    orders = street_orders()
    buses = {o.id: int(feeder.bus_index[feeder.load_buses[5 * n]]) for n, o in enumerate(orders)}
    return problem_from_orders(orders, buses, grid_tariff=0.28, hours=1.0)


def test_front_reaches_the_exact_optimum_and_respects_every_limit(village):
    problem = village_problem(village)
    optimum = clear_double_auction(street_orders(), 0.28).welfare  # LP-exact (see test_auction)
    result = optimise_welfare(problem, village, np.random.default_rng(3), SMALL)
    assert result.status == "feasible" and result.rounds == 1
    assert len(result.front) >= 5
    assert result.chosen.social_welfare >= 0.97 * optimum
    assert max(s.social_welfare for s in result.front) <= optimum + 1e-9
    asks = np.array([s.price for s in problem.sellers])
    bids = np.minimum([b.price for b in problem.buyers], 0.28)
    for solution in result.front:
        kwh = solution.kwh
        assert (kwh.sum(axis=1) <= [s.kwh for s in problem.sellers] + np.full(5, 1e-9)).all()
        assert (kwh.sum(axis=0) <= [b.kwh for b in problem.buyers] + np.full(5, 1e-9)).all()
        traded = kwh > 0
        assert (asks[:, None] <= solution.price + 1e-12)[traded.any(axis=1)].all()
        assert (bids[None, :] >= solution.price - 1e-12)[:, traded.any(axis=0)].all()
        assert solution.feasible and 0.95 <= solution.vm_pu.min() <= solution.vm_pu.max() <= 1.05
    sellers = [s.seller_welfare for s in result.front]
    buyers = [s.buyer_welfare for s in result.front]
    assert sellers == sorted(sellers) and buyers == sorted(buyers, reverse=True)  # a real trade-off


def test_same_seed_same_front(village):
    problem = village_problem(village)
    runs = [optimise_welfare(problem, village, np.random.default_rng(9), SMALL) for _ in range(2)]
    assert [s.seller_welfare for s in runs[0].front] == [s.seller_welfare for s in runs[1].front]
    np.testing.assert_array_equal(runs[0].chosen.kwh, runs[1].chosen.kwh)


def two_bus_feeder():
    """Slack and one bus 0.5 km away; a seller there raises its voltage."""
    net = pp.create_empty_network()
    a, b = pp.create_bus(net, 0.4), pp.create_bus(net, 0.4)
    pp.create_ext_grid(net, a)
    pp.create_line_from_parameters(net, a, b, 0.5, 0.2, 0.08, 0, 0.4)
    return feeder_from_pandapower(net, "two-bus")


def max_export_mw(feeder, v_max=1.05) -> float:
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        ok = solve(feeder, [0.0, -mid]).vm_pu.max() <= v_max
        lo, hi = (mid, hi) if ok else (lo, mid)
    return lo


def test_sellers_at_violating_buses_are_capped_to_90_percent_until_feasible():
    feeder = two_bus_feeder()
    limit_kwh = max_export_mw(feeder) * 1000  # one hour at the largest feasible export
    supply = limit_kwh / 0.9 ** 3.5  # needs four cuts: 0.9**3 * supply > limit > 0.9**4 * supply
    problem = WelfareProblem(
        sellers=(Participant("pv", supply, 0.05, bus=1),),
        buyers=(Participant("shop", 10 * supply, 0.25, bus=0),), grid_tariff=0.30)
    result = optimise_welfare(problem, feeder, np.random.default_rng(1), SMALL)
    assert result.status == "feasible"
    assert result.rounds == 5
    assert result.supply_kwh[0] == pytest.approx(supply * 0.9 ** 4)
    assert result.capped_sellers == ("pv",)
    assert result.chosen.traded_kwh <= limit_kwh
    assert result.chosen.traded_kwh >= 0.95 * supply * 0.9 ** 4
    assert result.chosen.vm_pu.max() <= 1.05


def test_violation_without_sellers_is_reported_infeasible():
    feeder = two_bus_feeder()
    problem = WelfareProblem(  # the buyer's own demand sinks her bus below 0.95 p.u.
        sellers=(Participant("pv", 1.0, 0.05, bus=0),),
        buyers=(Participant("factory", 200.0, 0.25, bus=1),), grid_tariff=0.30)
    result = optimise_welfare(problem, feeder, np.random.default_rng(1), SMALL)
    assert (result.status, result.rounds) == ("infeasible", 1)
    assert "only at buses without sellers" in result.reason
    assert result.chosen is None and result.front and not any(s.feasible for s in result.front)


def test_no_possible_trade_is_a_result():
    feeder = two_bus_feeder()
    problem = WelfareProblem((Participant("s", 1, 0.3, 1),), (Participant("b", 1, 0.2, 0),), 0.4)
    result = optimise_welfare(problem, feeder, np.random.default_rng(0), SMALL)
    assert (result.status, result.chosen, result.evaluations) == ("no_trade", None, 0)


def test_bad_configuration_names_the_field():
    with pytest.raises(OrderError, match="population"):
        Nsga2Config(population=7)
    with pytest.raises(OrderError, match="cap_factor"):
        Nsga2Config(cap_factor=1.0)
    with pytest.raises(OrderError, match="hours"):
        WelfareProblem((), (), 0.3, hours=0)
    with pytest.raises(OrderError, match="order S0: no bus"):
        problem_from_orders(street_orders(), {}, 0.3)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_decoding_repairs_any_genome(n_sellers, n_buyers, seed):
    rng = np.random.default_rng(seed)
    sellers = tuple(Participant(f"s{i}", rng.uniform(0.5, 9), rng.uniform(0, 0.3), 0)
                    for i in range(n_sellers))
    buyers = tuple(Participant(f"b{i}", rng.uniform(0.5, 9), rng.uniform(0, 0.4), 0)
                   for i in range(n_buyers))
    problem = WelfareProblem(sellers, buyers, grid_tariff=0.3)
    if problem.price_range() is None:
        return
    supply = np.array([s.kwh for s in sellers])
    genes = rng.random((16, problem.n_genes))
    genes[0] = 1.0  # all at the top of every range
    kwh, price = decode(problem, genes, supply)
    assert (kwh >= 0).all()
    assert (kwh.sum(axis=2) <= supply + 1e-9).all()
    assert (kwh.sum(axis=1) <= np.array([b.kwh for b in buyers]) + 1e-9).all()
    seller_w, buyer_w = welfare(problem, kwh, price)
    assert (seller_w >= -1e-12).all() and (buyer_w >= -1e-12).all()
    assert all(math.isfinite(w) for w in [*seller_w, *buyer_w])
