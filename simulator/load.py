"""Household electricity demand: the BDEW standard load profile, varied per house.

Data source: the BDEW (German Association of Energy and Water Industries) standard load profile
for households ``H0``, 15-minute values by season and weekday, as packaged by ``demandlib``
(``demandlib.bdew.ElecSlp``, installed from PyPI; MIT licence).  ``h0_dyn`` multiplies ``h0`` by
the BDEW dynamisation polynomial (a smooth seasonal factor: more demand in winter, less in
summer); ``h0`` is the static profile.  Both are normalised to 1 over a calendar year, so a value
times the annual consumption is the energy of that quarter hour.  Holidays are not marked.

The profile is the average of many households, so every house gets its own variation here:
an annual consumption, a time shift (earlier or later routines) and multiplicative noise per
interval.  All variation is vectorised over houses; nothing here reads a file except
:func:`standard_load_shares`.
"""

from __future__ import annotations

import warnings
from datetime import date, timedelta

import numpy as np
import pandas as pd

from simulator.errors import ProfileError

LOAD_PROFILES = ("h0_dyn", "h0")
SLP_STEP_S = 900
"""The BDEW profile's resolution (15 minutes)."""
DAY_S = 86_400


def standard_load_shares(profile: str, first_day: date, days: int) -> np.ndarray:
    """Shares of annual consumption per 15 minutes from ``first_day`` for ``days`` days.

    One BDEW year is built per calendar year touched (about 0.2 s each).
    """
    if profile not in LOAD_PROFILES:
        raise ProfileError(f"load profile {profile!r}: must be one of {LOAD_PROFILES}")
    last_day = first_day + timedelta(days=days - 1)
    years = range(first_day.year, last_day.year + 1)
    series = pd.concat([_bdew_year(year)[profile] for year in years])
    start = pd.Timestamp(first_day)
    end = pd.Timestamp(last_day) + pd.Timedelta(days=1)
    window = series[(series.index >= start) & (series.index < end)]
    values = window.to_numpy(dtype=np.float64)
    if values.size != days * DAY_S // SLP_STEP_S:
        raise ProfileError(f"BDEW profile has {values.size} values for {days} day(s)")
    return values


def _bdew_year(year: int) -> pd.DataFrame:
    from demandlib import bdew

    # demandlib 0.2.x calls warnings.simplefilter("error") inside ElecSlp, which would turn every
    # later warning in the process into an exception; catch_warnings restores the filters.
    with warnings.catch_warnings():
        slp = bdew.ElecSlp(year=year)
    return slp.get_profiles("h0", "h0_dyn")


def draw_annual_kwh(rng: np.random.Generator, houses: int, median_kwh: float,
                    sigma: float) -> np.ndarray:
    """Annual consumption per house: log-normal around ``median_kwh``, clipped to 1/4..4x."""
    draws = median_kwh * np.exp(sigma * rng.standard_normal(houses))
    return np.clip(draws, median_kwh / 4, median_kwh * 4)


def draw_time_shifts_s(rng: np.random.Generator, houses: int, sd_s: float) -> np.ndarray:
    """Per-house shift of daily routines (s, positive = later), normal, clipped to +-3 sd.

    Always draws, even for ``sd_s = 0``, so later draws do not depend on this parameter.
    """
    return np.clip(sd_s * rng.standard_normal(houses), -3 * sd_s, 3 * sd_s)


def draw_noise(rng: np.random.Generator, houses: int, intervals: int,
               sigma: float) -> np.ndarray:
    """Multiplicative log-normal noise with mean 1 per house and interval (1 if sigma = 0)."""
    normal = rng.standard_normal((houses, intervals))
    return np.exp(sigma * normal - sigma * sigma / 2)


def household_load_wh(shares_padded: np.ndarray, edges_s: np.ndarray, annual_kwh: np.ndarray,
                      shifts_s: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Energy per house and interval (Wh).

    ``shares_padded`` are 15-minute shares of annual consumption covering one day before the
    first interval edge and one day after the last (room for the time shifts); ``edges_s`` are
    interval edges in seconds from the start of the first simulated day.  A house shifted by
    ``s`` seconds consumes at time ``t`` what the profile has at ``t - s``; the shifted energy
    is read off the cumulative profile, so no energy is lost or double counted.
    """
    cumulative = np.concatenate(([0.0], np.cumsum(shares_padded)))
    knots_s = np.arange(cumulative.size, dtype=np.float64) * SLP_STEP_S - DAY_S
    at = edges_s[None, :] - shifts_s[:, None]
    cum_at = np.interp(at.ravel(), knots_s, cumulative).reshape(at.shape)
    shares = np.diff(cum_at, axis=1)
    return shares * (annual_kwh[:, None] * 1000.0) * noise
