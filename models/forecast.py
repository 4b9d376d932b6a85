"""A node's forecast of its own generation and consumption, from its own past readings.

    f = NodeForecaster(latitude=36.1, longitude=-79.95, interval_s=900)
    f.observe(interval_start_s, generation_wh, consumption_wh)   # in time order
    generation_wh, consumption_wh = f.predict(target_start_s, issued_at_s)
    generation, consumption = f.predict_many(day_starts_s, issued_at_s)   # arrays, one batch
    most_wh = f.clear_sky_generation(target_start_s, issued_at_s)   # whether PV may generate

A reading covers ``[interval_start_s, interval_start_s + interval_s)`` on the node's clock.  A
forecast *issued at* ``t`` uses only the readings of intervals that had ended by ``t``
(``interval_start_s + interval_s <= t``), whatever was observed since, and the same learned
coefficients as at ``t``: asking again later gives the same answer.  ``target_start_s`` must be an
interval that had not ended by ``t``.  The *horizon* is the number of intervals from the newest
usable one to the target: 1 is the next interval, a day-ahead forecast issued at noon for the next
day has horizons 49..144 at 15-minute intervals.

Methods (``method=``): ``"learned"`` (default; :mod:`models.forecast_features`: PV from the
clear-sky index at the node's location, load as a blend of yesterday, a week ago, the recent
level and the slot mean, weights fitted online per horizon bucket by ridge regression,
:mod:`models.forecast_learn`), and the two baselines it must beat: ``"persistence"`` (the newest
usable reading) and ``"yesterday"`` (same time of day on the newest day whose reading is usable,
i.e. ``target - d days`` for the smallest ``d >= 1``; persistence when that is missing).

Memory is bounded: a ring of ``HISTORY_DAYS`` days of readings, the ridge statistics and a
snapshot of coefficients per day kept (:meth:`NodeForecaster.nbytes`: about 60 KB at 15-minute
intervals).  A forecast may be issued up to ``HISTORY_DAYS - LOOKBACK_DAYS`` days before the
newest reading (older: :class:`ForecastRequestError`).  Everything is pure: no clock, no files,
no randomness.

Cost: :meth:`NodeForecaster.observe` only stores a reading, except on the first reading of a day,
which scores the previous day's readings against every horizon bucket in one vectorised batch
and refits (``benchmarks/forecast.py``: ``observe_ms`` median, ``observe_ms_mean`` per reading
with that batch spread over the day).

Clock and location: solar position needs UTC; ``utc_offset_s`` is the node clock minus UTC (0 on
unix time; the simulator's clock reads local standard time, so there it is the site's offset,
e.g. -18000 at Greensboro).  A node without a configured location uses
:data:`DEFAULT_LATITUDE`/:data:`DEFAULT_LONGITUDE`, the site of the shipped weather data
(Greensboro NC, pvlib's TMY3 file 723170).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from models.errors import ForecastRequestError, ReadingError
from models.forecast_features import (
    LOAD_FEATURES, PV_FEATURES, ClearSkyCache, FeatureMaker, K_MAX,
)
from models.forecast_history import ReadingHistory
from models.forecast_learn import OnlineRidge

DEFAULT_LATITUDE = 36.1
DEFAULT_LONGITUDE = -79.95
DEFAULT_UTC_OFFSET_S = -5 * 3600
"""The shipped data's site and clock (Greensboro NC, local standard time UTC-5)."""
HISTORY_DAYS = 21
LOOKBACK_DAYS = 14
MAX_HORIZON_DAYS = 2
"""Furthest target: two days after the issue time (day-ahead needs at most 36 hours)."""
DAY_S = 86_400
METHODS = ("learned", "persistence", "yesterday")
HORIZON_EDGES = (1, 2, 4, 8, 16, 48)
"""Upper horizon (intervals) of each bucket but the last; one fit per bucket."""
TRAIN_HORIZONS = (*HORIZON_EDGES, 96)
"""The horizon each bucket learns from: its upper edge; the last (day-ahead) one day."""
FORGET_PER_DAY = 0.9
RIDGE_STRENGTH = 2.0
PV_PRIOR = ((0.3, 0, 0, 0, 0.7, 0), (0.2, 0.1, 0, 0, 0.7, 0), (0.1, 0.2, 0, 0.2, 0.5, 0),
            (0.1, 0.1, 0.1, 0.3, 0.4, 0), (0, 0.1, 0.2, 0.5, 0.2, 0), (0, 0, 0.2, 0.8, 0, 0),
            (0, 0, 0.2, 0.8, 0, 0))
LOAD_PRIOR = ((0.4, 0.3, 0.1, 0.1, 0.1, 0), (0.3, 0.3, 0.1, 0.1, 0.2, 0),
              (0.2, 0.3, 0.1, 0.1, 0.3, 0), (0.1, 0.2, 0.1, 0.2, 0.4, 0),
              (0, 0.1, 0.2, 0.2, 0.5, 0), (0, 0, 0.2, 0.2, 0.6, 0), (0, 0, 0.2, 0.2, 0.6, 0))


class Forecast(NamedTuple):
    generation_wh: float
    consumption_wh: float


class NodeForecaster:
    """One node's generation and consumption forecaster; see the module docstring."""

    def __init__(self, latitude: float = DEFAULT_LATITUDE, longitude: float = DEFAULT_LONGITUDE,
                 interval_s: int = 900, utc_offset_s: int = 0):
        _check_location(latitude, longitude)
        if not isinstance(interval_s, int) or interval_s < 60 or DAY_S % interval_s:
            raise ValueError(f"interval_s={interval_s!r}: must be an integer >= 60 dividing a day")
        self.interval_s, self.per_day = interval_s, DAY_S // interval_s
        self.history = ReadingHistory(HISTORY_DAYS * self.per_day)
        self.clear_sky = ClearSkyCache(latitude, longitude, interval_s, utc_offset_s,
                                       days_kept=LOOKBACK_DAYS + 4)
        self.features = FeatureMaker(self.history, self.clear_sky, LOOKBACK_DAYS)
        forget = FORGET_PER_DAY ** (1.0 / self.per_day)
        snapshots = HISTORY_DAYS - LOOKBACK_DAYS + 2
        self.pv_model = OnlineRidge(np.array(PV_PRIOR), RIDGE_STRENGTH, forget, snapshots)
        self.load_model = OnlineRidge(np.array(LOAD_PRIOR), RIDGE_STRENGTH, forget, snapshots)
        self.horizon_edges = np.array(HORIZON_EDGES)
        self.train_horizons = np.array(TRAIN_HORIZONS)
        self.first_index: int | None = None
        self.unlearned: list[int] = []
        """Indices observed since the last refit, not yet in the ridge statistics (< a day)."""

    def nbytes(self) -> int:
        """Bytes held in arrays (history, clear-sky cache, ridge statistics and snapshots)."""
        return (self.history.nbytes + self.clear_sky.nbytes + self.features.nbytes
                + self.pv_model.nbytes + self.load_model.nbytes)

    # -- readings ---------------------------------------------------------------------------

    def observe(self, interval_start_s: int, generation_wh: float, consumption_wh: float) -> None:
        """Add the reading of one ended interval; raises :class:`ReadingError` (with a
        ``reason`` to count) for a duplicate, out-of-order, misaligned or negative reading."""
        index = self._index(interval_start_s)
        newest = self.history.newest
        new_day = newest is not None and index // self.per_day != newest // self.per_day
        if new_day:           # before the append: the ring still holds what the day's rows read
            self._learn()
        self.history.append(index, generation_wh, consumption_wh)
        if self.first_index is None:
            self.first_index = index
        if new_day:
            day_start = index - index % self.per_day
            self.pv_model.snapshot(day_start)
            self.load_model.snapshot(day_start)
        self.unlearned.append(index)

    def _index(self, interval_start_s: int) -> int:
        if not isinstance(interval_start_s, (int, np.integer)) \
                or interval_start_s % self.interval_s:
            raise ReadingError("misaligned", f"reading interval_start_s={interval_start_s!r}: "
                               f"must be an integer multiple of interval_s={self.interval_s}")
        return int(interval_start_s) // self.interval_s

    def _learn(self) -> None:
        """Score each reading observed since the last refit as the target of each horizon
        bucket's forecast (issued ``horizon`` intervals before it), all in one batch."""
        readings = len(self.unlearned)
        if not readings:
            return
        buckets = np.tile(np.arange(len(TRAIN_HORIZONS)), readings)
        targets = np.repeat(self.unlearned, len(TRAIN_HORIZONS))
        later = np.repeat(np.arange(readings - 1, -1, -1), len(TRAIN_HORIZONS))
        cutoffs = targets - self.train_horizons[buckets] + 1
        generation, consumption = self.history.values(targets, targets + 1)
        pv = self.features.pv(targets, cutoffs)
        ok = pv.ok
        self.pv_model.learn(readings, buckets[ok], pv.x[ok], generation[ok] / pv.scale[ok],
                            pv.scale[ok] / self.interval_s, later[ok])
        load = self.features.load(targets, cutoffs)
        ok = load.ok
        self.load_model.learn(readings, buckets[ok], load.x[ok], consumption[ok] / load.level[ok],
                              np.ones(ok.sum()), later[ok])
        self.unlearned.clear()

    # -- forecasts --------------------------------------------------------------------------

    def predict(self, target_start_s: int, issued_at_s: int,
                method: str = "learned") -> Forecast:
        """Generation and consumption (Wh) of the interval starting at ``target_start_s``, as
        forecast at ``issued_at_s`` from the readings that had ended by then."""
        generation, consumption = self.predict_many([target_start_s], issued_at_s, method)
        return Forecast(float(generation[0]), float(consumption[0]))

    def predict_many(self, target_starts_s, issued_at_s: int,
                     method: str = "learned") -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` for several targets issued at the same time (a day-ahead schedule
        at the gate), in one batch: arrays of generation and consumption (Wh)."""
        if method not in METHODS:
            raise ForecastRequestError(f"method={method!r}: must be one of {METHODS}")
        requests = [self._request(target, issued_at_s) for target in target_starts_s]
        if not requests:
            return np.zeros(0), np.zeros(0)
        targets = np.array([target for target, _ in requests], dtype=np.int64)
        cutoff = requests[0][1]
        if method == "learned":
            return self._learned_pv(targets, cutoff), self._learned_load(targets, cutoff)
        rows = [self._persistence(cutoff) if method == "persistence"
                else self._yesterday(int(target), cutoff) for target in targets]
        return (np.array([row.generation_wh for row in rows]),
                np.array([row.consumption_wh for row in rows]))

    def clear_sky_generation(self, target_start_s: int, issued_at_s: int) -> float:
        """The most the house is expected to generate (Wh, as metered) in the interval starting
        at ``target_start_s``, from the readings that had ended by ``issued_at_s``: its
        clear-sky capacity at that time of day times the clear-sky irradiation of the target,
        at the largest clear-sky index a forecast takes (``K_MAX``); at dawn and dusk the
        forecast itself (the slot's recent mean).  0 at night and for a house that has not
        generated yet.  Where the forecast is 0 with the sun up (a dull hour, the morning before
        the PV overtakes the load) this says whether a surplus is possible at all."""
        target, cutoff = self._request(target_start_s, issued_at_s)
        pv = self.features.pv(np.array([target]), np.array([cutoff]))
        return float(np.where(pv.ok, K_MAX * pv.scale, pv.fallback)[0])

    def past_errors(self, target_starts_s, issued_at_s) -> np.ndarray:
        """How far off the net forecast (generation - consumption, Wh) of each past target
        issued at its ``issued_at_s`` (one time, or one per target) was from the reading:
        absolute errors, NaN where the target's reading is not known.  What a node that has just
        started with a history uses to size its hedges (:class:`p2pnode.trading.hedging.ErrorScale`)
        before its own forecasts have been scored."""
        targets = [int(t) for t in target_starts_s]
        issued = np.broadcast_to(np.asarray(issued_at_s, dtype=np.float64), (len(targets),))
        errors = np.full(len(targets), np.nan)
        if self.history.newest is None:
            return errors
        for at in np.unique(issued):
            rows = np.flatnonzero(issued == at)
            generation, consumption = self.predict_many([targets[i] for i in rows], float(at))
            actual_g, actual_c = self.history.values(
                [self._index(targets[i]) for i in rows], self.history.newest + 1)
            errors[rows] = np.abs((generation - consumption) - (actual_g - actual_c))
        return errors

    def _request(self, target_start_s: int, issued_at_s: int) -> tuple[int, int]:
        if not isinstance(target_start_s, (int, np.integer)) or target_start_s % self.interval_s:
            raise ForecastRequestError(f"target_start_s={target_start_s!r}: must be an integer "
                                       f"multiple of interval_s={self.interval_s}")
        if not isinstance(issued_at_s, (int, float, np.integer, np.floating)) \
                or not math.isfinite(issued_at_s):
            raise ForecastRequestError(f"issued_at_s={issued_at_s!r}: must be a finite number")
        target, cutoff = int(target_start_s) // self.interval_s, math.floor(
            issued_at_s / self.interval_s)
        if target < cutoff:
            raise ForecastRequestError(f"target_start_s={target_start_s}: that interval had "
                                       f"ended by issued_at_s={issued_at_s}")
        if target - cutoff >= MAX_HORIZON_DAYS * self.per_day:
            raise ForecastRequestError(f"target_start_s={target_start_s}: more than "
                                       f"{MAX_HORIZON_DAYS} days after issued_at_s={issued_at_s}")
        oldest = self.history.oldest
        if self.first_index is not None and self.first_index < oldest \
                and cutoff - LOOKBACK_DAYS * self.per_day < oldest:
            raise ForecastRequestError(
                f"issued_at_s={issued_at_s}: older than the history kept allows "
                f"({HISTORY_DAYS - LOOKBACK_DAYS} days before the newest reading)")
        return target, cutoff

    def _buckets(self, targets: np.ndarray, cutoff: int) -> np.ndarray:
        return np.searchsorted(self.horizon_edges, targets - cutoff + 1)

    def _learned_pv(self, targets: np.ndarray, cutoff: int) -> np.ndarray:
        pv = self.features.pv(targets, np.full(targets.size, cutoff))
        coef = self.pv_model.coefficients(cutoff)[self._buckets(targets, cutoff)]
        index = np.clip(np.einsum("ij,ij->i", pv.x, coef), 0.0, K_MAX)
        return np.where(pv.ok, index * pv.scale, pv.fallback)

    def _learned_load(self, targets: np.ndarray, cutoff: int) -> np.ndarray:
        load = self.features.load(targets, np.full(targets.size, cutoff))
        coef = self.load_model.coefficients(cutoff)[self._buckets(targets, cutoff)]
        relative = np.maximum(np.einsum("ij,ij->i", load.x, coef), 0.0)
        return np.where(load.ok, relative * load.level, self._persistence(cutoff).consumption_wh)

    def _persistence(self, cutoff: int) -> Forecast:
        last = self.history.last_known(cutoff)
        if last is None:
            return Forecast(0.0, 0.0)
        generation, consumption = self.history.values([last], cutoff)
        return Forecast(float(generation[0]), float(consumption[0]))

    def _yesterday(self, target: int, cutoff: int) -> Forecast:
        days_back = max(1, -(-(target - cutoff + 1) // self.per_day))
        generation, consumption = self.history.values([target - days_back * self.per_day], cutoff)
        if np.isnan(generation[0]):
            return self._persistence(cutoff)
        return Forecast(float(generation[0]), float(consumption[0]))


def _check_location(latitude: float, longitude: float) -> None:
    for name, value, bound in (("latitude", latitude, 90), ("longitude", longitude, 180)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or abs(value) > bound:
            raise ValueError(f"{name}={value!r}: must be a number within +-{bound} degrees")


__all__ = ["DEFAULT_LATITUDE", "DEFAULT_LONGITUDE", "DEFAULT_UTC_OFFSET_S", "Forecast",
           "HISTORY_DAYS", "LOAD_FEATURES", "LOOKBACK_DAYS", "METHODS", "NodeForecaster",
           "PV_FEATURES"]
