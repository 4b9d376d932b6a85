"""Scenario documents: a scenario as the table tree of its TOML file, edited by dotted key.

A sweep builds each point's scenario by setting dotted keys (``weights.trade_surplus``,
``time.acceleration``, ``meters``) in the base scenario's document and validating the result
with :func:`simulator.scenario.scenario_from_dict`, so a point is exactly what a scenario file
with those values would give; :func:`scenario_toml` writes a document back as such a file.
"""

from __future__ import annotations

import copy

from simulator.errors import toml_repr
from simulator.scenario import Scenario, scenario_from_dict

TIME_KEYS = ("start_date", "days", "interval_s", "acceleration")
"""Scenario fields that a scenario file keeps under ``[time]``."""
RESERVED_PATHS = {"name": "points are named after the base scenario and their id",
                  "seed": "use `repeats` to run each parameter set with several seeds",
                  "processes": "use `processes_per_point`"}
"""Scenario keys a sweep sets itself, with what to use instead."""


def scenario_to_raw(scenario: Scenario) -> dict:
    """The scenario as the document a scenario file holds (``[time]`` table, frames as
    ``[tariffs.frames.<name>]``, no ``None`` values): ``scenario_from_dict`` of it gives back an
    equal scenario."""
    flat = scenario.as_dict()
    flat["start_date"] = scenario.start_date
    raw = {key: value for key, value in flat.items()
           if key not in TIME_KEYS and not isinstance(value, dict)}
    raw["time"] = {key: flat[key] for key in TIME_KEYS}
    raw.update({key: value for key, value in flat.items() if isinstance(value, dict)})
    return _drop_none(raw)


def _drop_none(table: dict) -> dict:
    return {key: _drop_none(value) if isinstance(value, dict) else value
            for key, value in table.items() if value is not None}


def variable_paths() -> dict[str, str]:
    """Every dotted scenario key a sweep may set -> its TOML table (``""`` at the top)."""
    flat = Scenario.default().as_dict()
    paths = {}
    for key, value in flat.items():
        if isinstance(value, dict):
            paths.update({f"{key}.{field}": key for field, v in value.items()
                          if not isinstance(v, (dict, list))})
        elif key in TIME_KEYS:
            paths[f"time.{key}"] = "time"
        elif key not in RESERVED_PATHS:
            paths[key] = ""
    return paths


def set_path(raw: dict, path: str, value) -> None:
    """Set dotted ``path`` in the scenario document ``raw`` (tables created as needed)."""
    *tables, key = path.split(".")
    for name in tables:
        raw = raw.setdefault(name, {})
    raw[key] = value


def apply(base: dict, values: dict, *, source: str = "") -> Scenario:
    """The scenario ``base`` with each dotted path of ``values`` set; ScenarioError if invalid."""
    raw = copy.deepcopy(base)
    for path, value in values.items():
        set_path(raw, path, value)
    return scenario_from_dict(raw, source)


def scenario_toml(raw: dict, header: str = "") -> str:
    """A scenario document (see :func:`simulator.sweep_spec.scenario_to_raw`) as TOML text:
    top-level keys first, then each table, nested tables as ``[a.b]``."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"{key} = {toml_repr(value)}" for key, value in raw.items()
              if not isinstance(value, dict)]
    for key, value in raw.items():
        if isinstance(value, dict):
            _table(lines, key, value)
    return "\n".join(lines) + "\n"


def _table(lines: list[str], name: str, table: dict) -> None:
    values = [f"{_key(k)} = {toml_repr(v)}" for k, v in table.items() if not isinstance(v, dict)]
    if values or not table:
        lines += ["", f"[{name}]", *values]
    for key, value in table.items():
        if isinstance(value, dict):
            _table(lines, f"{name}.{_key(key)}", value)


def _key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else toml_repr(key)
