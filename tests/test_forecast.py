"""The node's forecaster (models/forecast.py) and the numpy clear sky (models/clearsky.py).

Plain calls, no event loop.  pvlib is only used here, as the independent implementation the
clear-sky code is checked against.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import clearsky
from models.errors import ForecastRequestError, ReadingError
from models.forecast import (
    DEFAULT_LATITUDE, DEFAULT_LONGITUDE, HISTORY_DAYS, METHODS, NodeForecaster,
)

HOUR = 3600
DAY = 86_400
T0 = 1_686_528_000          # 2023-06-12 00:00 UTC, a multiple of every interval used here
SITES = ((36.1, -79.95), (52.5, 13.4), (-33.9, 151.2), (64.1, -21.9))


# -- clear sky against pvlib -----------------------------------------------------------------

@pytest.fixture(scope="module")
def year():
    return pd.date_range("2023-01-01", "2024-01-01", freq="37min", tz="UTC", inclusive="left")


@pytest.mark.parametrize("latitude, longitude", SITES)
def test_zenith_matches_pvlib_spa_within_0_02_degrees(year, latitude, longitude):
    import pvlib

    spa = pvlib.solarposition.get_solarposition(year, latitude, longitude)
    ours = clearsky.solar_zenith_deg(year.asi8 // 10**9, latitude, longitude)
    assert np.max(np.abs(ours - spa["zenith"].to_numpy())) < 0.02


@pytest.mark.parametrize("latitude, longitude", SITES)
def test_haurwitz_ghi_matches_pvlib_within_5_w_m2(year, latitude, longitude):
    """Against pvlib's Haurwitz on SPA's apparent zenith: refraction near the horizon is the
    only difference (a few W/m2 at most, under 0.5 % of the year's clear-sky energy)."""
    import pvlib

    spa = pvlib.solarposition.get_solarposition(year, latitude, longitude)
    theirs = pvlib.clearsky.haurwitz(spa["apparent_zenith"])["ghi"].to_numpy()
    ours = clearsky.clear_sky_ghi(year.asi8 // 10**9, latitude, longitude)
    assert np.max(np.abs(ours - theirs)) < 5.0
    assert abs(ours.sum() - theirs.sum()) < 0.005 * theirs.sum()


def test_declination_equation_of_time_and_hour_angle_on_known_dates():
    june_solstice = pd.Timestamp("2023-06-21 14:57", tz="UTC").value // 10**9
    assert clearsky.solar_declination_deg(june_solstice) == pytest.approx(23.44, abs=0.01)
    november = pd.Timestamp("2023-11-03 12:00", tz="UTC").value // 10**9
    assert clearsky.equation_of_time_min(november) == pytest.approx(16.4, abs=0.1)
    noon = pd.Timestamp("2023-04-15 12:00", tz="UTC").value // 10**9
    assert clearsky.hour_angle_deg(noon, 0.0) == pytest.approx(
        clearsky.equation_of_time_min(noon) / 4, abs=1e-9)
    assert clearsky.clear_sky_ghi(noon - 12 * HOUR, 0.0, 0.0) == 0.0


def test_clear_sky_cache_answers_spans_wider_than_its_ring():
    from models.forecast_features import ClearSkyCache

    cache = ClearSkyCache(36.1, -79.95, 900, 0, days_kept=3)
    indices = T0 // 900 + np.array([0, 40, 96 * 2 + 40, 96 * 5 + 40, 40])
    expected = clearsky.clear_sky_energy_wh_m2(indices * 900, 900, 36.1, -79.95)
    assert np.array_equal(cache.energy(indices), expected)
    assert np.array_equal(cache.energy(indices[:3]), expected[:3])
    assert np.array_equal(cache.energy(indices[3:]), expected[3:])


def test_interval_energy_is_the_integral_of_the_irradiance():
    starts = T0 + np.arange(96) * 900
    fine = clearsky.clear_sky_ghi(T0 + np.arange(0, DAY, 10) + 5, 36.1, -79.95)
    energy = clearsky.clear_sky_energy_wh_m2(starts, 900, 36.1, -79.95)
    assert energy.sum() == pytest.approx(fine.sum() * 10 / 3600, rel=1e-3)


# -- a synthetic house: clear sky times clouds, and a daily load pattern ----------------------

def synthetic_house(days: int, interval_s: int = 900, seed: int = 5):
    """Generation = 5 kWp-ish x clear sky x a cloud index that drifts within a day and changes
    between days; consumption = a two-peak daily pattern x noise."""
    rng = np.random.default_rng(seed)
    per_day = DAY // interval_s
    starts = T0 + np.arange(days * per_day) * interval_s
    cs = clearsky.clear_sky_energy_wh_m2(starts, interval_s, DEFAULT_LATITUDE, DEFAULT_LONGITUDE)
    day_k = np.repeat(rng.uniform(0.3, 1.0, days), per_day)
    drift = np.cumsum(rng.normal(0, 0.05, starts.size))
    drift -= np.repeat(drift.reshape(days, per_day).mean(axis=1), per_day)
    k = np.clip(day_k + drift + rng.normal(0, 0.03, starts.size), 0.05, 1.0)
    generation = np.floor(5.0 * cs * k)
    hour = (starts % DAY) / HOUR
    pattern = 80 + 120 * np.exp(-((hour - 7.5) / 1.5) ** 2) + 200 * np.exp(-((hour - 19) / 2) ** 2)
    consumption = np.floor(pattern * interval_s / 900 * rng.lognormal(0, 0.25, starts.size))
    return starts, generation, consumption


def fed(starts, generation, consumption, until: int | None = None, **kwargs) -> NodeForecaster:
    forecaster = NodeForecaster(DEFAULT_LATITUDE, DEFAULT_LONGITUDE, int(starts[1] - starts[0]),
                                **kwargs)
    for start, g, c in zip(starts[:until], generation[:until], consumption[:until]):
        forecaster.observe(int(start), float(g), float(c))
    return forecaster


def score(days=34, eval_days=20, seed=5):
    """MAE per (quantity, horizon, method) over the last ``eval_days`` days, forecasting online."""
    starts, generation, consumption = synthetic_house(days, seed=seed)
    per_day = DAY // 900
    forecaster = NodeForecaster(DEFAULT_LATITUDE, DEFAULT_LONGITUDE, 900)
    errors = {}
    first = (days - eval_days) * per_day
    for i, start in enumerate(starts):
        jobs = []
        if i >= first:
            jobs.append(("next", i, start))
        if i % per_day == 48 and i + per_day // 2 >= first and i + per_day < starts.size:
            jobs += [("day_ahead", t, start) for t in range(i + 48, i + 48 + per_day)]
        for horizon, target, issued in jobs:
            for method in METHODS:
                g, c = forecaster.predict(int(starts[target]), int(issued), method)
                errors.setdefault(("pv", horizon, method), []).append(abs(g - generation[target]))
                errors.setdefault(("load", horizon, method), []).append(
                    abs(c - consumption[target]))
        forecaster.observe(int(start), float(generation[i]), float(consumption[i]))
    return {key: float(np.mean(values)) for key, values in errors.items()}


@pytest.fixture(scope="module")
def synthetic_scores():
    return score()


@pytest.mark.parametrize("quantity", ["pv", "load"])
@pytest.mark.parametrize("horizon", ["next", "day_ahead"])
def test_learned_beats_persistence(synthetic_scores, quantity, horizon):
    mae = synthetic_scores
    assert mae[quantity, horizon, "learned"] < 0.9 * mae[quantity, horizon, "persistence"]


@pytest.mark.parametrize("quantity", ["pv", "load"])
def test_learned_beats_same_time_yesterday(synthetic_scores, quantity):
    mae = synthetic_scores
    for horizon in ("next", "day_ahead"):
        assert mae[quantity, horizon, "learned"] < mae[quantity, horizon, "yesterday"]


@pytest.mark.parametrize("interval_s", [900, HOUR])
def test_the_daily_batch_learns_what_learning_each_reading_on_arrival_would(interval_s):
    """observe() only stores; the first reading of a day adds the previous day's readings to the
    ridge statistics in one batch (features for many (target, cutoff) pairs at once, weights
    aged by the readings that followed).  Checked against the straightforward way: one feature
    row per (reading, horizon bucket) as the reading arrives, decaying before each reading;
    with gaps, one across a day boundary and one of two whole days."""
    from models.forecast import TRAIN_HORIZONS

    per_day = DAY // interval_s
    starts, generation, consumption = synthetic_house(12, interval_s=interval_s, seed=3)
    missing = {*range(3 * per_day + 2, 3 * per_day + 6), *range(5 * per_day - 3, 5 * per_day + 4),
               *range(8 * per_day + 5, 10 * per_day + 1)}
    forecaster = NodeForecaster(DEFAULT_LATITUDE, DEFAULT_LONGITUDE, interval_s)
    models = {"pv": forecaster.pv_model, "load": forecaster.load_model}
    xtx = {name: np.zeros_like(model.xtx) for name, model in models.items()}
    xty = {name: np.zeros_like(model.xty) for name, model in models.items()}
    checked = 0
    for i in sorted(set(range(starts.size)) - missing):
        newest = forecaster.history.newest
        new_day = newest is not None and starts[i] // interval_s // per_day != newest // per_day
        forecaster.observe(int(starts[i]), float(generation[i]), float(consumption[i]))
        if new_day:                                 # the statistics before reading i
            for name, model in models.items():
                assert np.allclose(model.xtx, xtx[name], rtol=1e-9, atol=1e-12)
                assert np.allclose(model.xty, xty[name], rtol=1e-9, atol=1e-12)
            checked += 1
        target = forecaster.history.newest
        for name in models:
            xtx[name] *= models[name].forget
            xty[name] *= models[name].forget
        for bucket, horizon in enumerate(TRAIN_HORIZONS):
            pv = forecaster.features.pv([target], [target - horizon + 1])
            if pv.ok[0]:
                weight = pv.scale[0] / interval_s
                xtx["pv"][bucket] += weight * np.outer(pv.x[0], pv.x[0])
                xty["pv"][bucket] += weight * generation[i] / pv.scale[0] * pv.x[0]
            load = forecaster.features.load([target], [target - horizon + 1])
            if load.ok[0]:
                xtx["load"][bucket] += np.outer(load.x[0], load.x[0])
                xty["load"][bucket] += consumption[i] / load.level[0] * load.x[0]
    assert checked == 10
    for name in models:
        assert np.all(np.trace(xtx[name], axis1=1, axis2=2) > 0)      # every bucket learned


@pytest.mark.parametrize("method", METHODS)
def test_predict_many_is_predict_for_each_target(method):
    starts, generation, consumption = synthetic_house(10)
    issued_index = 8 * 96 + 48                                    # day 8, 12:00: the gate
    forecaster = fed(starts, generation, consumption, until=issued_index)
    issued = int(starts[issued_index])
    day_after = starts[9 * 96:10 * 96]
    many = forecaster.predict_many(day_after, issued, method)
    one_by_one = [forecaster.predict(int(t), issued, method) for t in day_after]
    assert np.array_equal(many[0], [f.generation_wh for f in one_by_one])
    assert np.array_equal(many[1], [f.consumption_wh for f in one_by_one])
    assert many[0].max() > 0 and many[1].min() > 0
    assert [a.size for a in forecaster.predict_many([], issued, method)] == [0, 0]


def test_past_errors_score_past_forecasts_against_the_readings():
    """The backtest a node seeds its hedges from: each past target forecast as issued then."""
    starts, generation, consumption = synthetic_house(10)
    forecaster = fed(starts, generation, consumption)
    day = starts[8 * 96:9 * 96]
    issued = [int(t) - 900 for t in day]                     # a quarter of an hour ahead
    errors = forecaster.past_errors(day, issued)
    expected = [abs(float(np.subtract(*forecaster.predict(int(t), at)))
                    - (generation[8 * 96 + i] - consumption[8 * 96 + i]))
                for i, (t, at) in enumerate(zip(day, issued))]
    assert np.allclose(errors, expected)
    gate = int(starts[7 * 96 + 48])                          # the day before at noon, one time
    ahead = forecaster.past_errors(day, gate)
    assert ahead.shape == (96,) and np.nanmean(ahead) > np.nanmean(errors) > 0
    unknown = forecaster.past_errors([int(starts[-1]) + 900], int(starts[-1]))
    assert np.isnan(unknown).all()                            # not read yet: no error known
    assert np.isnan(NodeForecaster().past_errors([T0], T0 - 900)).all()   # no history at all


# -- baselines, exactly ----------------------------------------------------------------------

def hourly(values_g, values_c, start=T0) -> NodeForecaster:
    forecaster = NodeForecaster(interval_s=HOUR)
    for i, (g, c) in enumerate(zip(values_g, values_c)):
        forecaster.observe(start + i * HOUR, g, c)
    return forecaster


def test_persistence_is_the_newest_reading_before_the_issue_time():
    forecaster = hourly(range(30), range(100, 130))            # hours 0..29 observed
    assert forecaster.predict(T0 + 30 * HOUR, T0 + 30 * HOUR, "persistence") == (29, 129)
    # issued at 20:30: the reading of 19:00-20:00 is the newest that had ended
    assert forecaster.predict(T0 + 22 * HOUR, T0 + 20 * HOUR + 1800, "persistence") == (19, 119)
    assert forecaster.predict(T0 + 40 * HOUR, T0 + 30 * HOUR, "persistence") == (29, 129)


def test_same_time_yesterday_takes_the_newest_usable_day():
    g = [10 * i for i in range(48)]
    forecaster = hourly(g, [i + 1000 for i in range(48)])      # two days of hours
    assert forecaster.predict(T0 + 48 * HOUR, T0 + 48 * HOUR, "yesterday") == (240, 1024)
    assert forecaster.predict(T0 + 53 * HOUR, T0 + 48 * HOUR, "yesterday") == (290, 1029)
    # day ahead issued at noon of day 1 (hour 36): hour 10 of day 2 -> day 1's hour 10 (34);
    # hour 15 of day 2 -> day 1's 15:00 had not ended at noon, so day 0's (hour 15)
    assert forecaster.predict(T0 + 58 * HOUR, T0 + 36 * HOUR, "yesterday") == (340, 1034)
    assert forecaster.predict(T0 + 63 * HOUR, T0 + 36 * HOUR, "yesterday") == (150, 1015)


def test_baselines_without_history_and_with_a_gap():
    empty = NodeForecaster(interval_s=HOUR)
    for method in METHODS:
        assert empty.predict(T0, T0, method) == (0.0, 0.0)
    forecaster = NodeForecaster(interval_s=HOUR)
    forecaster.observe(T0, 5, 50)
    forecaster.observe(T0 + 30 * HOUR, 7, 70)                   # hours 1..29 missing
    assert forecaster.predict(T0 + 25 * HOUR, T0 + 25 * HOUR, "yesterday") == (5, 50)
    assert forecaster.predict(T0 + 26 * HOUR, T0 + 26 * HOUR, "yesterday") == (5, 50)
    assert forecaster.predict(T0 + 31 * HOUR, T0 + 31 * HOUR, "yesterday") == (7, 70)


# -- refusals --------------------------------------------------------------------------------

def test_duplicate_and_out_of_order_readings_are_refused_with_a_reason():
    forecaster = hourly([1, 2, 3], [4, 5, 6])
    before = forecaster.predict(T0 + 5 * HOUR, T0 + 3 * HOUR)
    with pytest.raises(ReadingError) as duplicate:
        forecaster.observe(T0 + 2 * HOUR, 9, 9)
    assert duplicate.value.reason == "duplicate"
    with pytest.raises(ReadingError) as late:
        forecaster.observe(T0, 9, 9)
    assert late.value.reason == "out_of_order"
    assert forecaster.predict(T0 + 5 * HOUR, T0 + 3 * HOUR) == before
    assert forecaster.history.newest == (T0 + 2 * HOUR) // HOUR


@pytest.mark.parametrize("start, g, c, reason", [
    (T0 + 1, 1, 1, "misaligned"), (float(T0), 1, 1, "misaligned"),
    (T0, -1, 1, "bad_value"), (T0, 1, float("nan"), "bad_value"), (T0, "7", 1, "bad_value"),
])
def test_bad_readings_are_refused(start, g, c, reason):
    forecaster = NodeForecaster(interval_s=HOUR)
    with pytest.raises(ReadingError) as refused:
        forecaster.observe(start, g, c)
    assert refused.value.reason == reason
    assert forecaster.history.newest is None


def test_bad_requests_are_refused():
    forecaster = hourly([1, 2, 3], [4, 5, 6])
    with pytest.raises(ForecastRequestError, match="had ended"):
        forecaster.predict(T0 + HOUR, T0 + 2 * HOUR)
    with pytest.raises(ForecastRequestError, match="target_start_s"):
        forecaster.predict(T0 + 10, T0)
    with pytest.raises(ForecastRequestError, match="more than 2 days"):
        forecaster.predict(T0 + 3 * HOUR + 2 * DAY, T0 + 3 * HOUR)
    with pytest.raises(ForecastRequestError, match="method"):
        forecaster.predict(T0 + 3 * HOUR, T0 + 3 * HOUR, "magic")
    with pytest.raises(ValueError, match="latitude"):
        NodeForecaster(latitude=95.0)
    with pytest.raises(ValueError, match="interval_s"):
        NodeForecaster(interval_s=700)


def test_a_forecast_issued_before_the_kept_history_is_refused():
    starts, generation, consumption = synthetic_house(HISTORY_DAYS + 5, interval_s=HOUR)
    forecaster = fed(starts, generation, consumption)
    newest = int(starts[-1])
    forecaster.predict(newest - 6 * DAY, newest - 6 * DAY)     # within the window: fine
    with pytest.raises(ForecastRequestError, match="older than the history"):
        forecaster.predict(newest - 9 * DAY, newest - 9 * DAY)


# -- memory and leakage ----------------------------------------------------------------------

def test_memory_is_bounded_whatever_the_number_of_days():
    """About 60 KB at 15-minute intervals (benchmarks/forecast.py reports forecaster_kb)."""
    starts, generation, consumption = synthetic_house(HISTORY_DAYS + 15, interval_s=HOUR)
    after_two_days = fed(starts, generation, consumption, until=2 * 24).nbytes()
    forecaster = fed(starts, generation, consumption)
    assert forecaster.nbytes() <= after_two_days + 8 * 1024     # only the dated fits grow, bounded
    assert forecaster.history.generation_wh.size == HISTORY_DAYS * 24
    assert forecaster.history.oldest == int(starts[-1]) // HOUR - HISTORY_DAYS * 24 + 1
    assert len(forecaster.pv_model.fits) == forecaster.pv_model.fits.maxlen


@pytest.mark.parametrize("method", METHODS)
def test_no_future_leakage(method):
    """A forecast issued at t is the same before and after readings after t arrive (across
    day boundaries, so the daily refits happen in between)."""
    starts, generation, consumption = synthetic_house(20, interval_s=HOUR)
    issued_index = 16 * 24 + 10                                   # day 16, 10:00
    forecaster = fed(starts, generation, consumption, until=issued_index)
    issued = int(starts[issued_index])
    targets = [int(starts[issued_index + h]) for h in (0, 1, 3, 5, 14, 30, 40)]
    before = [forecaster.predict(t, issued, method) for t in targets]
    also_mid_interval = forecaster.predict(targets[1], issued + 1800, method)
    for i in range(issued_index, starts.size):
        forecaster.observe(int(starts[i]), float(generation[i]), float(consumption[i]))
    assert [forecaster.predict(t, issued, method) for t in targets] == before
    assert forecaster.predict(targets[1], issued + 1800, method) == also_mid_interval
    later = forecaster.predict(targets[-1], issued + DAY, method)
    assert later != before[-1]                   # the new readings are used when issued later


def test_forecasts_are_finite_and_non_negative_at_night_and_at_cold_start():
    starts, generation, consumption = synthetic_house(3)
    forecaster = NodeForecaster(DEFAULT_LATITUDE, DEFAULT_LONGITUDE, 900)
    for i in range(starts.size - 96):
        g, c = forecaster.predict(int(starts[i + 96]), int(starts[i]))
        assert np.isfinite(g) and np.isfinite(c) and g >= 0 and c >= 0
        if clearsky.clear_sky_energy_wh_m2([starts[i + 96]], 900, DEFAULT_LATITUDE,
                                           DEFAULT_LONGITUDE)[0] == 0:
            assert g == 0
        forecaster.observe(int(starts[i]), float(generation[i]), float(consumption[i]))


def test_clear_sky_generation_bounds_the_forecast_and_says_whether_pv_may_generate():
    starts, generation, consumption = synthetic_house(10)
    forecaster = fed(starts, generation, consumption)
    issued = int(starts[-1]) + 900                 # the next day at midnight
    targets = [issued + 900 * i for i in range(96)]
    possible = np.array([forecaster.clear_sky_generation(t, issued) for t in targets])
    forecast, _ = forecaster.predict_many(targets, issued)
    assert np.all(possible >= forecast)
    cs = clearsky.clear_sky_energy_wh_m2(targets, 900, DEFAULT_LATITUDE, DEFAULT_LONGITUDE)
    assert np.all(possible[cs == 0] == 0)         # night
    noon = int(np.argmax(cs))
    best_noon = generation[noon::96].max()        # the sunniest of the past days at that time
    assert possible[noon] >= best_noon > forecast[noon]
    no_pv = fed(starts, np.zeros(starts.size), consumption)
    assert all(no_pv.clear_sky_generation(t, issued) == 0 for t in targets)
