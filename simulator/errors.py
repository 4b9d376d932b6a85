"""Errors of the simulator package.

    SimulatorError
    ├── ScenarioError   a scenario (file or dataclass) has bad fields; carries every problem
    └── ProfileError    household/PV profiles cannot be built from the given spec or data

A problem is a :class:`p2pnode.checks.Problem`, the one shape shared with the node config.
"""

from __future__ import annotations

from p2pnode.checks import MISSING, Problem, toml_repr

__all__ = ["MISSING", "Problem", "ProfileError", "ScenarioError", "SimulatorError", "toml_repr"]


class SimulatorError(Exception):
    """Base of every error raised by the simulator package."""


class ScenarioError(SimulatorError, ValueError):
    """A scenario is invalid; ``problems`` lists every bad field, ``source`` names the file."""

    def __init__(self, problems, source: str = ""):
        self.problems = tuple(problems)
        self.source = source
        super().__init__("\n".join(p.render(source) for p in self.problems))


class ProfileError(SimulatorError, ValueError):
    """A profile spec is invalid or the packaged data it needs cannot be read."""
