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
distinguish them), the mean of the same slot over the last seven available days, 1.  The prediction is ``m * max(w . x, 0)``.

A feature that cannot be computed (a gap, no history yet) falls back to a coarser one, so
forecasts start from the first reading and sharpen as days of history accumulate.
"""

from __future__ import annotations

import numpy as np

from models.clearsky import clear_sky_energy_wh_m2
from models.forecast_history import ReadingHistory

PV_FEATURES = ("k_last", "k_hour", "k_day", "k_slot", "bias")
LOAD_FEATURES = ("last", "hour", "yesterday", "same_day_type", "slot_mean", "bias")
SUN_MIN_W_M2 = 50.0
"""Below this mean clear-sky irradiance an interval is dawn/dusk/night: no clear-sky index."""
K_MAX = 1.2
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
            return clear_sky_energy_wh_m2(indices * self.interval_s - self.utc_offset_s,
                                          self.interval_s, self.latitude, self.longitude)
        missing = self.ring_day[days % self.days_kept] != days
        if missing.any():
            for day in np.unique(days[missing]):
                self._compute(int(day))
        return self.ring[indices % self.ring.size]

    def _compute(self, day: int) -> None:
        starts = (day * self.per_day + np.arange(self.per_day)) * self.interval_s \
            - self.utc_offset_s
        at = (day % self.days_kept) * self.per_day
        self.ring[at:at + self.per_day] = clear_sky_energy_wh_m2(
            starts, self.interval_s, self.latitude, self.longitude)
        self.ring_day[day % self.days_kept] = day


class FeatureMaker:
    """Feature vectors for a target interval from the history before a cutoff."""

    def __init__(self, history: ReadingHistory, clear_sky: ClearSkyCache, lookback_days: int):
        self.history, self.clear_sky = history, clear_sky
        self.per_day = clear_sky.per_day
        self.lookback_days = lookback_days
        self.hour = max(1, HOUR_S // clear_sky.interval_s)
        self.sun_min_wh_m2 = SUN_MIN_W_M2 * clear_sky.interval_s / HOUR_S

    # -- PV -------------------------------------------------------------------------------

    def pv(self, target: int, cutoff: int) -> tuple[np.ndarray | None, float, float]:
        """``(x, scale, fallback)``: features and Wh per unit of clear-sky index when the sun is
        up at ``target`` (else ``x`` is None and ``fallback`` is the slot's recent mean)."""
        back = self.per_day * np.arange(1, self.lookback_days + 1)
        same_slot = target - back
        slot_gen, _ = self.history.values(same_slot, cutoff)
        cs_target = float(self.clear_sky.energy([target])[0])
        if cs_target < self.sun_min_wh_m2:
            fallback = _mean(slot_gen[:WEEK_DAYS]) if cs_target > 0 else 0.0
            return None, 0.0, 0.0 if np.isnan(fallback) else fallback
        slot_ratios = slot_gen / self._sunny(self.clear_sky.energy(same_slot))
        cap = self._capacity(slot_ratios, cutoff)
        if cap is None:
            return None, 0.0, 0.0
        recent = np.arange(cutoff - self.per_day, cutoff)
        k_recent = self._clear_sky_index(recent, cutoff)
        k_slot = _mean(slot_ratios / cap)
        k_day = _mean(k_recent)
        k_hour = _mean(k_recent[-self.hour:])
        k_last = k_recent[-1]
        x = _filled([k_last, k_hour, k_day, k_slot], (3, 2, 0), DEFAULT_K)
        return np.append(x, 1.0), cap * cs_target, 0.0

    def pv_target(self, target: int, scale: float) -> float:
        """The clear-sky index the model should have predicted for ``target`` (just observed)."""
        generation, _ = self.history.values([target], target + 1)
        return float(generation[0]) / scale

    def _sunny(self, cs: np.ndarray) -> np.ndarray:
        return np.where(cs >= self.sun_min_wh_m2, cs, np.nan)

    def _capacity(self, slot_ratios: np.ndarray, cutoff: int) -> float | None:
        """The house's clear-sky capacity at the target's slot (Wh per Wh/m2)."""
        cap = _max(slot_ratios)
        if np.isnan(cap) or cap <= 0:      # no sunny reading at this slot yet: any recent slot
            recent = np.arange(cutoff - self.per_day * 2, cutoff)
            generation, _ = self.history.values(recent, cutoff)
            cap = _max(generation / self._sunny(self.clear_sky.energy(recent)))
        return None if np.isnan(cap) or cap <= 0 else float(cap)

    def _clear_sky_index(self, indices: np.ndarray, cutoff: int) -> np.ndarray:
        """k of each index, against the capacity of its own slot (NaN where unknown)."""
        back = self.per_day * np.arange(0, self.lookback_days)
        grid = indices[:, None] - back[None, :]
        generation, _ = self.history.values(grid, cutoff)
        ratios = generation / self._sunny(self.clear_sky.energy(grid))
        caps = _max(ratios, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(caps > 0, ratios[:, 0] / caps, np.nan)

    # -- load -----------------------------------------------------------------------------

    def load(self, target: int, cutoff: int) -> tuple[np.ndarray | None, float]:
        """``(x, level)``: features relative to the last day's mean load (None: no history)."""
        _, recent = self.history.values(np.arange(cutoff - self.per_day, cutoff), cutoff)
        level = _mean(recent)
        if np.isnan(level) or level <= 0:
            return None, 0.0
        first_back = max(1, -(-(target - cutoff + 1) // self.per_day))
        back = np.append(first_back + np.arange(WEEK_DAYS), WEEK_DAYS)
        _, both = self.history.values(target - self.per_day * back, cutoff)
        slot, week = both[:WEEK_DAYS], both[WEEK_DAYS:]
        x = _filled([recent[-1], _mean(recent[-self.hour:]), slot[0], week[0], _mean(slot)],
                    (4, 1), level)
        return np.append(x / level, 1.0), level

    def load_target(self, target: int) -> float:
        _, consumption = self.history.values([target], target + 1)
        return float(consumption[0])


def _filled(values: list[float], order: tuple[int, ...], default: float) -> np.ndarray:
    """Replace NaN features by the first available of ``values[order]``, else ``default``."""
    substitute = next((values[i] for i in order if not np.isnan(values[i])), default)
    return np.array([substitute if np.isnan(v) else v for v in values])


def _mean(values: np.ndarray) -> float:
    """Mean of the non-NaN values (NaN if there are none)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    known = values[~np.isnan(values)]
    return float(known.mean()) if known.size else np.nan


def _max(values: np.ndarray, axis=None):
    values = np.asarray(values, dtype=np.float64)
    filled = np.where(np.isnan(values), -np.inf, values)
    top = np.max(filled, axis=axis) if filled.size else -np.inf
    return np.where(np.isinf(top), np.nan, top)[()]
