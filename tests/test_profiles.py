"""Household and PV profiles: shapes, physics sanity, variety, determinism and the cache."""

from __future__ import annotations

import time
import warnings
from datetime import date, timedelta

import numpy as np
import pytest

from simulator import ProfileError, ProfileSpec, build_profiles
from simulator.cache import cache_key, cache_path
from simulator.load import standard_load_shares
from simulator.profiles import interval_starts

SUMMER = date(2023, 6, 30)
WINTER = date(2023, 1, 3)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("profile-cache")


@pytest.fixture(scope="module")
def summer(cache_dir):
    return build_profiles(ProfileSpec(houses=60, day=SUMMER, seed=7), cache_dir=cache_dir)


@pytest.fixture(scope="module")
def winter(cache_dir):
    return build_profiles(ProfileSpec(houses=60, day=WINTER, seed=7), cache_dir=cache_dir)


def hours(profiles) -> np.ndarray:
    return (profiles.interval_start.astype("datetime64[m]").astype(np.int64) % 1440) / 60


def test_shapes_and_times(summer):
    assert summer.generation_wh.shape == summer.consumption_wh.shape == (60, 96)
    assert summer.surplus_wh.shape == summer.deficit_wh.shape == (60, 96)
    assert summer.net.soc_wh.shape == (60, 97)
    assert summer.interval_start[0] == np.datetime64("2023-06-30T00:00:00")
    assert summer.interval_start[-1] == np.datetime64("2023-06-30T23:45:00")
    for name in ("pv_kwp", "annual_kwh", "time_shift_s", "roof_tilt_deg"):
        assert getattr(summer, name).shape == (60,)


def test_a_window_keeps_the_houses_and_cuts_the_intervals(summer):
    part = summer.window(44, 8)
    assert part.houses == summer.houses and part.intervals == 8
    assert (part.interval_start == summer.interval_start[44:52]).all()
    for name in ("surplus_wh", "deficit_wh", "charge_wh", "discharge_wh"):
        assert np.array_equal(getattr(part.net, name), getattr(summer.net, name)[:, 44:52])
    assert np.array_equal(part.generation_wh, summer.generation_wh[:, 44:52])
    assert np.array_equal(part.net.soc_wh, summer.net.soc_wh[:, 44:53])   # closing state too


def test_arrays_are_non_negative_finite_and_read_only(summer):
    for array in (summer.generation_wh, summer.consumption_wh, summer.surplus_wh,
                  summer.deficit_wh, summer.net.soc_wh):
        assert np.isfinite(array).all() and (array >= 0).all()
        with pytest.raises(ValueError):
            array[0, 0] = 1.0


def test_surplus_and_deficit_are_exclusive_and_balance(summer):
    assert not ((summer.surplus_wh > 0) & (summer.deficit_wh > 0)).any()
    lhs = summer.generation_wh - summer.consumption_wh
    rhs = (summer.surplus_wh - summer.deficit_wh + summer.net.charge_wh
           - summer.net.discharge_wh)
    np.testing.assert_allclose(lhs, rhs, atol=1e-9)


def test_shares_pv_and_batteries(summer):
    has_pv = summer.pv_kwp > 0
    has_battery = summer.battery.capacity_wh > 0
    assert has_pv.sum() == 30 and has_battery.sum() == 6
    assert has_pv[has_battery].all(), "batteries sit only on PV houses"
    assert (summer.generation_wh[~has_pv] == 0).all()
    assert ((summer.pv_kwp[has_pv] >= 3) & (summer.pv_kwp[has_pv] <= 10)).all()


def test_pv_is_zero_at_night_and_positive_at_noon_in_summer(summer):
    h = hours(summer)
    has_pv = summer.pv_kwp > 0
    night = (h < 4) | (h >= 21)
    noon = (h >= 11.5) & (h < 13)
    assert (summer.generation_wh[:, night] == 0).all()
    assert (summer.generation_wh[has_pv][:, noon] > 0).all()
    # A sunny summer noon: every PV house has more than it needs (before its battery).
    assert (summer.generation_wh[has_pv][:, noon].sum(axis=1)
            > summer.consumption_wh[has_pv][:, noon].sum(axis=1)).all()


def test_summer_and_winter_magnitudes_are_plausible(summer, winter):
    has_pv = summer.pv_kwp > 0
    yield_summer = summer.generation_wh[has_pv].sum(axis=1) / summer.pv_kwp[has_pv] / 1000
    yield_winter = winter.generation_wh[has_pv].sum(axis=1) / winter.pv_kwp[has_pv] / 1000
    assert ((yield_summer > 3.5) & (yield_summer < 7.5)).all(), yield_summer
    assert (yield_winter < 2.0).all(), yield_winter
    assert summer.generation_wh.sum() > summer.consumption_wh.sum()
    assert winter.generation_wh.sum() < 0.5 * winter.consumption_wh.sum()
    assert winter.consumption_wh.sum() > summer.consumption_wh.sum()  # h0_dyn: winter peak
    daily_kwh = summer.consumption_wh.sum(axis=1) / 1000
    assert 4 < np.median(daily_kwh) < 12


def test_consumption_follows_the_drawn_annual_demand(cache_dir):
    spec = ProfileSpec(houses=200, day=SUMMER, seed=3)
    profiles = build_profiles(spec, cache_dir=cache_dir)
    shares = standard_load_shares("h0_dyn", SUMMER, 1)
    expected = profiles.annual_kwh * 1000 * shares.sum()
    ratio = profiles.consumption_wh.sum() / expected.sum()
    assert 0.95 < ratio < 1.05
    per_house = profiles.consumption_wh.sum(axis=1) / expected
    assert np.corrcoef(per_house * expected, expected)[0, 1] > 0.8


def test_houses_are_not_clones(summer):
    consumption = summer.consumption_wh
    assert len({row.tobytes() for row in consumption}) == summer.houses
    correlation = np.corrcoef(consumption)
    off_diagonal = correlation[~np.eye(summer.houses, dtype=bool)]
    assert off_diagonal.max() < 0.99
    assert off_diagonal.mean() > 0.2, "houses still share the BDEW daily shape"
    assert np.unique(summer.annual_kwh).size == summer.houses
    assert np.unique(summer.time_shift_s).size == summer.houses
    pv_rows = summer.generation_wh[summer.pv_kwp > 0]
    assert len({row.tobytes() for row in pv_rows}) == pv_rows.shape[0]


def test_same_seed_same_arrays_other_seed_other_arrays():
    spec = ProfileSpec(houses=20, day=SUMMER, seed=11)
    first = build_profiles(spec, use_cache=False)
    again = build_profiles(spec, use_cache=False)
    other = build_profiles(ProfileSpec(houses=20, day=SUMMER, seed=12), use_cache=False)
    for name in ("generation_wh", "consumption_wh", "surplus_wh", "deficit_wh"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.consumption_wh, other.consumption_wh)


def test_cache_hit_returns_identical_arrays(tmp_path):
    spec = ProfileSpec(houses=15, day=SUMMER, seed=5)
    built = build_profiles(spec, cache_dir=tmp_path)
    path = cache_path(tmp_path, "profiles", cache_key(spec.as_params()))
    assert path.exists()
    stamp = path.stat().st_mtime_ns
    cached = build_profiles(spec, cache_dir=tmp_path)
    assert path.stat().st_mtime_ns == stamp, "a hit must not rewrite the entry"
    for name in ("generation_wh", "consumption_wh", "surplus_wh", "deficit_wh", "pv_kwp",
                 "annual_kwh", "roof_azimuth_deg"):
        np.testing.assert_array_equal(getattr(built, name), getattr(cached, name))
    np.testing.assert_array_equal(built.net.soc_wh, cached.net.soc_wh)
    np.testing.assert_array_equal(built.battery.capacity_wh, cached.battery.capacity_wh)
    with np.load(path, allow_pickle=False) as stored:
        assert "generation_wh" in stored.files


def test_cache_is_keyed_by_parameters_and_survives_corruption(tmp_path):
    a = ProfileSpec(houses=10, day=SUMMER, seed=1)
    b = ProfileSpec(houses=10, day=SUMMER, seed=1, pv_share=0.8)
    pa = build_profiles(a, cache_dir=tmp_path)
    pb = build_profiles(b, cache_dir=tmp_path)
    assert (pb.pv_kwp > 0).sum() == 8 and (pa.pv_kwp > 0).sum() == 5
    # Changing a share does not reshuffle the other draws: the same houses, more PV.
    np.testing.assert_array_equal(pa.consumption_wh, pb.consumption_wh)
    assert ((pa.pv_kwp > 0) <= (pb.pv_kwp > 0)).all()
    assert len(list(tmp_path.glob("profiles-*.npz"))) == 2
    path = cache_path(tmp_path, "profiles", cache_key(a.as_params()))
    path.write_bytes(b"not a zip file")
    rebuilt = build_profiles(a, cache_dir=tmp_path)
    np.testing.assert_array_equal(rebuilt.consumption_wh, pa.consumption_wh)


def test_energy_is_the_same_at_any_interval_length():
    common = dict(houses=8, day=SUMMER, seed=9, noise_sigma=0.0)
    quarter = build_profiles(ProfileSpec(interval_s=900, **common), use_cache=False)
    hourly = build_profiles(ProfileSpec(interval_s=3600, **common), use_cache=False)
    assert hourly.generation_wh.shape == (8, 24)
    np.testing.assert_allclose(quarter.consumption_wh.reshape(8, 24, 4).sum(axis=2),
                               hourly.consumption_wh, rtol=1e-9)
    np.testing.assert_allclose(quarter.generation_wh.reshape(8, 24, 4).sum(axis=2),
                               hourly.generation_wh, rtol=1e-9, atol=1e-9)


def test_a_thousand_houses_build_in_seconds():
    started = time.perf_counter()
    profiles = build_profiles(ProfileSpec(houses=1000, day=SUMMER, seed=1), use_cache=False)
    elapsed = time.perf_counter() - started
    assert profiles.consumption_wh.shape == (1000, 96)
    assert elapsed < 15, f"1000 houses took {elapsed:.1f} s (about 0.5 s expected)"


def test_several_days_across_new_year():
    spec = ProfileSpec(houses=4, day=date(2023, 12, 31), days=2, interval_s=1800, seed=2)
    profiles = build_profiles(spec, use_cache=False)
    assert profiles.generation_wh.shape == (4, 96)
    assert profiles.interval_start[48] == np.datetime64("2024-01-01T00:00:00")
    assert (profiles.consumption_wh > 0).all()
    np.testing.assert_array_equal(profiles.interval_start, interval_starts(spec))


def test_static_h0_and_another_weather_site():
    spec = ProfileSpec(houses=6, day=SUMMER, seed=4, load_profile="h0", weather="sand_point",
                       pv_share=1.0)
    profiles = build_profiles(spec, use_cache=False)
    assert (profiles.generation_wh.sum(axis=1) > 0).all()


def test_demandlib_does_not_leak_its_warning_filter():
    before = list(warnings.filters)
    standard_load_shares("h0", SUMMER - timedelta(days=1), 3)
    assert warnings.filters == before


def test_house_info(summer):
    index = int(np.argmax(summer.battery.capacity_wh))
    info = summer.house(index)
    assert info.has_pv and info.has_battery
    assert info.battery_power_w == pytest.approx(info.battery_capacity_wh * 0.5)
    assert info.pv_kwp == summer.pv_kwp[index]


@pytest.mark.parametrize("changes, field", [
    ({"houses": 0}, "houses"),
    ({"interval_s": 7}, "interval_s"),
    ({"interval_s": 7000}, "interval_s"),
    ({"battery_share": 0.6, "pv_share": 0.5}, "battery_share"),
    ({"pv_share": 1.5}, "pv_share"),
    ({"load_profile": "g0"}, "load_profile"),
    ({"weather": "berlin"}, "weather"),
    ({"pv_kwp_max": 2.0}, "pv_kwp_max"),
    ({"seed": -1}, "seed"),
])
def test_bad_spec_names_the_field(changes, field):
    with pytest.raises(ProfileError, match=rf"\[profiles\] {field} = ") as caught:
        ProfileSpec(**{"houses": 10, "day": SUMMER, **changes})
    assert len(str(caught.value).splitlines()) == 1, "each problem is reported once"
