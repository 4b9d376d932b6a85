"""Rooftop PV: AC power per installed kWp from a typical-meteorological-year weather file.

Data source: the TMY3 files that ship inside the ``pvlib`` package (``pvlib/data/``, US National
Solar Radiation Database, public domain): hourly global, direct and diffuse irradiance, air
temperature and wind speed for a typical year.  ``greensboro`` (723170, Greensboro NC, 36.1 N) is
the default; ``sand_point`` (703165, Sand Point AK, 55.3 N) is closer to German latitudes but
maritime and cloudy.  The simulated day takes the TMY hours of the same month and day.  Times
are the site's local standard time, used as the community's clock (no daylight saving).

Model (pvlib functions, the PVWatts chain): hour-mean irradiance is anchored at the middle of
its hour and interpolated to a fine grid; NREL SPA solar position; Hay-Davies transposition to
each roof plane; Faiman cell temperature; PVWatts DC (-0.37 %/K) with 14 % system losses;
PVWatts inverter with a DC/AC ratio of 1.1.  Only :func:`read_weather` touches a file.

Sanity (south, 30 degrees): Greensboro yields about 1400 kWh/kWp a year (PVWatts' own figure
for the region is 1350-1450), 0.5-6.3 kWh/kWp a day; Sand Point about 850 kWh/kWp a year.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import ProfileError

WEATHER_SITES = {"greensboro": "723170TYA.CSV", "sand_point": "703165TY.csv"}
HOURS_PER_YEAR = 8760
GAMMA_PDC_PER_K = -0.0037
SYSTEM_LOSSES = 0.14
DC_AC_RATIO = 1.1
INVERTER_EFFICIENCY = 0.96

ORIENTATIONS = ((30.0, 180.0), (30.0, 135.0), (30.0, 225.0), (35.0, 90.0), (35.0, 270.0),
                (15.0, 180.0))
"""Roof planes (tilt, azimuth in degrees, 180 = south) houses are drawn from."""
ORIENTATION_WEIGHTS = (0.35, 0.15, 0.15, 0.1, 0.1, 0.15)

_FIELDS = ("ghi", "dni", "dhi", "temp_air", "wind_speed")


@dataclass(frozen=True, eq=False)
class Weather:
    """A typical year at one site: each field is an array [day of a non-leap year, hour].

    Hour ``h`` holds the mean over ``[h, h+1)`` local standard time.
    """

    site: str
    latitude: float
    longitude: float
    altitude_m: float
    utc_offset_h: float
    ghi: np.ndarray
    dni: np.ndarray
    dhi: np.ndarray
    temp_air: np.ndarray
    wind_speed: np.ndarray


def read_weather(site: str) -> Weather:
    """Read a TMY3 file packaged with pvlib (the only I/O of this module)."""
    import pvlib

    if site not in WEATHER_SITES:
        raise ProfileError(f"weather site {site!r}: must be one of {tuple(WEATHER_SITES)}")
    path = Path(pvlib.__file__).parent / "data" / WEATHER_SITES[site]
    try:
        data, meta = pvlib.iotools.read_tmy3(str(path), coerce_year=2023, map_variables=True)
    except (OSError, ValueError) as exc:
        raise ProfileError(f"cannot read packaged weather file {path}: {exc}") from exc
    if len(data) != HOURS_PER_YEAR:
        raise ProfileError(f"{path}: expected {HOURS_PER_YEAR} hours, found {len(data)}")
    # TMY3 stamps are hour-ending (01:00..24:00): sort by the hour's start.
    starts = data.index - pd.Timedelta(hours=1)
    order = np.argsort(starts.asi8, kind="stable")
    fields = {name: data[name].to_numpy(np.float64)[order].reshape(365, 24) for name in _FIELDS}
    return Weather(site=site, latitude=float(meta["latitude"]),
                   longitude=float(meta["longitude"]), altitude_m=float(meta["altitude"]),
                   utc_offset_h=float(meta["TZ"]), **fields)


def pv_energy_wh_per_kwp(weather: Weather, first_day: date, days: int, interval_s: int,
                         orientations=ORIENTATIONS) -> np.ndarray:
    """AC energy per kWp installed, per roof orientation and interval: array [K, intervals]."""
    step_s = int(np.gcd(interval_s, 300))
    power_w = pv_ac_w_per_kwp(weather, first_day, days, step_s, orientations)
    per_interval = interval_s // step_s
    energy_wh = power_w * (step_s / 3600.0)
    return energy_wh.reshape(len(orientations), -1, per_interval).sum(axis=2)


def pv_ac_w_per_kwp(weather: Weather, first_day: date, days: int, step_s: int,
                    orientations=ORIENTATIONS) -> np.ndarray:
    """Mean AC power per kWp (W) at the midpoint of every ``step_s`` step: array [K, steps]."""
    import pvlib

    mid_s = (np.arange(days * 86_400 // step_s) + 0.5) * step_s
    tz = timezone(timedelta(hours=weather.utc_offset_h))
    times = (pd.Timestamp(first_day) + pd.to_timedelta(mid_s, unit="s")).tz_localize(tz)
    sun = pvlib.solarposition.get_solarposition(times, weather.latitude, weather.longitude,
                                                altitude=weather.altitude_m)
    zenith = sun["apparent_zenith"].to_numpy()
    azimuth = sun["azimuth"].to_numpy()
    wx = _interpolated_weather(weather, first_day, days, mid_s)
    up = zenith < 90.0
    for name in ("ghi", "dni", "dhi"):
        wx[name] = np.where(up, np.maximum(wx[name], 0.0), 0.0)
    dni_extra = pvlib.irradiance.get_extra_radiation(times).to_numpy()
    out = np.empty((len(orientations), mid_s.size))
    for k, (tilt, surface_azimuth) in enumerate(orientations):
        poa = pvlib.irradiance.get_total_irradiance(
            tilt, surface_azimuth, zenith, azimuth, wx["dni"], wx["ghi"], wx["dhi"],
            dni_extra=dni_extra, model="haydavies")
        poa_global = np.nan_to_num(np.asarray(poa["poa_global"], dtype=np.float64))
        poa_global = np.where(up, np.maximum(poa_global, 0.0), 0.0)
        temp_cell = pvlib.temperature.faiman(poa_global, wx["temp_air"], wx["wind_speed"])
        pdc = pvlib.pvsystem.pvwatts_dc(poa_global, temp_cell, 1000.0, GAMMA_PDC_PER_K)
        pdc = np.asarray(pdc) * (1.0 - SYSTEM_LOSSES)
        pac = pvlib.inverter.pvwatts(pdc, 1000.0 / DC_AC_RATIO, INVERTER_EFFICIENCY)
        out[k] = np.maximum(np.nan_to_num(np.asarray(pac, dtype=np.float64)), 0.0)
    return out


def _interpolated_weather(weather: Weather, first_day: date, days: int,
                          at_s: np.ndarray) -> dict[str, np.ndarray]:
    """Weather fields at ``at_s`` (s after ``first_day`` 00:00), linear between hour middles."""
    padded_days = [_tmy_day(first_day + timedelta(days=d)) for d in range(-1, days + 1)]
    anchors_s = (np.arange(len(padded_days) * 24) + 0.5 - 24) * 3600.0
    return {name: np.interp(at_s, anchors_s, getattr(weather, name)[padded_days].ravel())
            for name in _FIELDS}


def _tmy_day(day: date) -> int:
    """Index of ``day``'s month and day in the (non-leap) TMY year; 29 February uses the 28th."""
    day_of_month = 28 if (day.month, day.day) == (2, 29) else day.day
    return date(2023, day.month, day_of_month).timetuple().tm_yday - 1
