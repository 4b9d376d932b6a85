"""Sub-interval readings derived from the interval profiles (simulator/substeps.py)."""

from __future__ import annotations

import numpy as np
import pytest

from models.clearsky import clear_sky_energy_wh_m2
from simulator.substeps import allocate, clear_sky_substeps, substep_readings

DAY0_UTC = 1_686_542_400          # 2023-06-12 04:00 UTC = 00:00 local standard time at UTC-4
LAT, LON = 36.1, -79.95


def day_of_data(houses=40, seed=3):
    """Whole-Wh interval energies: PV = size x clear sky x a cloud index; load with a bump."""
    rng = np.random.default_rng(seed)
    starts = DAY0_UTC + np.arange(96) * 900
    cs = clear_sky_energy_wh_m2(starts, 900, LAT, LON)
    index = np.clip(rng.uniform(0.1, 1.0, (houses, 96)), 0, 1)
    index[0] = 1.0                                       # house 0: a clear day
    generation = np.floor(rng.uniform(3, 8, (houses, 1)) * cs * index)
    consumption = np.floor(rng.uniform(30, 300, (houses, 96)))
    return starts, generation.astype(np.int64), consumption.astype(np.int64)


@pytest.fixture(scope="module")
def data():
    starts, generation, consumption = day_of_data()
    clear = clear_sky_substeps(starts, 900, 15, LAT, LON)
    pv, load = substep_readings(generation, consumption, np.random.default_rng(11), 15,
                        clear_sky_wh_m2=clear)
    return generation, consumption, clear, pv, load


def test_substeps_sum_exactly_to_the_interval_and_are_whole_non_negative(data):
    generation, consumption, _, pv, load = data
    assert pv.shape == load.shape == (*generation.shape, 15)
    assert pv.dtype == load.dtype == np.int64
    assert np.array_equal(pv.sum(axis=2), generation)
    assert np.array_equal(load.sum(axis=2), consumption)
    assert pv.min() >= 0 and load.min() >= 0


def test_sums_are_exact_for_random_totals_and_weights():
    rng = np.random.default_rng(0)
    totals = rng.integers(0, 10_000, (50, 30))
    weights = rng.random((50, 30, 7)) * (rng.random((50, 30, 7)) < 0.5)     # some all-zero rows
    parts = allocate(totals, weights)
    assert np.array_equal(parts.sum(axis=2), totals)
    zero_rows = weights.sum(axis=2) == 0
    assert np.all(parts[zero_rows].max(axis=1) - parts[zero_rows].min(axis=1) <= 1)   # even
    weighted = ~zero_rows
    assert np.all(parts[weighted][weights[weighted] == 0] == 0)         # no weight, no energy


def test_seeded_and_deterministic():
    starts, generation, consumption = day_of_data(houses=10)
    clear = clear_sky_substeps(starts, 900, 15, LAT, LON)
    def run(seed):
        return substep_readings(generation, consumption, np.random.default_rng(seed), 15,
                                clear_sky_wh_m2=clear)

    first, again, other = run(5), run(5), run(6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other[0]) and not np.array_equal(first[1], other[1])


def test_pv_stays_under_its_clear_sky_envelope_and_is_zero_at_night(data):
    generation, _, clear, pv, _ = data
    night = clear.sum(axis=1) == 0
    assert night.any() and np.all(pv[:, night] == 0)
    per_interval = clear.sum(axis=1)
    sunny = per_interval >= 0.3 * per_interval.max()
    capacity = (generation[:, sunny] / per_interval[sunny]).max(axis=1)
    scale = np.maximum(capacity[:, None], generation / np.where(per_interval > 0, per_interval, 1))
    envelope = scale[..., None] * clear[None]
    assert np.all(pv[:, ~night] <= envelope[:, ~night] + 1)       # whole-Wh rounding only


def test_clouds_flicker_most_under_broken_clouds(data):
    generation, _, clear, pv, _ = data
    per_interval = clear.sum(axis=1)
    sunny = per_interval >= 0.5 * per_interval.max()
    # house 0 had a clear day: at its envelope, its sub-steps follow the clear-sky shape
    clear_share = clear[sunny] / per_interval[sunny, None]
    assert np.allclose(pv[0, sunny] / generation[0, sunny, None], clear_share, atol=0.02)
    spread = pv.std(axis=2) / np.maximum(pv.mean(axis=2), 1e-9)
    capacity = (generation[:, sunny] / per_interval[sunny]).max(axis=1)
    k = generation / (capacity[:, None] * np.maximum(per_interval, 1e-9))
    broken = sunny & (np.abs(k - 0.5) < 0.15)
    assert spread[broken].mean() > 0.25
    assert spread[broken].mean() > 5 * spread[0, sunny].mean()


def test_clouds_are_shared_between_neighbours(data):
    generation, _, clear, pv, _ = data
    per_interval = clear.sum(axis=1)
    sunny = per_interval >= 0.5 * per_interval.max()
    shape = pv[1:, sunny] / np.maximum(generation[1:, sunny, None], 1) - clear[sunny] / \
        per_interval[sunny, None]
    deviations = shape.reshape(shape.shape[0], -1)
    correlation = np.corrcoef(deviations)[np.triu_indices(deviations.shape[0], 1)]
    assert correlation.mean() > 0.2


def test_an_overcast_day_flickers_once_the_installed_capacity_is_known():
    starts = DAY0_UTC + np.arange(96) * 900
    clear = clear_sky_substeps(starts, 900, 15, LAT, LON)
    kwp = np.full(20, 5.0)
    generation = np.floor(0.45 * 0.8 * kwp[:, None] * clear.sum(axis=1)).astype(np.int64)
    consumption = np.full_like(generation, 100)

    def spread(**kwargs):
        pv, _ = substep_readings(generation, consumption, np.random.default_rng(2), 15,
                                 clear_sky_wh_m2=clear, **kwargs)
        assert np.array_equal(pv.sum(axis=2), generation)
        sunny = clear.sum(axis=1) >= 0.5 * clear.sum(axis=1).max()
        return (pv.std(axis=2) / np.maximum(pv.mean(axis=2), 1e-9))[:, sunny].mean()

    assert spread() < 0.05                      # its own best interval looks like a clear sky
    assert spread(pv_kwp=kwp) > 0.3             # 45 % of the clear sky: broken clouds


def test_load_has_appliance_spikes_above_an_even_base(data):
    _, consumption, _, _, load = data
    busy = consumption > np.quantile(consumption, 0.5)
    peak_to_mean = load.max(axis=2) / (consumption / 15)
    assert np.median(peak_to_mean[busy]) > 2.0
    base = np.quantile(consumption, 0.1, axis=1) // 15
    assert np.all(load.min(axis=2) >= np.minimum(base[:, None], consumption // 15) - 1)


def test_without_clear_sky_pv_is_a_smooth_ramp():
    generation = np.array([[0, 100, 300, 300, 100, 0]])
    pv, _ = substep_readings(generation, np.zeros_like(generation), np.random.default_rng(0), 5)
    assert np.array_equal(pv.sum(axis=2), generation)
    assert np.all(np.diff(pv[0, 1]) >= 0) and np.all(np.diff(pv[0, 4]) <= 0)   # ramps up, down
    assert pv[0, 0].sum() == 0


@pytest.mark.parametrize("generation, consumption, kwargs, match", [
    ([[1.5]], [[1]], {}, "generation_wh"),
    ([[1]], [[-1]], {}, "consumption_wh"),
    ([[1, 2]], [[1]], {}, "differ in shape"),
    ([1, 2], [1, 2], {}, "house, interval"),
    ([[1]], [[1]], {"substeps_per_interval": 7}, "substeps_per_interval"),
    ([[1]], [[1]], {"clear_sky_wh_m2": np.ones((2, 15))}, "clear_sky_wh_m2"),
])
def test_bad_input_names_the_field(generation, consumption, kwargs, match):
    with pytest.raises(ValueError, match=match):
        substep_readings(np.array(generation), np.array(consumption),
                         np.random.default_rng(0), **kwargs)
