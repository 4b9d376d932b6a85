"""Field checks of the simulator's configuration dataclasses: the shared
:class:`p2pnode.checks.Checker`, raising :class:`~simulator.errors.ScenarioError`.

A :class:`Checker` collects every problem of one TOML table (one dataclass) instead of stopping at
the first, so a user fixing a scenario file sees all mistakes at once.
"""

from __future__ import annotations

from p2pnode import checks
from simulator.errors import ScenarioError

__all__ = ["Checker"]


class Checker(checks.Checker):
    """:class:`p2pnode.checks.Checker` whose ``done()`` raises :class:`ScenarioError`."""

    def __init__(self, section: str):
        super().__init__(section, ScenarioError)
