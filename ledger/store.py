"""Durable storage of blocks: one SQLite file in WAL mode.

A block is stored as the exact bytes that were signed and sealed; the other columns are derived
from them and are re-checked by :mod:`ledger.verify`.  ``add`` writes a group of blocks in one
transaction, and :meth:`LedgerStore.group` makes one transaction of many ``add`` calls (group
commit).  Adding a block that is already stored is a no-op; adding a different block at an
occupied (author, seq) stores the pair as a fork proof and keeps the first.

Beside the blocks, ``peer_endpoints`` keeps where a trade's counterparty was reached
(:meth:`LedgerStore.set_endpoint`): a routing hint a restarted node needs to finish the trade,
not ledger data -- it is not hashed, signed or audited, and a wrong one can only make a
message go unanswered (every reply is checked against the counterparty's key).  The table is
created on open when missing, so ledger files written before it existed open unchanged (the
schema version stays 1: older code ignores the table).

Durability, by the ``sync`` mode (SQLite's ``synchronous`` pragma):

``"full"`` (default; a meter)
    Every commit fsyncs the WAL before it returns, so a committed block survives a process
    crash *and* a power loss at any instant.  One fsync per commit (plus the checkpoints', every
    ~1000 pages): group what one step writes into one transaction.
``"normal"`` (simulations)
    Commits are written to the WAL without an fsync (the WAL is synced at checkpoints only).  A
    committed block survives the death of the process -- SIGKILL included, the data is in the
    operating system's page cache -- but the last commits may be lost on a power loss or a
    kernel crash.  The database stays consistent in both cases (WAL commits are atomic).

Damage is refused, not papered over: a 0-byte file that held blocks is not a new ledger
(SQLite would make it one; one that never held a block, left by a crash while it was created,
is), and the heads of the chains written through :class:`~ledger.ledger.Ledger` are marked
beside the database after every commit (:mod:`ledger.headmark`), so a chain that lost its tail
is found on open.  :meth:`LedgerStore.integrity_problems` runs SQLite's ``integrity_check``
(damaged pages and indexes that reading the blocks alone does not reveal).

:attr:`LedgerStore.commits` counts the transactions that wrote something (with ``"full"``: the
fsyncs); benchmarks and tests read it.
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
from ledger.headmark import MarkWriter, read_marks
from ledger.sealed import Sealed

__all__ = ["LedgerStore", "AddResult", "SCHEMA_VERSION", "SYNC_MODES"]

SCHEMA_VERSION = 1
SYNC_MODES = {"full": "FULL", "normal": "NORMAL"}  # sync= -> PRAGMA synchronous
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
CREATE TABLE IF NOT EXISTS peer_endpoints (
    trade_id BLOB PRIMARY KEY, peer BLOB NOT NULL, endpoint TEXT NOT NULL
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
    """Blocks of any number of authors in one database file; ``sync``: see the module doc."""

    def __init__(self, path: str | Path, *, sync: str = "full"):
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {sorted(SYNC_MODES)}, got {sync!r}")
        self.path, self.sync = Path(path), sync
        self.commits = 0  # transactions that wrote something
        self.marks = read_marks(self.path)   # author -> marked head (ledger.headmark)
        try:
            empty = self.path.stat().st_size == 0
        except FileNotFoundError:
            empty = False
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot open ({exc.strerror})") from exc
        if empty and any(self.marks.values()):   # no marker: created, never written (a crash)
            raise StoreError(
                f"{self.path}: the ledger file is empty (0 bytes) but held blocks (see "
                f"{self.path}.head). Recover them: `p2pnode ledger recover {self.path} --from "
                f"<counterparty or backup ledger>`.")
        self._pending_marks: dict[bytes, int] = {}
        self._marker = MarkWriter(self.path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={SYNC_MODES[sync]}")
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
        self._marker.close()

    def __enter__(self) -> LedgerStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------------
    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        """One durable transaction for every ``add`` inside (group commit).

        Reads inside see the group's blocks; nothing is durable before the group exits; an
        exception rolls the whole group back.  A group inside a group joins the outer one.
        """
        if self._db.in_transaction:
            yield
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot start a transaction ({exc})") from exc
        changes = self._db.total_changes
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._pending_marks.clear()
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:  # e.g. disk full: nothing of the group is stored
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._pending_marks.clear()
            raise StoreError(f"{self.path}: commit failed ({exc})") from exc
        self.commits += self._db.total_changes != changes
        if self._pending_marks:
            self.marks.update(self._pending_marks)
            self._pending_marks.clear()
            self._marker.write(self.marks)

    def mark_head(self, author: bytes, seq: int) -> None:
        """Record ``seq`` as ``author``'s head once the current transaction commits."""
        if not self._db.in_transaction:
            raise RuntimeError("mark_head is called inside a group, with the block it marks")
        self._pending_marks[author] = seq

    def reset_mark(self, author: bytes, seq: int) -> None:
        """Set ``author``'s marked head (``p2pnode ledger recover --accept-loss``)."""
        self.marks[author] = seq
        self._marker.write(self.marks)

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

    def set_endpoint(self, trade_id: bytes, peer: bytes, endpoint: str) -> None:
        """Remember ``peer``'s ``host:port`` for ``trade_id`` (the last one set wins).

        Inside a :meth:`group` it commits with the group's blocks (the buyer's agreement).
        """
        with self.group():
            self._db.execute("INSERT OR REPLACE INTO peer_endpoints VALUES (?, ?, ?)",
                             (trade_id, peer, endpoint))

    # -- reading --------------------------------------------------------------------------
    def endpoint(self, trade_id: bytes) -> str | None:
        rows = self._rows("SELECT endpoint FROM peer_endpoints WHERE trade_id=?", (trade_id,))
        return rows[0][0] if rows else None

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

    def chain(self, author: bytes, from_seq: int = 1, limit: int = -1) -> list[bytes]:
        """Raw blocks of ``author`` from ``from_seq`` on, in order (at most ``limit``; -1: all)."""
        rows = self._rows("SELECT raw FROM blocks WHERE author=? AND seq>=? ORDER BY seq "
                          "LIMIT ?", (author, from_seq, limit))
        return [row[0] for row in rows]

    def get(self, author: bytes, seq: int) -> bytes | None:
        rows = self._rows("SELECT raw FROM blocks WHERE author=? AND seq=?", (author, seq))
        return rows[0][0] if rows else None

    def linked_to(self, author: bytes, seq: int) -> list[bytes]:
        """Raw blocks that link to (author, seq): the agreements of that proposal."""
        rows = self._rows("SELECT raw FROM blocks WHERE link_key=? AND link_seq=?", (author, seq))
        return [row[0] for row in rows]

    def agreed_seqs(self, author: bytes) -> set[int]:
        """Seqs of ``author``'s blocks that another author's stored block links to: its
        proposals the counterparty agreed to (one query, for a chain of any length)."""
        rows = self._rows("SELECT link_seq FROM blocks WHERE link_key=? AND link_seq>0 "
                          "AND author<>?", (author, author))
        return {row[0] for row in rows}

    def head(self, author: bytes) -> int:
        rows = self._rows("SELECT max(seq) FROM blocks WHERE author=?", (author,))
        return rows[0][0] or 0

    def authors(self) -> list[bytes]:
        return [row[0] for row in self._rows("SELECT DISTINCT author FROM blocks ORDER BY author")]

    def count(self) -> int:
        return self._rows("SELECT count(*) FROM blocks")[0][0]

    def has_fork(self, author: bytes) -> bool:
        """True when a fork proof of ``author`` is stored: it signed two blocks at one seq."""
        return bool(self._rows("SELECT 1 FROM forks WHERE author=? LIMIT 1", (author,)))

    def integrity_problems(self, max_problems: int = 100) -> list[str]:
        """SQLite's ``integrity_check``: damaged pages or indexes; empty when all is well."""
        try:
            rows = self._db.execute(f"PRAGMA integrity_check({int(max_problems)})").fetchall()
        except sqlite3.DatabaseError as exc:   # too damaged to even finish the check
            return [f"integrity_check failed: {exc}"]
        problems = [row[0] for row in rows]
        return [] if problems == ["ok"] else problems

    def forks(self) -> list[StoredFork]:
        return [StoredFork(*row) for row in self._rows("SELECT * FROM forks ORDER BY author, seq")]
