"""The home-battery step: hand-computed cases and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator import BatteryBank, apply_batteries, step_batteries
from simulator.battery import no_batteries


def bank(capacity_wh, power_w, soc_wh, efficiency=0.81):
    return BatteryBank(capacity_wh=np.array(capacity_wh, float), power_w=np.array(power_w, float),
                       initial_soc_wh=np.array(soc_wh, float), round_trip_efficiency=efficiency)


def test_step_charges_from_surplus_within_power_and_room():
    # 15 minutes at 2 kW is at most 500 Wh; one-way efficiency is sqrt(0.81) = 0.9.
    b = bank([10_000, 10_000, 1_000], [2_000, 2_000, 2_000], [0, 0, 910])
    step = step_batteries(b, b.initial_soc_wh, np.array([300.0, 900.0, 900.0]), 900)
    np.testing.assert_allclose(step.charge_wh, [300, 500, 100])
    np.testing.assert_allclose(step.soc_wh, [270, 450, 1000])
    assert (step.discharge_wh == 0).all()


def test_step_discharges_into_deficit_within_power_and_charge():
    b = bank([10_000, 10_000, 10_000], [2_000, 2_000, 2_000], [5_000, 5_000, 90])
    step = step_batteries(b, b.initial_soc_wh, np.array([-180.0, -900.0, -900.0]), 900)
    np.testing.assert_allclose(step.discharge_wh, [180, 500, 81])
    np.testing.assert_allclose(step.soc_wh, [4_800, 5_000 - 500 / 0.9, 0], atol=1e-9)
    assert (step.charge_wh == 0).all()


def test_no_battery_passes_net_through():
    generation = np.array([[0.0, 500.0, 100.0]])
    consumption = np.array([[200.0, 100.0, 100.0]])
    net = apply_batteries(generation, consumption, no_batteries(1), 900)
    np.testing.assert_array_equal(net.surplus_wh, [[0, 400, 0]])
    np.testing.assert_array_equal(net.deficit_wh, [[200, 0, 0]])


def test_battery_shifts_midday_surplus_to_the_evening():
    generation = np.array([[1000.0, 1000.0, 0.0, 0.0]])
    consumption = np.array([[200.0, 200.0, 600.0, 600.0]])
    b = bank([1_000], [4_000], [0], efficiency=1.0)
    net = apply_batteries(generation, consumption, b, 900)
    np.testing.assert_allclose(net.charge_wh, [[800, 200, 0, 0]])
    np.testing.assert_allclose(net.surplus_wh, [[0, 600, 0, 0]])
    np.testing.assert_allclose(net.discharge_wh, [[0, 0, 600, 400]])
    np.testing.assert_allclose(net.deficit_wh, [[0, 0, 0, 200]])
    np.testing.assert_allclose(net.soc_wh, [[0, 800, 1000, 400, 0]])


def test_random_run_keeps_invariants():
    rng = np.random.default_rng(0)
    generation = rng.uniform(0, 1500, (50, 96))
    consumption = rng.uniform(0, 1500, (50, 96))
    b = bank(rng.uniform(0, 10_000, 50), rng.uniform(0, 5_000, 50), rng.uniform(0, 5_000, 50))
    net = apply_batteries(generation, consumption, b, 900)
    assert (net.soc_wh >= 0).all() and (net.soc_wh <= b.capacity_wh[:, None] + 1e-9).all()
    limit = b.power_w[:, None] * 0.25 + 1e-9
    assert (net.charge_wh <= limit).all() and (net.discharge_wh <= limit).all()
    assert not ((net.charge_wh > 0) & (net.discharge_wh > 0)).any()
    np.testing.assert_allclose(generation - consumption,
                               net.surplus_wh - net.deficit_wh + net.charge_wh - net.discharge_wh,
                               atol=1e-9)
    # Stored energy = what went in after losses minus what came out before losses.
    eta = math.sqrt(b.round_trip_efficiency)
    stored = net.charge_wh.sum(axis=1) * eta - net.discharge_wh.sum(axis=1) / eta
    np.testing.assert_allclose(net.soc_wh[:, -1] - net.soc_wh[:, 0], stored, atol=1e-6)


@pytest.mark.parametrize("net_wh", [0.0, 1e-12])
def test_idle_battery_stays_put(net_wh):
    b = bank([5_000], [2_000], [2_500])
    step = step_batteries(b, b.initial_soc_wh, np.array([net_wh]), 900)
    assert step.soc_wh[0] == pytest.approx(2_500)
