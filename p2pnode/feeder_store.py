"""The feeder node's books on disk: they survive a restart (SQLite beside the ledger).

:class:`p2pnode.feeder.FeederBook` keeps the books in memory; this store keeps a copy that a
restarted feeder node loads (:meth:`FeederStore.load`, then
:meth:`~p2pnode.feeder.FeederBook.restore`).  ``<ledger stem>.feeder.db`` (``node.db`` ->
``node.feeder.db``), SQLite in WAL mode with full sync: what is written survives a power loss.

* every report the book **accepts** is written before the member gets its answer
  (:meth:`add_report`): a member told "accepted" never has to send it again, and a restart
  loses none;
* closing an interval is one transaction (:meth:`close`): the booked interval, the hashes of
  the reports it booked (so a member's late retransmission is still recognised), the book's
  position (first open interval, loss streak, counters, members known) and the removal of the
  reports it consumed.  A crash before the commit leaves the interval open (it is closed again
  after the restart, from the same stored reports); after it, closed -- never both.

The counters are stored with every write (drops refused since the last write are lost with a
crash).  Closed intervals older than the book's history are pruned.  A file that is not such a database
(corrupt, another program's, another feeder's or interval length's) is refused with a
:class:`~p2pnode.errors.ConfigError` naming the file: move it away to start with empty books.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

from p2pnode.errors import ConfigError

__all__ = ["FORMAT", "FeederStore", "StoredBooks", "feeder_books_path"]

FORMAT = "p2p-energy feeder books 1"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (position INTEGER PRIMARY KEY AUTOINCREMENT,
                                    member BLOB NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS reports (interval_start_s INTEGER NOT NULL, member BLOB NOT NULL,
                                    raw BLOB NOT NULL, PRIMARY KEY (interval_start_s, member));
CREATE TABLE IF NOT EXISTS closed (interval_start_s INTEGER PRIMARY KEY, booked TEXT NOT NULL,
                                   answered TEXT NOT NULL);
"""


def feeder_books_path(ledger: Path) -> Path:
    ledger = Path(ledger)
    return ledger.with_name(ledger.stem + ".feeder.db")


@dataclasses.dataclass(frozen=True)
class StoredBooks:
    """What a restarted feeder node's book is rebuilt from."""

    open_from_s: int
    streak: int
    counters: dict[str, int]
    members: list[bytes]                       # in order of first report
    reports: list[bytes]                       # raw sealed reports of open intervals
    closed: list[tuple[dict, dict[str, str]]]  # (booked interval, member hex -> report hash hex)


class FeederStore:
    """The books file of one feeder node (see the module doc)."""

    def __init__(self, path: Path, feeder: str, interval_s: int, keep_closed: int):
        self.path, self.feeder, self.interval_s = Path(path), feeder, interval_s
        self.keep_closed = keep_closed
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error(f"cannot open ({exc})") from exc
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            self._check_identity()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise self._error(f"not a feeder books database ({exc})") from exc
        except ConfigError:
            self.db.close()
            raise

    def _error(self, reason: str) -> ConfigError:
        return ConfigError(f"[feeder_role] books file {self.path}: {reason}; move it away to "
                           "start with empty books")

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _check_identity(self) -> None:
        wanted = {"format": FORMAT, "feeder": self.feeder, "interval_s": str(self.interval_s)}
        if self._meta("format") is None:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", wanted.items())
            return
        for key, value in wanted.items():
            if self._meta(key) != value:
                raise self._error(f"its {key} is {self._meta(key)!r}, this node's is {value!r}")

    def close_file(self) -> None:
        self.db.close()

    # -- writing -----------------------------------------------------------------------------
    def add_report(self, interval_start_s: int, member: bytes, raw: bytes,
                   counters: dict[str, int]) -> None:
        """Keep one accepted report, and the counters (durable when this returns)."""
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO members (member) VALUES (?)", (member,))
            self.db.execute("INSERT OR IGNORE INTO reports VALUES (?, ?, ?)",
                            (interval_start_s, member, raw))
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('counters', ?)",
                            (json.dumps(dict(counters), sort_keys=True),))

    def close(self, booked, answered: dict[bytes, bytes], open_from_s: int, streak: int,
              counters: dict[str, int]) -> None:
        """Record one closed interval and the book's position, in one transaction."""
        start = booked.interval_start_s
        state = {"open_from_s": str(open_from_s), "streak": str(streak),
                 "counters": json.dumps(dict(counters), sort_keys=True)}
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO closed VALUES (?, ?, ?)", (
                start, json.dumps(dataclasses.asdict(booked), sort_keys=True),
                json.dumps({m.hex(): h.hex() for m, h in answered.items()}, sort_keys=True)))
            self.db.execute("DELETE FROM reports WHERE interval_start_s < ?", (open_from_s,))
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", state.items())
            self.db.execute("DELETE FROM closed WHERE interval_start_s NOT IN (SELECT "
                            "interval_start_s FROM closed ORDER BY interval_start_s DESC "
                            "LIMIT ?)", (self.keep_closed,))

    # -- reading -----------------------------------------------------------------------------
    def load(self) -> StoredBooks | None:
        """The stored books, or None for a new file (nothing closed or reported yet)."""
        try:
            open_from = self._meta("open_from_s")
            reports = [r[0] for r in self.db.execute(
                "SELECT raw FROM reports ORDER BY interval_start_s, member")]
            members = [r[0] for r in self.db.execute("SELECT member FROM members ORDER BY position")]
            closed = list(self.db.execute(
                "SELECT interval_start_s, booked, answered FROM closed ORDER BY interval_start_s"))
        except sqlite3.DatabaseError as exc:
            raise self._error(f"cannot be read ({exc})") from exc
        if open_from is None and not reports:
            return None
        try:
            counters = json.loads(self._meta("counters") or "{}")
            books = [(json.loads(booked), json.loads(answered)) for _, booked, answered in closed]
            stored = StoredBooks(int(open_from or 0), int(self._meta("streak") or 0),
                                 {str(k): int(v) for k, v in counters.items()}, members,
                                 reports, books)
        except (ValueError, TypeError, AttributeError) as exc:
            raise self._error(f"a stored value is damaged ({exc})") from None
        return stored
