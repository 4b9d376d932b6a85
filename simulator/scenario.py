"""Scenario files: one TOML file describes a whole simulated run.

Layout (every key is optional; an absent key takes the :meth:`Scenario.default` value, an unknown
key is an error)::

    name = "quickstart"          seed = 42          meters = 57
    feeder = "kerber_dorfnetz"   processes = 1
    [time]        start_date = 2023-06-30, days = 1, interval_s = 900, acceleration = 1000.0
    [households]  pv_share, battery_share, load_profile ("h0_dyn" | "h0"), weather,
                  overselling_share, overselling_factor, unreliable_share, unreliable_delivery
    [weights]     surplus_availability, trade_surplus, transfer_efficiency,
                  transaction_duration, transaction_quality, market_participation
    [selection]   strategy = "ga" | "exact" | "greedy"
    [tariffs]     retail_per_kwh, feed_in_per_kwh, currency, export_limit_kw
    [tariffs.frames.<name>]  start_hour, end_hour, multiplier   (replaces the default frames)
    [faults]      loss, delay_ms, duplication, churn_share, malicious_share, malicious_kinds,
                  lying_share, meter_keys, clock_skew_share, clock_skew_s
    [market]      mode = "real_time" | "day_ahead" | "ex_post", balancing

Every problem in a file is reported at once, each naming the file, table and key, e.g.
``quickstart.toml: [faults] loss = 1.5: must be between 0 and 1``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from optimizer.selection import SelectionConfigError
from p2pnode.checks import TomlFileError, read_toml, unknown_keys
from simulator.checks import Checker
from simulator.errors import MISSING, Problem, ScenarioError
from simulator.profiles import DAY_S, MAX_DAYS, MAX_HOUSES, MIN_INTERVAL_S, ProfileSpec
from simulator.settings import Faults, Households, Market, Selection, Weights
from simulator.tariffs import Tariffs, TimeFrame

FEEDERS = ("kerber_dorfnetz", "kerber_landnetz_freileitung_1", "kerber_landnetz_freileitung_2",
           "kerber_landnetz_kabel_1", "kerber_landnetz_kabel_2", "kerber_vorstadtnetz_kabel_1",
           "kerber_vorstadtnetz_kabel_2", "cigre_lv", "none")
"""Low-voltage feeders of ``pandapower.networks`` by name (without ``create_``); ``none``: no
load flow, one zone."""
MAX_PROCESSES = 256
MAX_ACCELERATION = 1e6

_SECTIONS = {"households": Households, "weights": Weights, "selection": Selection,
             "tariffs": Tariffs, "faults": Faults, "market": Market}
_TOP_KEYS = ("name", "seed", "meters", "feeder", "processes", "transport")
TRANSPORTS = ("http", "libp2p")
_TIME_KEYS = ("start_date", "days", "interval_s", "acceleration")


@dataclass(frozen=True)
class Scenario:
    """A validated scenario.  ``acceleration`` is simulated seconds per wall-clock second."""

    name: str = "quickstart"
    seed: int = 42
    meters: int = 57
    feeder: str = "kerber_dorfnetz"
    processes: int = 2
    transport: str = "http"        # the nodes' peer links (p2pnode [network] transport)
    start_date: date = date(2023, 6, 30)
    days: int = 1
    interval_s: int = 900
    acceleration: float = 1000.0
    households: Households = field(default_factory=Households)
    weights: Weights = field(default_factory=Weights)
    selection: Selection = field(default_factory=Selection)
    tariffs: Tariffs = field(default_factory=Tariffs)
    faults: Faults = field(default_factory=Faults)
    market: Market = field(default_factory=Market)
    source: str = field(default="", compare=False)

    def __post_init__(self):
        top, time = Checker(""), Checker("time")
        top.text("name", self.name)
        top.integer("seed", self.seed, 0)
        meters_ok = top.integer("meters", self.meters, 1, MAX_HOUSES)
        top.choice("feeder", self.feeder, FEEDERS)
        top.choice("transport", self.transport, TRANSPORTS)
        if top.integer("processes", self.processes, 1, MAX_PROCESSES) and meters_ok \
                and self.processes > self.meters:
            top.fail("processes", self.processes, f"must not exceed meters ({self.meters})")
        if not isinstance(self.start_date, date) or isinstance(self.start_date, datetime):
            time.fail("start_date", self.start_date, "must be a date like 2023-06-30")
        time.integer("days", self.days, 1, MAX_DAYS)
        if time.integer("interval_s", self.interval_s, MIN_INTERVAL_S, DAY_S) \
                and DAY_S % self.interval_s:
            time.fail("interval_s", self.interval_s, "must divide a day (86400 s) evenly")
        time.number("acceleration", self.acceleration, 0, MAX_ACCELERATION, low_open=True)
        for name, kind in _SECTIONS.items():
            if not isinstance(getattr(self, name), kind):
                top.fail(name, MISSING, f"must be a {kind.__name__}")
        problems = top.problems + time.problems
        if problems:
            raise ScenarioError(problems, self.source)

    @classmethod
    def default(cls) -> Scenario:
        """The quickstart: 57 meters (the Kerber village feeder's houses), one summer day, 15-minute intervals, no faults."""
        return cls()

    @property
    def intervals(self) -> int:
        return self.days * DAY_S // self.interval_s

    def profile_spec(self) -> ProfileSpec:
        """What :func:`simulator.build_profiles` needs to make this scenario's data."""
        return ProfileSpec(houses=self.meters, day=self.start_date, days=self.days,
                           interval_s=self.interval_s, pv_share=self.households.pv_share,
                           battery_share=self.households.battery_share, seed=self.seed,
                           load_profile=self.households.load_profile,
                           weather=self.households.weather)

    def as_dict(self) -> dict:
        """JSON-friendly nested dict (dates as ISO strings, frames as tables), for run records."""
        out = dataclasses.asdict(self)
        out.pop("source")
        out["start_date"] = self.start_date.isoformat()
        frames = out["tariffs"].pop("frames")
        out["tariffs"]["frames"] = {f.pop("name"): f for f in frames}
        out["faults"]["malicious_kinds"] = list(self.faults.malicious_kinds)
        return out


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; :class:`ScenarioError` lists every problem in it."""
    source = str(path)
    try:
        raw = read_toml(path)     # bounded: a regular file of at most CONFIG_MAX_BYTES
    except TomlFileError as exc:
        raise ScenarioError([exc.problem], source) from exc
    return scenario_from_dict(raw, source)


def scenario_from_dict(raw: dict, source: str = "") -> Scenario:
    """Validate a parsed TOML document (see the module docstring for the layout)."""
    problems: list[Problem] = []
    allowed = (*_TOP_KEYS, "time", *_SECTIONS)
    _reject_unknown(raw, allowed, "", problems)
    values = {key: raw[key] for key in _TOP_KEYS if key in raw}
    time = _table(raw, "time", "", problems)
    _reject_unknown(time, _TIME_KEYS, "time", problems)
    values.update({key: time[key] for key in _TIME_KEYS if key in time})
    if isinstance(values.get("start_date"), str):
        values["start_date"] = _parse_date(values["start_date"])
    for name, kind in _SECTIONS.items():
        table = _table(raw, name, "", problems)
        section = _build_section(kind, name, table, problems)
        if section is not None:
            values[name] = section
    try:
        scenario = Scenario(**values, source=source)
    except ScenarioError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ScenarioError(problems, source)
    return scenario


def _build_section(kind: type, name: str, table: dict, problems: list[Problem]):
    """Build one section's dataclass from its table, or record why not and return ``None``."""
    keys = [f.name for f in dataclasses.fields(kind)]
    _reject_unknown(table, keys, name, problems)
    values = {key: table[key] for key in keys if key in table}
    if isinstance(values.get("malicious_kinds"), list):
        values["malicious_kinds"] = tuple(values["malicious_kinds"])
    if kind is Tariffs and "frames" in values:
        values["frames"] = _build_frames(values["frames"], problems)
        if values["frames"] is None:
            return None
    try:
        return kind(**values)
    except ScenarioError as exc:
        problems.extend(exc.problems)
        return None
    except SelectionConfigError as exc:      # the weights: optimizer.selection.Weights
        problems.extend(Problem(name, key, value, reason) for key, value, reason in exc.problems)
        return None


def _build_frames(frames: object, problems: list[Problem]) -> tuple[TimeFrame, ...] | None:
    if not isinstance(frames, dict) or not frames:
        problems.append(Problem("tariffs", "frames", frames,
                                "must be tables like [tariffs.frames.peak]"))
        return None
    built, keys = [], ("start_hour", "end_hour", "multiplier")
    for name, table in frames.items():
        section = f"tariffs.frames.{name}"
        if not isinstance(table, dict):
            problems.append(Problem("tariffs.frames", name, table, "must be a table"))
            continue
        _reject_unknown(table, keys, section, problems)
        missing = [key for key in keys if key not in table]
        for key in missing:
            problems.append(Problem(section, key, MISSING, "is required"))
        if missing:
            continue
        try:
            built.append(TimeFrame(name, **{key: table[key] for key in keys}))
        except ScenarioError as exc:
            problems.extend(exc.problems)
    return tuple(built) if len(built) == len(frames) else None


def _table(raw: dict, name: str, section: str, problems: list[Problem]) -> dict:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        problems.append(Problem(section, name, value, f"must be a table ([{name}])"))
        return {}
    return value


def _reject_unknown(table: dict, allowed, section: str, problems: list[Problem]) -> None:
    problems.extend(unknown_keys(table, allowed, section))


def _parse_date(text: str) -> date | str:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return text
