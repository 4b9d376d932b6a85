"""Settings changed at run time (FR-14) kept across restarts: one small JSON file.

``PUT /api/v1/settings`` saves the new constraints here before the node uses them; ``p2pnode
run`` loads them at start-up, where they take the place of the configuration file's
``[constraints]`` (the file says what the owner last chose through the API).  The file lives
beside the ledger, ``<ledger stem>.settings.json`` (``node.db`` -> ``node.settings.json``),
and is written atomically (a temporary file, fsync, rename), so a crash leaves the old or the
new settings, never half of them::

    {"version": 1, "constraints": {"min_sell_price_per_kwh": 0.1, "max_buy_price_per_kwh": 0.3,
                                   "reserve_wh": 0, "max_trade_wh": 5000, "opt_out": "none"}}

A file edited by hand into something else is refused with a :class:`~p2pnode.errors.ConfigError`
naming the file and the field (the node does not start on settings it cannot read): fix the
value, or delete the file to go back to the configuration file's ``[constraints]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from pathlib import Path

from p2pnode.config import Constraints
from p2pnode.errors import ConfigError

__all__ = ["FORMAT_VERSION", "MAX_SETTINGS_BYTES", "SettingsStore", "settings_path"]

FORMAT_VERSION = 1
MAX_SETTINGS_BYTES = 64 * 1024


def settings_path(ledger: Path) -> Path:
    """Where a node with the ledger ``ledger`` keeps its settings."""
    ledger = Path(ledger)
    return ledger.with_name(ledger.stem + ".settings.json")


class SettingsStore:
    """Load and save the run-time constraints of one node (see the module doc)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> Constraints | None:
        """The saved constraints, or None when nothing was saved; ConfigError when unreadable."""
        try:
            size = self.path.stat().st_size
            if size > MAX_SETTINGS_BYTES:
                raise self._error(f"{size} bytes (at most {MAX_SETTINGS_BYTES})")
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error(f"cannot read ({exc.strerror})") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self._error(f"not valid JSON ({exc})") from None
        if not isinstance(data, dict) or set(data) != {"version", "constraints"}:
            raise self._error('must be an object with "version" and "constraints"')
        if data["version"] != FORMAT_VERSION:
            raise self._error(f'"version" = {data["version"]!r}: this node reads '
                              f"version {FORMAT_VERSION}")
        return self._constraints(data["constraints"])

    def _constraints(self, table) -> Constraints:
        names = [f.name for f in dataclasses.fields(Constraints)]
        if not isinstance(table, dict):
            raise self._error('"constraints" must be an object')
        for key in table:
            if key not in names:
                raise self._error(f"[constraints] {key}: unknown field; fields: {', '.join(names)}")
        try:
            return Constraints(**table)
        except (ConfigError, TypeError, ValueError) as exc:
            raise self._error(str(exc)) from None

    def save(self, constraints: Constraints) -> None:
        """Write ``constraints`` atomically and durably; OSError when the disk refuses."""
        data = {"version": FORMAT_VERSION, "constraints": dataclasses.asdict(constraints)}
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)                 # the rename survives a power loss too
        finally:
            os.close(directory)

    def _error(self, reason: str) -> ConfigError:
        return ConfigError(f"settings file {self.path}: {reason}; fix it or delete it to use "
                           "the configuration file's [constraints]")

