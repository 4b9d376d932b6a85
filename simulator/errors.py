"""Errors of the simulator package.

    SimulatorError
    ├── ScenarioError   a scenario (file or dataclass) has bad fields; carries every problem
    └── ProfileError    household/PV profiles cannot be built from the given spec or data
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


class SimulatorError(Exception):
    """Base of every error raised by the simulator package."""


@dataclass(frozen=True)
class Problem:
    """One bad field: where it is (TOML table and key), what it held, and why it is wrong."""

    section: str
    key: str
    value: object
    reason: str

    def render(self, source: str = "") -> str:
        """``quickstart.toml: [faults] loss = 1.5: must be between 0 and 1``."""
        where = f"[{self.section}] " if self.section else ""
        prefix = f"{source}: " if source else ""
        if self.value is _MISSING:
            return f"{prefix}{where}{self.key}: {self.reason}"
        return f"{prefix}{where}{self.key} = {toml_repr(self.value)}: {self.reason}"


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()
MISSING: object = _MISSING
"""Sentinel ``Problem.value`` for a key that is absent or unknown (no value is shown)."""


def toml_repr(value: object) -> str:
    """Render a value the way it would be written in a TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_repr(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_repr(v)}" for k, v in value.items()) + "}"
    return repr(value)


class ScenarioError(SimulatorError, ValueError):
    """A scenario is invalid; ``problems`` lists every bad field, ``source`` names the file."""

    def __init__(self, problems, source: str = ""):
        self.problems = tuple(problems)
        self.source = source
        super().__init__("\n".join(p.render(source) for p in self.problems))


class ProfileError(SimulatorError, ValueError):
    """A profile spec is invalid or the packaged data it needs cannot be read."""
