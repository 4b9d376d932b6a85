"""Checks shared by every configuration file: node config, scenarios and sweeps.

One way to say what is wrong with a field (:class:`Problem`, rendered as it would be written in
the TOML file: ``node.toml: [constraints] reserve_wh = -5: must be at least 0``), one field
checker (:class:`Checker`: numbers, integers, shares, text, choices; it collects every problem
of a table so a user sees all mistakes at once), one unknown-key check with a "did you mean"
(:func:`unknown_keys`) and one TOML reader (:func:`read_toml`).  The node config raises
``ConfigError`` (:class:`Checker` default); the simulator passes its ``ScenarioError``.

Booleans are never accepted where numbers are expected (``True`` is an ``int`` in Python, not
in a TOML file).
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from p2pnode.errors import ConfigError, FileLimitError
from p2pnode.files import CONFIG_MAX_BYTES, read_bounded

__all__ = ["Checker", "MISSING", "Problem", "TomlFileError", "config_error", "did_you_mean",
           "read_toml", "toml_repr", "unknown_keys"]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: object = _Missing()
"""Sentinel ``Problem.value`` for a key that is absent (no value is shown)."""


def toml_repr(value: object) -> str:
    """Render a value the way it would be written in a TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Path):
        return toml_repr(str(value))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_repr(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_repr(v)}" for k, v in value.items()) + "}"
    return repr(value)


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
        if self.value is MISSING or self.value is None:
            return f"{prefix}{where}{self.key}: {self.reason}"
        return f"{prefix}{where}{self.key} = {toml_repr(self.value)}: {self.reason}"


def config_error(problems: Iterable[Problem]) -> ConfigError:
    """The node config's error: every problem, one per line."""
    return ConfigError("\n".join(p.render() for p in problems))


class Checker:
    """Collects :class:`Problem` s for one table; ``done()`` raises them all at once with
    ``error(problems)`` (``ConfigError`` unless given)."""

    def __init__(self, section: str,
                 error: Callable[[list[Problem]], Exception] = config_error):
        self.section = section
        self.error = error
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
        if isinstance(value, float) and not math.isfinite(value):   # ints are (even 10**400)
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

    def known(self, table: dict, allowed: Iterable[str]) -> bool:
        """Every key of ``table`` is one of ``allowed`` (see :func:`unknown_keys`)."""
        found = unknown_keys(table, allowed, self.section)
        self.problems.extend(found)
        return not found

    def done(self) -> None:
        """Raise every problem found, if any."""
        if self.problems:
            raise self.error(self.problems)

    def _within(self, key: str, value: float, low: float | None, high: float | None) -> bool:
        if low is not None and high is not None and not low <= value <= high:
            return self.fail(key, value, f"must be between {low} and {high}")
        if low is not None and value < low:
            return self.fail(key, value, f"must be at least {low}")
        if high is not None and value > high:
            return self.fail(key, value, f"must be at most {high}")
        return True


def did_you_mean(key: str, allowed: Iterable[str]) -> str:
    """``did you mean "feeder"?``, or the allowed keys when none is close."""
    allowed = tuple(allowed)
    close = difflib.get_close_matches(key, allowed, n=1)
    return f'did you mean "{close[0]}"?' if close else "allowed: " + ", ".join(allowed)


def unknown_keys(table: dict, allowed: Iterable[str], section: str,
                 what: str = "unknown key") -> list[Problem]:
    """A problem for each key of ``table`` not in ``allowed``, with a "did you mean"."""
    allowed = tuple(allowed)
    return [Problem(section, key, value, f"{what}; {did_you_mean(key, allowed)}")
            for key, value in table.items() if key not in allowed]


class TomlFileError(ConfigError):
    """A configuration file cannot be read or is not TOML; ``problem`` says which."""

    def __init__(self, path: Path, problem: Problem):
        self.path, self.problem = path, problem
        super().__init__(problem.render(str(path)))


def read_toml(path: str | Path) -> dict:
    """The parsed TOML document at ``path``; :class:`TomlFileError` if unreadable or invalid.

    Read bounded (:func:`p2pnode.files.read_bounded`: a regular file of at most
    :data:`~p2pnode.files.CONFIG_MAX_BYTES`, so ``/dev/zero`` or a huge file is refused)."""
    path = Path(path)
    try:
        return tomllib.loads(read_bounded(path, CONFIG_MAX_BYTES, "file").decode("utf-8"))
    except FileLimitError as exc:
        raise TomlFileError(path, Problem("", "file", MISSING, f"cannot be read ({exc})")) \
            from exc
    except (OSError, UnicodeDecodeError) as exc:
        reason = f"cannot be read ({getattr(exc, 'strerror', None) or exc})"
        raise TomlFileError(path, Problem("", "file", MISSING, reason)) from exc
    except RecursionError:
        raise TomlFileError(path, Problem("", "file", MISSING,
                                          "is not valid TOML: nested too deeply")) from None
    except (tomllib.TOMLDecodeError, ValueError) as exc:   # ValueError: a 5000-digit integer
        raise TomlFileError(path, Problem("", "file", MISSING, f"is not valid TOML: {exc}")) \
            from exc
