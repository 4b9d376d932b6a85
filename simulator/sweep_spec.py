"""Sweep files: which scenario parameters a sweep varies, how, and what it optimises.

A sweep file is TOML; every key but ``base`` and ``[parameters]`` is optional, unknown keys are
errors::

    base = "quickstart.toml"      # the scenario every point starts from (relative to this file)
    method = "grid"               # "grid" | "random" | "nsga2"
    seed = 0                      # sampling seed of random and nsga2
    repeats = 1                   # runs per parameter set, scenario seeds base, base+1, ...
    samples = 8                   # random only: parameter sets drawn
    population = 8                # nsga2 only: parameter sets per generation (even, >= 4)
    generations = 4               # nsga2 only: generations after the first population
    workers = 2                   # points run at once (default: every core)
    processes_per_point = 1       # OS processes of each point's swarm
    mechanisms = ["double_auction"]   # literature markets every point also clears

    [fixed]                       # dotted scenario keys set on every point
    meters = 24
    [parameters]                  # dotted scenario keys the sweep varies
    "weights.trade_surplus" = [0.0, 1.0, 3.0]             # a list: these values (any method)
    "weights.market_participation" = {low = 0.0, high = 2.0}   # a range: random and nsga2
    [objectives]                  # summary metrics (see SUMMARY_METRICS) and their sense
    local_match_ratio = "max"
    messages_per_trade = "min"
    [cluster]                     # run the points on a cluster instead of local processes
    engine = "dask"               # "dask" (address = "tcp://host:8786") | "ray"
    address = "tcp://10.0.0.5:8786"
    timeout_s = 30                # dask: how long to try to reach the scheduler

A range with two integer bounds draws integers.  Every value of every parameter is checked on
the base scenario when the file is loaded, so a bad value fails with the scenario's own reason
before anything runs.  Problems are collected, each naming the file, table and key:
``sweep.toml: [parameters] weights.trade_surplus = [-1]: [weights] trade_surplus = -1: must be
at least 0``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from p2pnode.checks import TomlFileError, did_you_mean, read_toml, unknown_keys
from simulator.errors import MISSING, Problem, ScenarioError, SimulatorError
from simulator.scenario import Scenario, load_scenario, scenario_from_dict
from simulator.sweep_scenario import RESERVED_PATHS, apply, scenario_to_raw, variable_paths

METHODS = ("grid", "random", "nsga2")
ENGINES = ("dask", "ray")
SENSES = ("max", "min")
MAX_POINTS = 100_000
MAX_REPEATS = 1000
SUMMARY_METRICS = (
    "generation_kwh", "consumption_kwh", "local_match_kwh", "optimum_match_kwh",
    "local_match_ratio", "welfare", "optimum_welfare", "welfare_ratio", "self_sufficiency",
    "self_consumption", "grid_import_kwh", "grid_export_kwh", "wasted_surplus_kwh",
    "average_p2p_price_per_kwh", "average_import_price_per_kwh", "total_savings",
    "mean_savings", "savings_gini", "households_worse_off", "trades", "agreed_kwh",
    "delivered_kwh", "transaction_quality", "messages_per_trade", "peer_messages",
    "peer_messages_per_trade", "decision_ms_p50", "decision_ms_p95", "denied",
    "double_settlements", "wall_s")
"""Numeric keys of a run's ``summary.json`` (:func:`simulator.report.summarize`) that a sweep
can optimise; every one is a column of the results table."""
_TOP_KEYS = ("base", "method", "seed", "repeats", "samples", "population", "generations",
             "workers", "processes_per_point", "mechanisms", "fixed", "parameters",
             "objectives", "cluster")
_ONLY_FOR = {"samples": "random", "population": "nsga2", "generations": "nsga2"}


class SweepError(SimulatorError, ValueError):
    """A sweep file (or its output directory) is unusable; ``problems`` lists every reason."""

    def __init__(self, problems, source: str = ""):
        self.problems = tuple(problems)
        self.source = source
        super().__init__("\n".join(p.render(source) for p in self.problems))


@dataclass(frozen=True)
class Parameter:
    """One varied scenario key: either listed ``values`` or a range ``[low, high]``."""

    path: str
    values: tuple = ()
    low: float | int | None = None
    high: float | int | None = None

    @property
    def is_range(self) -> bool:
        return self.low is not None

    @property
    def integer(self) -> bool:
        """A range whose bounds are both integers draws integers."""
        return self.is_range and all(isinstance(v, int) for v in (self.low, self.high))


@dataclass(frozen=True)
class Objective:
    metric: str
    sense: str   # "max" | "min"

    @property
    def sign(self) -> float:
        """+1 when larger is better; multiply a value by it to maximise everything."""
        return 1.0 if self.sense == "max" else -1.0


@dataclass(frozen=True)
class Cluster:
    engine: str   # "dask" | "ray"
    address: str
    timeout_s: float = 30.0   # to connect to a Dask scheduler


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep; ``base`` is the scenario document (``[fixed]`` applied) every point
    starts from, in the TOML layout of a scenario file (see :func:`scenario_to_raw`)."""

    base: dict
    parameters: tuple[Parameter, ...]
    objectives: tuple[Objective, ...]
    method: str = "grid"
    seed: int = 0
    repeats: int = 1
    samples: int = 8
    population: int = 8
    generations: int = 4
    workers: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    processes_per_point: int = 1
    mechanisms: tuple[str, ...] = ("double_auction",)
    cluster: Cluster | None = None
    source: str = dataclasses.field(default="", compare=False)

    @property
    def base_scenario(self) -> Scenario:
        return scenario_from_dict(copy.deepcopy(self.base), self.source)

    def identity(self) -> dict:
        """What decides the points and their results (not where or how fast they run).  The
        objectives count only for nsga2, where they steer the search: a grid or random sweep
        rerun with other objectives reuses every finished point."""
        body = {"base": self.base, "method": self.method, "repeats": self.repeats,
                "processes_per_point": self.processes_per_point,
                "mechanisms": list(self.mechanisms),
                "parameters": [dataclasses.asdict(p) for p in self.parameters]}
        if self.method != "grid":
            body["seed"] = self.seed
        if self.method == "random":
            body["samples"] = self.samples
        if self.method == "nsga2":
            body.update(population=self.population, generations=self.generations,
                        objectives=[dataclasses.asdict(o) for o in self.objectives])
        return json.loads(canonical_json(body))

    def spec_hash(self) -> str:
        return hashlib.sha256(canonical_json(self.identity()).encode()).hexdigest()[:16]


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(value):
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {value!r}")


# -- loading -----------------------------------------------------------------------------------

def load_sweep(path: str | Path, *, workers: int | None = None) -> SweepSpec:
    """Read and validate a sweep file and its base scenario; :class:`SweepError` lists every
    problem, :class:`ScenarioError` (the base file's own) if the base scenario is invalid."""
    source = str(path)
    try:
        raw = read_toml(path)     # bounded: a regular file of at most CONFIG_MAX_BYTES
    except TomlFileError as exc:
        raise SweepError([exc.problem], source) from exc
    return sweep_from_dict(raw, Path(path).parent, source, workers=workers)


def sweep_from_dict(raw: dict, folder: Path, source: str = "", *,
                    workers: int | None = None) -> SweepSpec:
    """Validate a parsed sweep document; ``base`` is resolved against ``folder``."""
    problems: list[Problem] = []
    _reject_unknown(raw, _TOP_KEYS, "", problems)
    base = _base(raw, folder, problems)
    method = raw.get("method", "grid")
    if method not in METHODS:
        problems.append(Problem("", "method", method, _one_of(METHODS)))
        method = None
    numbers = _numbers(raw, method, workers, problems)
    mechanisms = _mechanisms(raw.get("mechanisms", ["double_auction"]), problems)
    cluster = _cluster(raw.get("cluster"), problems)
    objectives = _objectives(raw.get("objectives", MISSING), problems)
    paths = variable_paths()
    fixed = _fixed(raw.get("fixed", {}), paths, problems)
    parameters = _parameters(raw.get("parameters", MISSING), method, paths, set(fixed), problems)
    base_raw = _with_fixed(base, fixed, problems)
    if base_raw is not None:
        _check_on_base(base_raw, parameters, problems)
    if problems or base_raw is None:
        raise SweepError(problems, source)
    spec = SweepSpec(base=base_raw, parameters=parameters, objectives=objectives,
                     method=method, mechanisms=mechanisms, cluster=cluster, source=source,
                     **numbers)
    if method == "grid" and grid_size(spec) > MAX_POINTS:
        raise SweepError([Problem("", "parameters", MISSING, f"the grid has {grid_size(spec)} "
                                  f"runs; at most {MAX_POINTS}")], source)
    return spec


def grid_size(spec: SweepSpec) -> int:
    size = spec.repeats
    for parameter in spec.parameters:
        size *= len(parameter.values)
    return size


def _base(raw: dict, folder: Path, problems: list[Problem]) -> Scenario | None:
    base = raw.get("base", MISSING)
    if base is MISSING:
        problems.append(Problem("", "base", MISSING,
                                'is required: the scenario file every point starts from'))
        return None
    if not isinstance(base, str) or not base.strip():
        problems.append(Problem("", "base", base, "must be a scenario file path"))
        return None
    path = Path(base) if Path(base).is_absolute() else folder / base
    if not path.is_file():
        problems.append(Problem("", "base", base, f"no such file ({path})"))
        return None
    return load_scenario(path)


def _numbers(raw: dict, method: str | None, workers: int | None, problems) -> dict:
    limits = {"seed": (0, 2**63 - 1), "repeats": (1, MAX_REPEATS), "samples": (1, MAX_POINTS),
              "population": (4, MAX_POINTS), "generations": (0, 10_000),
              "workers": (1, 4096), "processes_per_point": (1, 256)}
    out = {}
    for key, (low, high) in limits.items():
        if key not in raw:
            continue
        value = raw[key]
        if key in _ONLY_FOR and method and method != _ONLY_FOR[key]:
            problems.append(Problem("", key, value,
                                    f'is only used with method = "{_ONLY_FOR[key]}"'))
        elif isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problems.append(Problem("", key, value, f"must be an integer between {low} and {high}"))
        elif key == "population" and value % 2:
            problems.append(Problem("", key, value, "must be even (children come in pairs)"))
        else:
            out[key] = value
    if workers is not None:
        if not 1 <= workers <= limits["workers"][1]:
            problems.append(Problem("", "workers", workers, "must be at least 1"))
        out["workers"] = workers
    return out


def _mechanisms(value, problems) -> tuple[str, ...]:
    from simulator.mechanisms import MECHANISMS

    if not isinstance(value, list) or not value or \
            not all(isinstance(v, str) and v in MECHANISMS for v in value) or \
            len(set(value)) != len(value):
        problems.append(Problem("", "mechanisms", value, "must be a non-empty list of distinct "
                                f"names from {list(MECHANISMS)} (a run needs one baseline market)"))
        return ()
    return tuple(value)


def _cluster(value, problems) -> Cluster | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append(Problem("", "cluster", value, "must be a table ([cluster])"))
        return None
    _reject_unknown(value, ("engine", "address", "timeout_s"), "cluster", problems)
    engine, address = value.get("engine", MISSING), value.get("address", MISSING)
    timeout_s = value.get("timeout_s", 30.0)
    ok = _is_number(timeout_s) and 0 < timeout_s <= 3600
    if not ok:
        problems.append(Problem("cluster", "timeout_s", timeout_s,
                                "must be a number of seconds in (0, 3600]"))
    if engine not in ENGINES:
        ok = False
        problems.append(Problem("cluster", "engine", engine, _one_of(ENGINES)))
    if not isinstance(address, str) or not address.strip():
        ok = False
        problems.append(Problem("cluster", "address", address, 'is required: the scheduler, '
                                'e.g. "tcp://10.0.0.5:8786" (dask) or "ray://10.0.0.5:10001" '
                                '/ "auto" / "local" (ray)'))
    return Cluster(engine, address, float(timeout_s)) if ok else None


def _objectives(value, problems) -> tuple[Objective, ...]:
    if not isinstance(value, dict) or not value:
        problems.append(Problem("", "objectives", value, "is required: a table of summary "
                                'metrics and "max" or "min", e.g. local_match_ratio = "max"'))
        return ()
    out = []
    for metric, sense in value.items():
        if metric not in SUMMARY_METRICS:
            problems.append(Problem("objectives", metric, sense,
                                    "unknown metric; " + _hint(metric, SUMMARY_METRICS)))
        elif sense not in SENSES:
            problems.append(Problem("objectives", metric, sense, _one_of(SENSES)))
        else:
            out.append(Objective(metric, sense))
    return tuple(out)


def _fixed(value, paths: dict, problems) -> dict:
    if not isinstance(value, dict):
        problems.append(Problem("", "fixed", value, "must be a table ([fixed])"))
        return {}
    out = {}
    for path, item in _dotted(value).items():
        if _check_path(path, "fixed", item, paths, problems):
            out[path] = _normal(item)
    return out


def _parameters(value, method, paths: dict, fixed: set, problems) -> tuple[Parameter, ...]:
    if not isinstance(value, dict) or not value:
        problems.append(Problem("", "parameters", value, "is required: a table of dotted "
                                'scenario keys, e.g. "weights.trade_surplus" = [0.0, 1.0]'))
        return ()
    out = []
    for path, item in _dotted(value, ranges=True).items():
        if not _check_path(path, "parameters", item, paths, problems):
            continue
        if path in fixed:
            problems.append(Problem("parameters", path, item, "is also set in [fixed]"))
        elif (parameter := _parameter(path, item, method, problems)) is not None:
            out.append(parameter)
    return tuple(out)


def _parameter(path: str, item, method, problems) -> Parameter | None:
    if isinstance(item, list):
        if not item:
            problems.append(Problem("parameters", path, item, "must list at least one value"))
            return None
        if any(isinstance(v, (list, dict)) for v in item):
            problems.append(Problem("parameters", path, item, "values must be plain values"))
            return None
        values = tuple(_normal(v) for v in item)
        if len(set(map(canonical_json, values))) != len(values):
            problems.append(Problem("parameters", path, item, "must not repeat a value"))
            return None
        return Parameter(path, values=values)
    if not isinstance(item, dict):
        problems.append(Problem("parameters", path, item, "must be a list of values or a range "
                                "{low = ..., high = ...}"))
        return None
    section = f"parameters.{path}"
    _reject_unknown(item, ("low", "high"), section, problems)
    low, high = item.get("low", MISSING), item.get("high", MISSING)
    if not all(_is_number(v) for v in (low, high)) or not low < high:
        problems.append(Problem("parameters", path, item,
                                "a range needs numbers low < high"))
        return None
    if method == "grid":
        problems.append(Problem("parameters", path, item, 'a grid needs a list of values; '
                                'ranges are for method = "random" or "nsga2"'))
        return None
    return Parameter(path, low=low, high=high)


def _with_fixed(base: Scenario | None, fixed: dict, problems) -> dict | None:
    """The base scenario document with ``[fixed]`` applied, or ``None`` (problem recorded)."""
    if base is None:
        return None
    try:
        return scenario_to_raw(apply(scenario_to_raw(base), fixed))
    except ScenarioError as exc:
        problems.append(Problem("", "fixed", fixed, _reasons(exc)))
        return None


def _check_on_base(base: dict, parameters, problems) -> None:
    """Each value (each bound of a range) on the base, one at a time."""
    for parameter in parameters:
        values = (parameter.low, parameter.high) if parameter.is_range else parameter.values
        for value in values:
            try:
                apply(base, {parameter.path: value})
            except ScenarioError as exc:
                problems.append(Problem("parameters", parameter.path, value, _reasons(exc)))


def _dotted(table: dict, *, ranges: bool = False) -> dict:
    """``{"weights": {"x": 1}}`` (a TOML table written unquoted) -> ``{"weights.x": 1}``; with
    ``ranges`` a table holding ``low``/``high`` is a value, not a nesting."""
    out = {}
    for key, value in table.items():
        nested = isinstance(value, dict) and not (ranges and {"low", "high"} & set(value))
        if nested and value:
            out.update({f"{key}.{k}": v for k, v in _dotted(value, ranges=ranges).items()})
        else:
            out[key] = value
    return out


def _check_path(path: str, table: str, value, paths: dict, problems) -> bool:
    if path in RESERVED_PATHS:
        problems.append(Problem(table, path, value, f"cannot be set here: {RESERVED_PATHS[path]}"))
        return False
    if path not in paths:
        problems.append(Problem(table, path, value,
                                "not a scenario key; " + _hint(path, tuple(paths))))
        return False
    return True


def _normal(value):
    """Dates as ISO strings (what a scenario document holds), everything else as is."""
    return value.isoformat() if isinstance(value, date) else value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _reasons(exc: ScenarioError) -> str:
    return "; ".join(p.render() for p in exc.problems)


def _one_of(options) -> str:
    return "must be one of " + ", ".join(f'"{o}"' for o in options)


def _hint(key: str, allowed) -> str:
    return did_you_mean(key, allowed)


def _reject_unknown(table: dict, allowed, section: str, problems: list[Problem]) -> None:
    problems.extend(unknown_keys(table, allowed, section))
