"""Field checks shared by the simulator's configuration dataclasses.

A :class:`Checker` collects every problem of one TOML table (one dataclass) instead of stopping at
the first, so a user fixing a scenario file sees all mistakes at once.  Booleans are never
accepted where numbers are expected (``True`` is an ``int`` in Python, not in a scenario).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from simulator.errors import Problem, ScenarioError


class Checker:
    """Collects :class:`Problem` s for one section; ``done()`` raises them all at once."""

    def __init__(self, section: str):
        self.section = section
        self.problems: list[Problem] = []

    def fail(self, key: str, value: object, reason: str) -> bool:
        self.problems.append(Problem(self.section, key, value, reason))
        return False

    def integer(self, key: str, value: object, low: int | None = None,
                high: int | None = None) -> bool:
        """An ``int`` (not a bool) within ``[low, high]``."""
        if isinstance(value, bool) or not isinstance(value, int):
            return self.fail(key, value, "must be an integer")
        return self._within(key, value, low, high)

    def number(self, key: str, value: object, low: float | None = None,
               high: float | None = None, *, low_open: bool = False,
               high_open: bool = False) -> bool:
        """A finite int or float (not a bool) within the bounds (open ends as flagged)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return self.fail(key, value, "must be a number")
        if not math.isfinite(value):
            return self.fail(key, value, "must be a finite number")
        if low_open and low is not None and value <= low:
            return self.fail(key, value, f"must be greater than {low}")
        if high_open and high is not None and value >= high:
            return self.fail(key, value, f"must be less than {high}")
        return self._within(key, value, low, high)

    def share(self, key: str, value: object) -> bool:
        """A fraction in ``[0, 1]``."""
        return self.number(key, value, 0, 1)

    def text(self, key: str, value: object) -> bool:
        if not isinstance(value, str) or not value.strip():
            return self.fail(key, value, "must be a non-empty string")
        return True

    def choice(self, key: str, value: object, options: Iterable[str]) -> bool:
        options = tuple(options)
        if value not in options:
            listed = ", ".join(f'"{o}"' for o in options)
            return self.fail(key, value, f"must be one of {listed}")
        return True

    def done(self) -> None:
        """Raise :class:`ScenarioError` listing every problem found, if any."""
        if self.problems:
            raise ScenarioError(self.problems)

    def _within(self, key: str, value: float, low: float | None, high: float | None) -> bool:
        if low is not None and high is not None and not low <= value <= high:
            return self.fail(key, value, f"must be between {low} and {high}")
        if low is not None and value < low:
            return self.fail(key, value, f"must be at least {low}")
        if high is not None and value > high:
            return self.fail(key, value, f"must be at most {high}")
        return True
