"""Features of the learned forecasters, computed from the reading history before a cutoff.

Notation: ``S`` intervals a day; ``T`` the target interval index; ``C`` the cutoff (the first
interval whose reading had not ended when the forecast was issued; every lookup masks ``>= C``).

**PV** works in clear-sky-index space.  ``cs(i)`` is the clear-sky irradiation of interval ``i``
(:mod:`models.clearsky`, Wh/m2).  Where the sun is up (``cs >= SUN_MIN``) the house's ratio
``r(i) = generation(i) / cs(i)`` is divided by its *clear-sky capacity* at that time of day,
``cap(slot) = max r`` over the same slot of the last ``lookback_days`` days (this learns the
roof's size, tilt, azimuth and shading without being told), giving ``k(i)`` (about 1 on a clear
day, low under clouds).  Features: ``k`` of the newest reading, mean ``k`` of the last hour, mean
``k`` of the last day, mean ``k`` at the target's slot over the last days, 1.  The prediction is
``clip(w . x, 0, K_MAX) * cap(slot T) * cs(T)``.  At dawn and dusk (``cs < SUN_MIN``) it is the
mean of the same slot over the last days.

**Load** works relative to the level ``m`` = mean consumption over the last day.  Features (each
divided by ``m``): the newest reading, the mean of the last hour, the same slot on the newest day
available (same time yesterday), the mean of the same slot on the last ``SAME_TYPE_DAYS`` days of
the target's day type (the calendar: Monday-Friday, Saturday, Sunday, as the BDEW profiles
distinguish them), the mean of the same slot over the last seven available days, 1.  The
prediction is ``m * max(w . x, 0)``.

A feature that cannot be computed (a gap, no history yet) falls back to a coarser one, so
forecasts start from the first reading and sharpen as days of history accumulate.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from models.clearsky import clear_sky_energy_wh_m2
from models.forecast_history import ReadingHistory

PV_FEATURES = ("k_last", "k_hour", "k_day", "k_slot", "k_anomaly", "bias")
LOAD_FEATURES = ("last", "hour", "yesterday", "same_day_type", "slot_mean", "bias")
SUN_MIN_W_M2 = 50.0
"""Below this mean clear-sky irradiance an interval is dawn/dusk/night: no clear-sky index."""
K_MAX = 1.2
K_USUAL_MIN = 0.05
"""Below this usual clear-sky index (dawn, a slot that is always shaded) no anomaly is taken."""
DEFAULT_K = 0.7
HOUR_S = 3600
WEEK_DAYS = 7
SAME_TYPE_DAYS = 4


def day_type(day):
    """0 Monday to Friday, 1 Saturday, 2 Sunday, for days since 1970-01-01 (a Thursday) on
    the node's clock."""
    weekday = (np.asarray(day) + 3) % 7
    return np.clip(weekday - 4, 0, 2)


class ClearSkyCache:
    """Clear-sky irradiation per interval index, in a ring of ``days_kept`` whole days that are
    computed when first asked for (a day at a time)."""

    def __init__(self, latitude: float, longitude: float, interval_s: int, utc_offset_s: int,
                 days_kept: int):
        self.latitude, self.longitude = latitude, longitude
        self.interval_s, self.utc_offset_s = interval_s, utc_offset_s
        self.per_day = 86_400 // interval_s
        self.days_kept = days_kept
        self.ring = np.zeros(days_kept * self.per_day)
        self.ring_day = np.full(days_kept, np.iinfo(np.int64).min)

    @property
    def nbytes(self) -> int:
        return self.ring.nbytes + self.ring_day.nbytes

    def energy(self, indices) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        days = indices // self.per_day
        if days.size and days.max() - days.min() >= self.days_kept:     # wider than the ring
            return self._uncached(indices)
        missing = self.ring_day[days % self.days_kept] != days
        if missing.any():
            for day in np.unique(days[missing]):
                self._compute(int(day))
        return self.ring[indices % self.ring.size]

    def _compute(self, day: int) -> None:
        at = (day % self.days_kept) * self.per_day
        self.ring[at:at + self.per_day] = self._uncached(day * self.per_day
                                                         + np.arange(self.per_day))
        self.ring_day[day % self.days_kept] = day

    def _uncached(self, indices: np.ndarray) -> np.ndarray:
        return clear_sky_energy_wh_m2(indices * self.interval_s - self.utc_offset_s,
                                      self.interval_s, self.latitude, self.longitude)


class PvRows(NamedTuple):
    """PV features of ``n`` (target, cutoff) pairs.  Where ``ok`` (the sun is up at the target
    and the house's capacity is known): ``x`` [n, feature] and ``scale`` (Wh per unit of
    clear-sky index); elsewhere the forecast is ``fallback`` (the slot's recent mean at dawn and
    dusk, else 0)."""
    x: np.ndarray
    scale: np.ndarray
    fallback: np.ndarray
    ok: np.ndarray


class LoadRows(NamedTuple):
    """Load features ``x`` [n, feature] relative to ``level``; ``ok`` where the level is known."""
    x: np.ndarray
    level: np.ndarray
    ok: np.ndarray


class FeatureMaker:
    """Feature rows for (target, cutoff) pairs from the history before each cutoff, computed for
    many pairs at once (the daily learning batch) or one (a forecast)."""

    def __init__(self, history: ReadingHistory, clear_sky: ClearSkyCache, lookback_days: int):
        self.history, self.clear_sky = history, clear_sky
        self.per_day = clear_sky.per_day
        self.lookback_days = lookback_days
        self.hour = max(1, HOUR_S // clear_sky.interval_s)
        self.sun_min_wh_m2 = SUN_MIN_W_M2 * clear_sky.interval_s / HOUR_S
        self.day_offsets = np.arange(-self.per_day, 0)
        self.k_key: tuple[int, int, int | None] | None = None
        self.k_span = self.k_usual_span = np.zeros(0)
        """The clear-sky index over the span last asked for (a forecast's last day, or the
        learning batch's days), kept while the span and the history are unchanged."""

    @property
    def nbytes(self) -> int:
        return self.k_span.nbytes + self.k_usual_span.nbytes

    # -- PV -------------------------------------------------------------------------------

    def pv(self, targets: np.ndarray, cutoffs: np.ndarray) -> PvRows:
        targets, cutoffs = _as_indices(targets), _as_indices(cutoffs)
        same_slot = targets[:, None] - self.per_day * np.arange(1, self.lookback_days + 1)
        slot_gen, _ = self.history.values(same_slot, cutoffs[:, None])
        cs_target = self.clear_sky.energy(targets)
        sun_up = cs_target >= self.sun_min_wh_m2
        dawn = ~sun_up & (cs_target > 0)
        fallback = np.zeros(targets.size)
        if dawn.any():
            fallback[dawn] = np.nan_to_num(_row_mean(slot_gen[dawn, :WEEK_DAYS]), nan=0.0)
        slot_ratios = slot_gen / self._sunny(self.clear_sky.energy(same_slot))
        cap = _row_max(slot_ratios)
        unknown = sun_up & ~(cap > 0)
        if unknown.any():              # no sunny reading at this slot yet: any recent slot
            cap[unknown] = self._recent_capacity(cutoffs[unknown])
        ok = sun_up & (cap > 0)
        cap = np.where(ok, cap, np.nan)
        k_recent, k_usual = self._clear_sky_index(cutoffs)
        k_slot = _row_mean(slot_ratios / cap[:, None])
        last, usual = k_recent[:, -1], k_usual[:, -1]
        anomaly = np.divide(last, usual, out=np.full(last.shape, np.nan), where=usual > K_USUAL_MIN)
        x = _features([last, _row_mean(k_recent[:, -self.hour:]), _row_mean(k_recent), k_slot,
                       np.minimum(anomaly * k_slot, K_MAX)], (3, 2, 0), DEFAULT_K)
        return PvRows(x, np.where(ok, cap * cs_target, 0.0), fallback, ok)

    def _sunny(self, cs: np.ndarray) -> np.ndarray:
        return np.where(cs >= self.sun_min_wh_m2, cs, np.nan)

    def _recent_capacity(self, cutoffs: np.ndarray) -> np.ndarray:
        """The best generation per clear-sky irradiation over the two days before each cutoff."""
        recent = cutoffs[:, None] + np.arange(-2 * self.per_day, 0)
        generation, _ = self.history.values(recent, cutoffs[:, None])
        return _row_max(generation / self._sunny(self.clear_sky.energy(recent)))

    def _clear_sky_index(self, cutoffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """k of the last day's intervals before each cutoff [n, S] (NaN where unknown), and the
        usual k at each of those times of day (the mean over the days before).  ``k(i)`` only
        reads readings ``<= i``, so both are computed once for the span all rows share, and
        again only when that span or the history (a new reading) changes."""
        first, stop = int(cutoffs.min()) - self.per_day, int(cutoffs.max())
        key = (first, stop, self.history.newest)
        if key != self.k_key:
            grid = np.arange(first, stop)[:, None] - self.per_day * np.arange(self.lookback_days)
            generation, _ = self.history.values(grid, stop)
            ratios = generation / self._sunny(self.clear_sky.energy(grid))
            caps = _row_max(ratios)
            known = caps > 0
            self.k_span = np.divide(ratios[:, 0], caps, out=np.full(caps.shape, np.nan),
                                    where=known)
            self.k_usual_span = np.divide(_row_mean(ratios[:, 1:]), caps,
                                          out=np.full(caps.shape, np.nan), where=known)
            self.k_key = key
        rows = cutoffs[:, None] + self.day_offsets - first
        return self.k_span[rows], self.k_usual_span[rows]

    # -- load -----------------------------------------------------------------------------

    def load(self, targets: np.ndarray, cutoffs: np.ndarray) -> LoadRows:
        targets, cutoffs = _as_indices(targets), _as_indices(cutoffs)
        _, recent = self.history.values(cutoffs[:, None] + self.day_offsets, cutoffs[:, None])
        level = _row_mean(recent)
        ok = level > 0
        level = np.where(ok, level, np.nan)
        first_back = np.maximum(1, -(-(targets - cutoffs + 1) // self.per_day))
        back = first_back[:, None] + np.arange(self.lookback_days)
        _, slot = self.history.values(targets[:, None] - self.per_day * back, cutoffs[:, None])
        target_day = targets // self.per_day
        same = (day_type(target_day[:, None] - back) == day_type(target_day)[:, None]) \
            & ~np.isnan(slot)
        same &= np.cumsum(same, axis=1) <= SAME_TYPE_DAYS
        x = _features([recent[:, -1], _row_mean(recent[:, -self.hour:]), slot[:, 0],
                       _row_mean(np.where(same, slot, np.nan)), _row_mean(slot[:, :WEEK_DAYS])],
                      (4, 1), level)
        x[:, :-1] /= level[:, None]
        return LoadRows(x, np.where(ok, level, 0.0), ok)


def _as_indices(values) -> np.ndarray:
    return np.atleast_1d(np.asarray(values, dtype=np.int64))


def _features(columns: list[np.ndarray], order: tuple[int, ...], default) -> np.ndarray:
    """Rows of ``columns`` and a bias of 1; a row's NaN features are replaced by its first
    available of ``columns[order]``, else ``default`` (a number or one per row)."""
    substitute = np.broadcast_to(np.asarray(default, dtype=np.float64), columns[0].shape)
    for i in reversed(order):
        substitute = np.where(np.isnan(columns[i]), substitute, columns[i])
    x = np.ones((columns[0].size, len(columns) + 1))
    for i, column in enumerate(columns):
        x[:, i] = np.where(np.isnan(column), substitute, column)
    return x


def _row_mean(values: np.ndarray) -> np.ndarray:
    """Mean of each row's non-NaN values (NaN for a row without any)."""
    known = ~np.isnan(values)
    count = known.sum(axis=-1)
    total = np.where(known, values, 0.0).sum(axis=-1)
    return np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0)


def _row_max(values: np.ndarray) -> np.ndarray:
    """Largest of each row's non-NaN values (NaN for a row without any)."""
    top = np.where(np.isnan(values), -np.inf, values).max(axis=-1)
    return np.where(np.isinf(top), np.nan, top)
