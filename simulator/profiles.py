"""Per-house generation and consumption for a simulated community, built from real data.

Data sources (all installed from PyPI with the package, nothing is downloaded at run time):

* **Consumption:** BDEW standard load profile for households ``h0_dyn`` (or static ``h0``) from
  ``demandlib`` (see :mod:`simulator.load`), scaled per house by an annual consumption drawn
  log-normally around 3000 kWh, shifted in time per house and multiplied by log-normal noise.
* **Generation:** PVWatts AC power per kWp from a TMY3 weather file shipped inside ``pvlib``
  (see :mod:`simulator.pv`), for a roof orientation and a system size (kWp) drawn per house and a
  per-house performance factor (shading, soiling, ageing).
* **Batteries:** optional home batteries (capacity, 0.5 C power, 90 % round trip) on a share of
  the PV houses, run with a self-consumption policy (see :mod:`simulator.battery`).

:func:`build_profiles` is the shell: it reads the packaged data, calls the pure
:func:`compose_profiles` and caches the result as ``.npz`` (see :mod:`simulator.cache`).  The
same :class:`ProfileSpec` (including the seed) always gives the same arrays.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from simulator import cache, load, pv
from simulator.battery import BatteryBank, NetPositions, apply_batteries
from simulator.checks import Checker
from simulator.errors import ProfileError, ScenarioError

log = logging.getLogger(__name__)

MAX_HOUSES = 100_000
MAX_DAYS = 366
MIN_INTERVAL_S = 60
DAY_S = 86_400


@dataclass(frozen=True)
class ProfileSpec:
    """Everything that determines the profiles; it is also the cache key.

    Shares are fractions of all houses; batteries go to PV houses only (a battery charges from
    its own surplus), so ``battery_share`` may not exceed ``pv_share``.
    """

    houses: int
    day: date
    days: int = 1
    interval_s: int = 900
    pv_share: float = 0.5
    battery_share: float = 0.1
    seed: int = 0
    load_profile: str = "h0_dyn"
    weather: str = "greensboro"
    annual_kwh_median: float = 3000.0
    annual_kwh_sigma: float = 0.4
    time_shift_sd_s: float = 1800.0
    noise_sigma: float = 0.3
    pv_kwp_min: float = 3.0
    pv_kwp_max: float = 10.0
    battery_kwh_min: float = 5.0
    battery_kwh_max: float = 12.0
    battery_c_rate: float = 0.5
    battery_efficiency: float = 0.9

    def __post_init__(self):
        check = Checker("profiles")
        check.integer("houses", self.houses, 1, MAX_HOUSES)
        if not isinstance(self.day, date) or hasattr(self.day, "hour"):
            check.fail("day", self.day, "must be a date (YYYY-MM-DD)")
        check.integer("days", self.days, 1, MAX_DAYS)
        if check.integer("interval_s", self.interval_s, MIN_INTERVAL_S, DAY_S) \
                and DAY_S % self.interval_s:
            check.fail("interval_s", self.interval_s, "must divide a day (86400 s) evenly")
        pv_ok = check.share("pv_share", self.pv_share)
        if check.share("battery_share", self.battery_share) and pv_ok \
                and self.battery_share > self.pv_share:
            check.fail("battery_share", self.battery_share,
                       f"must not exceed pv_share ({self.pv_share}): batteries charge from PV")
        check.integer("seed", self.seed, 0)
        check.choice("load_profile", self.load_profile, load.LOAD_PROFILES)
        check.choice("weather", self.weather, pv.WEATHER_SITES)
        self._check_variety(check)
        try:
            check.done()
        except ScenarioError as exc:
            raise ProfileError(str(exc)) from None

    def _check_variety(self, check: Checker) -> None:
        check.number("annual_kwh_median", self.annual_kwh_median, 0, low_open=True)
        for name in ("annual_kwh_sigma", "time_shift_sd_s", "noise_sigma"):
            check.number(name, getattr(self, name), 0)
        for low, high in (("pv_kwp_min", "pv_kwp_max"), ("battery_kwh_min", "battery_kwh_max")):
            ok = check.number(low, getattr(self, low), 0, low_open=True)
            if check.number(high, getattr(self, high), 0, low_open=True) and ok \
                    and getattr(self, high) < getattr(self, low):
                check.fail(high, getattr(self, high), f"must be at least {low}")
        check.number("battery_c_rate", self.battery_c_rate, 0, low_open=True)
        check.number("battery_efficiency", self.battery_efficiency, 0, 1, low_open=True)

    @property
    def intervals(self) -> int:
        return self.days * DAY_S // self.interval_s

    def as_params(self) -> dict:
        """JSON-friendly field values (the cache key)."""
        params = dataclasses.asdict(self)
        params["day"] = self.day.isoformat()
        return params


@dataclass(frozen=True)
class HouseInfo:
    """Static facts about one house, for building its simulated meter."""

    index: int
    annual_kwh: float
    time_shift_s: float
    pv_kwp: float
    roof_tilt_deg: float
    roof_azimuth_deg: float
    battery_capacity_wh: float
    battery_power_w: float

    @property
    def has_pv(self) -> bool:
        return self.pv_kwp > 0

    @property
    def has_battery(self) -> bool:
        return self.battery_capacity_wh > 0


@dataclass(frozen=True, eq=False)
class Profiles:
    """Energy per house and interval; every array is read-only.

    ``interval_start`` are naive ``datetime64[s]`` local standard times.  ``generation_wh`` and
    ``consumption_wh`` are raw meter quantities; ``net`` is what is left after self-consumption
    and the house's battery: the surplus a house can sell and the deficit it must buy.
    """

    spec: ProfileSpec
    interval_start: np.ndarray
    generation_wh: np.ndarray
    consumption_wh: np.ndarray
    annual_kwh: np.ndarray
    time_shift_s: np.ndarray
    pv_kwp: np.ndarray
    roof_tilt_deg: np.ndarray
    roof_azimuth_deg: np.ndarray
    battery: BatteryBank
    net: NetPositions

    @property
    def houses(self) -> int:
        return self.generation_wh.shape[0]

    @property
    def intervals(self) -> int:
        return self.generation_wh.shape[1]

    @property
    def interval_s(self) -> int:
        return self.spec.interval_s

    @property
    def surplus_wh(self) -> np.ndarray:
        return self.net.surplus_wh

    @property
    def deficit_wh(self) -> np.ndarray:
        return self.net.deficit_wh

    def window(self, first: int, count: int) -> Profiles:
        """Intervals ``first .. first + count`` only (a short run on the same houses: tests,
        quick benchmarks); the battery's state of charge keeps its extra closing column."""
        cut, net = slice(first, first + count), self.net
        return dataclasses.replace(
            self, interval_start=self.interval_start[cut],
            generation_wh=self.generation_wh[:, cut], consumption_wh=self.consumption_wh[:, cut],
            net=dataclasses.replace(net, surplus_wh=net.surplus_wh[:, cut],
                                    deficit_wh=net.deficit_wh[:, cut],
                                    charge_wh=net.charge_wh[:, cut],
                                    discharge_wh=net.discharge_wh[:, cut],
                                    soc_wh=net.soc_wh[:, first:first + count + 1]))

    def house(self, index: int) -> HouseInfo:
        return HouseInfo(index=index, annual_kwh=float(self.annual_kwh[index]),
                         time_shift_s=float(self.time_shift_s[index]),
                         pv_kwp=float(self.pv_kwp[index]),
                         roof_tilt_deg=float(self.roof_tilt_deg[index]),
                         roof_azimuth_deg=float(self.roof_azimuth_deg[index]),
                         battery_capacity_wh=float(self.battery.capacity_wh[index]),
                         battery_power_w=float(self.battery.power_w[index]))


def build_profiles(spec: ProfileSpec, *, cache_dir: Path | None = None,
                   use_cache: bool = True) -> Profiles:
    """Profiles for ``spec``, from the cache if built before (the shell around the core)."""
    key = cache.cache_key(spec.as_params())
    path = cache.cache_path(cache_dir or cache.default_cache_dir(), "profiles", key)
    if use_cache:
        stored = cache.load_arrays(path, key)
        if stored is not None and _fits(spec, stored):
            return _from_arrays(spec, stored)
    first = spec.day - timedelta(days=1)
    shares = load.standard_load_shares(spec.load_profile, first, spec.days + 2)
    weather = pv.read_weather(spec.weather)
    pv_wh = pv.pv_energy_wh_per_kwp(weather, spec.day, spec.days, spec.interval_s)
    profiles = compose_profiles(spec, shares, pv_wh)
    if use_cache:
        try:
            cache.save_arrays(path, key, _to_arrays(profiles))
        except OSError as exc:
            log.warning("profile cache not written to %s: %s", path, exc)
    return profiles


def compose_profiles(spec: ProfileSpec, load_shares_padded: np.ndarray,
                     pv_wh_per_kwp: np.ndarray) -> Profiles:
    """The pure core: base curves plus seeded per-house variety.

    ``load_shares_padded``: 15-minute shares of annual demand from the day before ``spec.day``
    to the day after the last simulated day; ``pv_wh_per_kwp``: [orientation, interval] AC
    energy per kWp for :data:`simulator.pv.ORIENTATIONS`.  Draws happen in a fixed order, each
    for every house, so changing a share does not reshuffle the other draws.
    """
    rng = np.random.default_rng(spec.seed)
    n, t = spec.houses, spec.intervals
    annual_kwh = load.draw_annual_kwh(rng, n, spec.annual_kwh_median, spec.annual_kwh_sigma)
    shifts_s = load.draw_time_shifts_s(rng, n, spec.time_shift_sd_s)
    order = rng.permutation(n)
    has_pv = _first_of(order, _count(spec.pv_share, n))
    has_battery = _first_of(order, _count(spec.battery_share, n))
    kwp = np.where(has_pv, rng.uniform(spec.pv_kwp_min, spec.pv_kwp_max, n), 0.0)
    roof = rng.choice(len(pv.ORIENTATIONS), size=n, p=pv.ORIENTATION_WEIGHTS)
    performance = rng.uniform(0.85, 1.0, n)
    capacity_wh = np.where(has_battery,
                           rng.uniform(spec.battery_kwh_min, spec.battery_kwh_max, n) * 1000, 0.0)
    soc0_wh = capacity_wh * rng.uniform(0.1, 0.5, n)
    noise = load.draw_noise(rng, n, t, spec.noise_sigma)

    edges_s = np.arange(t + 1, dtype=np.float64) * spec.interval_s
    consumption = load.household_load_wh(load_shares_padded, edges_s, annual_kwh, shifts_s, noise)
    generation = (kwp * performance)[:, None] * pv_wh_per_kwp[roof]
    angles = np.asarray(pv.ORIENTATIONS)[roof]
    bank = BatteryBank(capacity_wh=capacity_wh, power_w=capacity_wh * spec.battery_c_rate,
                       initial_soc_wh=soc0_wh, round_trip_efficiency=spec.battery_efficiency)
    return _assemble(spec, generation=generation, consumption=consumption,
                     annual_kwh=annual_kwh, time_shift_s=shifts_s, pv_kwp=kwp,
                     roof_tilt_deg=np.where(has_pv, angles[:, 0], 0.0),
                     roof_azimuth_deg=np.where(has_pv, angles[:, 1], 0.0), battery=bank)


def interval_starts(spec: ProfileSpec) -> np.ndarray:
    start = np.datetime64(spec.day.isoformat(), "s")
    return start + np.arange(spec.intervals) * np.timedelta64(spec.interval_s, "s")


def _assemble(spec: ProfileSpec, *, battery: BatteryBank, **arrays: np.ndarray) -> Profiles:
    net = apply_batteries(arrays["generation"], arrays["consumption"], battery, spec.interval_s)
    for array in (*arrays.values(), battery.capacity_wh, battery.power_w,
                  battery.initial_soc_wh,
                  *(getattr(net, f.name) for f in dataclasses.fields(net))):
        array.flags.writeable = False
    starts = interval_starts(spec)
    starts.flags.writeable = False
    return Profiles(spec=spec, interval_start=starts, generation_wh=arrays["generation"],
                    consumption_wh=arrays["consumption"], annual_kwh=arrays["annual_kwh"],
                    time_shift_s=arrays["time_shift_s"], pv_kwp=arrays["pv_kwp"],
                    roof_tilt_deg=arrays["roof_tilt_deg"],
                    roof_azimuth_deg=arrays["roof_azimuth_deg"], battery=battery, net=net)


_STORED = ("generation_wh", "consumption_wh", "annual_kwh", "time_shift_s", "pv_kwp",
           "roof_tilt_deg", "roof_azimuth_deg")


def _to_arrays(profiles: Profiles) -> dict[str, np.ndarray]:
    arrays = {name: getattr(profiles, name) for name in _STORED}
    arrays["battery_capacity_wh"] = profiles.battery.capacity_wh
    arrays["battery_power_w"] = profiles.battery.power_w
    arrays["battery_initial_soc_wh"] = profiles.battery.initial_soc_wh
    return arrays


def _from_arrays(spec: ProfileSpec, stored: dict[str, np.ndarray]) -> Profiles:
    bank = BatteryBank(capacity_wh=stored["battery_capacity_wh"],
                       power_w=stored["battery_power_w"],
                       initial_soc_wh=stored["battery_initial_soc_wh"],
                       round_trip_efficiency=spec.battery_efficiency)
    return _assemble(spec, battery=bank, generation=stored["generation_wh"],
                     consumption=stored["consumption_wh"],
                     **{name: stored[name] for name in _STORED[2:]})


def _fits(spec: ProfileSpec, stored: dict[str, np.ndarray]) -> bool:
    """A cache entry is only used if it has every array in the expected shape."""
    matrix, vector = (spec.houses, spec.intervals), (spec.houses,)
    names = {*_STORED, "battery_capacity_wh", "battery_power_w", "battery_initial_soc_wh"}
    if not names <= stored.keys():
        return False
    per_interval = {"generation_wh", "consumption_wh"}
    return all(stored[name].shape == (matrix if name in per_interval else vector)
               for name in names)


def _count(share: float, houses: int) -> int:
    return min(houses, math.floor(share * houses + 0.5))


def _first_of(order: np.ndarray, count: int) -> np.ndarray:
    mask = np.zeros(order.size, dtype=bool)
    mask[order[:count]] = True
    return mask
