"""Durable storage of blocks: one SQLite file in WAL mode with ``synchronous=FULL``.

A block is stored as the exact bytes that were signed and sealed; the other columns are derived
from them and are re-checked by :mod:`ledger.verify`.  ``add`` writes a group of blocks in one
transaction: after it returns they survive a crash or power loss at any instant (SQLite's WAL
commit is atomic and fsync'ed).  Adding a block that is already stored is a no-op; adding a
different block at an occupied (author, seq) stores the pair as a fork proof and keeps the first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from ledger.block import BlockBody
from ledger.errors import StoreError
from ledger.sealed import Sealed

__all__ = ["LedgerStore", "AddResult", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    author BLOB NOT NULL, seq INTEGER NOT NULL, hash BLOB NOT NULL UNIQUE,
    type INTEGER NOT NULL, link_key BLOB NOT NULL, link_seq INTEGER NOT NULL, raw BLOB NOT NULL,
    PRIMARY KEY (author, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blocks_by_link ON blocks (link_key, link_seq);
CREATE TABLE IF NOT EXISTS forks (
    author BLOB NOT NULL, seq INTEGER NOT NULL, raw_kept BLOB NOT NULL, raw_other BLOB NOT NULL,
    PRIMARY KEY (author, seq, raw_other)
) WITHOUT ROWID;
"""

Block = Sealed[BlockBody]


class AddResult(enum.Enum):
    ADDED = "added"
    DUPLICATE = "duplicate"  # the very same block was already stored
    FORK = "fork"  # another block holds this (author, seq): fork proof recorded


@dataclasses.dataclass(frozen=True)
class StoredFork:
    author: bytes
    seq: int
    raw_kept: bytes
    raw_other: bytes


class LedgerStore:
    """Blocks of any number of authors in one database file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._check_version()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable ledger database ({exc})") from exc

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif row[0] != str(SCHEMA_VERSION):
            raise StoreError(f"{self.path}: schema version {row[0]}, expected {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LedgerStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------------
    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        """One durable transaction for every ``add`` inside (group commit).

        Reads inside see the group's blocks; nothing is durable before the group exits; an
        exception rolls the whole group back.
        """
        if self._db.in_transaction:
            yield
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot start a transaction ({exc})") from exc
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def add(self, blocks: Iterable[Block]) -> list[AddResult]:
        """Store ``blocks`` in one transaction (durable on return unless inside a group)."""
        with self.group():
            return [self._add_one(self._db, block) for block in blocks]

    def _add_one(self, db: sqlite3.Connection, block: Block) -> AddResult:
        body = block.message
        row = db.execute(
            "SELECT hash, raw FROM blocks WHERE author=? AND seq=?", (body.author, body.seq)
        ).fetchone()
        if row is not None:
            if row[0] == block.hash:
                return AddResult.DUPLICATE
            db.execute(
                "INSERT OR IGNORE INTO forks VALUES (?, ?, ?, ?)",
                (body.author, body.seq, row[1], block.raw),
            )
            return AddResult.FORK
        db.execute(
            "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?)",
            (body.author, body.seq, block.hash, int(body.type), body.link_key, body.link_seq,
             block.raw),
        )
        return AddResult.ADDED

    # -- reading --------------------------------------------------------------------------
    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: read failed ({exc})") from exc

    def raw_blocks(self) -> Iterator[tuple[bytes, int, bytes, bytes]]:
        """(author, seq, hash, raw) of every block, by author then seq."""
        try:
            yield from self._db.execute("SELECT author, seq, hash, raw FROM blocks ORDER BY author, seq")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: read failed ({exc})") from exc

    def chain(self, author: bytes, from_seq: int = 1) -> list[bytes]:
        """Raw blocks of ``author`` from ``from_seq`` on, in order."""
        rows = self._rows("SELECT raw FROM blocks WHERE author=? AND seq>=? ORDER BY seq",
                          (author, from_seq))
        return [row[0] for row in rows]

    def get(self, author: bytes, seq: int) -> bytes | None:
        rows = self._rows("SELECT raw FROM blocks WHERE author=? AND seq=?", (author, seq))
        return rows[0][0] if rows else None

    def linked_to(self, author: bytes, seq: int) -> list[bytes]:
        """Raw blocks that link to (author, seq): the agreements of that proposal."""
        rows = self._rows("SELECT raw FROM blocks WHERE link_key=? AND link_seq=?", (author, seq))
        return [row[0] for row in rows]

    def head(self, author: bytes) -> int:
        rows = self._rows("SELECT max(seq) FROM blocks WHERE author=?", (author,))
        return rows[0][0] or 0

    def authors(self) -> list[bytes]:
        return [row[0] for row in self._rows("SELECT DISTINCT author FROM blocks ORDER BY author")]

    def count(self) -> int:
        return self._rows("SELECT count(*) FROM blocks")[0][0]

    def forks(self) -> list[StoredFork]:
        return [StoredFork(*row) for row in self._rows("SELECT * FROM forks ORDER BY author, seq")]
