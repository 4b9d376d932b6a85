"""Cooperative pooling, feeder accounting, loss alerts and pool prices: hand-solved cases."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.markets.accounting import LossWatch, account_interval
from optimizer.markets.errors import OrderError
from optimizer.markets.pool_price import PoolTariffs, pool_price
from optimizer.markets.pooling import NodeReading, share_pool


def street() -> list[NodeReading]:
    return [NodeReading("A", 5, 2), NodeReading("B", 1, 4), NodeReading("C", 0, 3),
            NodeReading("D", 2, 2)]


def test_pool_smaller_than_demand_is_shared_in_proportion_to_deficits():
    pool = share_pool(street())
    got = {a.node: (a.self_kwh, a.to_pool_kwh, a.from_pool_kwh, a.export_kwh, a.import_kwh)
           for a in pool.allocations}
    assert got == {"A": (2, 3, 0, 0, 0), "B": (1, 0, 1.5, 0, 1.5),
                   "C": (0, 0, 1.5, 0, 1.5), "D": (2, 0, 0, 0, 0)}
    assert (pool.pool_kwh, pool.demand_kwh, pool.shared_kwh) == (3, 6, 3)


def test_pool_larger_than_demand_exports_in_proportion_to_surpluses():
    pool = share_pool([NodeReading("A", 6, 1), NodeReading("E", 3, 0), NodeReading("B", 0, 4)])
    got = {a.node: (a.to_pool_kwh, a.export_kwh, a.from_pool_kwh, a.import_kwh)
           for a in pool.allocations}
    assert got == {"A": (2.5, 2.5, 0, 0), "E": (1.5, 1.5, 0, 0), "B": (0, 0, 4, 0)}


def test_accounting_hand_solved_and_sign_convention():
    pool = share_pool(street())
    account = account_interval(pool, transformer_kwh=3.4, watch=LossWatch(threshold_kwh=0.3))
    assert (account.generation_kwh, account.consumption_kwh) == (8, 11)
    assert account.local_kwh == 8  # 5 own use + 3 from the pool
    assert (account.surplus_kwh, account.deficit_kwh) == (0, 3)
    assert account.loss_kwh == pytest.approx(0.4)  # T + G - C: 0.4 kWh entered, never metered
    assert account.alert
    exporting = account_interval(share_pool([NodeReading("A", 10, 2)]), -7.9, LossWatch(0.3))
    assert exporting.loss_kwh == pytest.approx(0.1) and not exporting.alert
    assert exporting.surplus_kwh == 8


def test_loss_alert_needs_persistence_and_resets():
    watch = LossWatch(threshold_kwh=0.5, persistence=3)
    assert watch.alerts([0.6, 0.7, 0.2, 0.6, 0.6, 0.6, -0.9, 0.1]) == (
        False, False, False, False, False, True, True, False)
    streak = 0
    for loss in (0.6, 0.6):
        account = account_interval(share_pool([NodeReading("A", 0, 1)]), 1 + loss, watch, streak)
        streak = account.loss_streak
    assert streak == 2 and not account.alert


@pytest.mark.parametrize("supply, demand, sdr, sell, buy", [
    (3, 6, 0.5, 0.024 / 0.19, 0.024 / 0.19 * 0.5 + 0.15),
    (0, 6, 0.0, 0.30, 0.30),
    (6, 6, 1.0, 0.08, 0.08),
    (9, 6, 1.5, 0.08, 0.08),
    (1, 0, math.inf, 0.08, 0.08),
])
def test_pool_price_hand_solved(supply, demand, sdr, sell, buy):
    price = pool_price(supply, demand, PoolTariffs(feed_in=0.08, retail=0.30))
    assert price.supply_demand_ratio == pytest.approx(sdr)
    assert (price.sell_price, price.buy_price) == (pytest.approx(sell), pytest.approx(buy))


@settings(max_examples=50, deadline=None)
@given(st.floats(0, 50), st.floats(0.001, 50), st.floats(0, 0.2), st.floats(0.01, 0.3))
def test_pool_price_stays_between_tariffs_and_falls_with_supply(supply, demand, f, spread):
    tariffs = PoolTariffs(f, f + spread)
    price = pool_price(supply, demand, tariffs)
    more = pool_price(supply + 1, demand, tariffs)
    for p in (price.sell_price, price.buy_price):
        assert f - 1e-12 <= p <= f + spread + 1e-12
    assert more.sell_price <= price.sell_price + 1e-12


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 20), st.floats(0, 20)), min_size=1, max_size=10))
def test_pool_conserves_energy(values):
    pool = share_pool(NodeReading(f"n{i}", g, c) for i, (g, c) in enumerate(values))
    for a in pool.allocations:
        assert a.self_kwh + a.to_pool_kwh + a.export_kwh == pytest.approx(a.generation_kwh)
        assert a.self_kwh + a.from_pool_kwh + a.import_kwh == pytest.approx(a.consumption_kwh)
        assert min(a.to_pool_kwh, a.from_pool_kwh, a.export_kwh, a.import_kwh) >= 0
        assert a.to_pool_kwh == 0 or a.from_pool_kwh == 0
    assert sum(a.to_pool_kwh for a in pool.allocations) == pytest.approx(pool.shared_kwh)
    assert sum(a.from_pool_kwh for a in pool.allocations) == pytest.approx(pool.shared_kwh)


@pytest.mark.parametrize("make, field", [
    (lambda: NodeReading("A", -1, 0), "generation_kwh"),
    (lambda: NodeReading("A", 0, float("inf")), "consumption_kwh"),
    (lambda: NodeReading("", 0, 0), "node"),
    (lambda: share_pool([NodeReading("A", 1, 0), NodeReading("A", 0, 1)]), "appears twice"),
    (lambda: LossWatch(-1), "loss_threshold_kwh"),
    (lambda: LossWatch(1, persistence=0), "persistence"),
    (lambda: PoolTariffs(0.3, 0.1), "feed_in"),
    (lambda: account_interval(share_pool([]), float("nan"), LossWatch(1)), "transformer_kwh"),
])
def test_bad_values_name_the_field(make, field):
    with pytest.raises(OrderError, match=field):
        make()
