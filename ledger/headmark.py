"""The head marker: a small file beside a ledger database naming each own chain's head.

A ledger database can lose its tail without any error from SQLite: a ``-wal`` file deleted or
not copied with the database (WAL mode keeps the latest commits there until a checkpoint), a
database restored from an old backup, a file truncated to 0 bytes.  The chain left behind is
valid -- only shorter -- and a node that went on writing would sign new blocks at sequence
numbers its counterparties already hold: a fork, which makes the honest counterparties'
ledgers fail verification too.

So every commit that advances a chain written through :class:`~ledger.ledger.Ledger` also
records the new head in ``<database>.head`` (one ``author-hex seq`` line per chain), outside
the database and its WAL.  On open, a chain shorter than its marker is refused
(:class:`LostTail`) until it is recovered (``p2pnode ledger recover``).

The marker is written after the commit and not fsynced: after a power loss it may be *behind*
the database (never a false alarm with the store's ``sync="full"``).  The first write of a
process, and any that adds a chain, replaces the file atomically (a temporary file renamed over
it); the others overwrite it in place with one ``pwrite`` of the same length (sequence numbers
are written with :data:`SEQ_DIGITS` digits, so one line keeps its length; a few lines are well
under a disk sector, which a power loss does not tear).  A rename per commit cost more than the
commit's own SQLite work.  With ``sync="normal"`` a power loss can lose the last commits while
their marker survived: that is reported as a lost tail, which it is.  A missing marker file
checks nothing (databases written before markers existed open as before).
"""

from __future__ import annotations

import os
from pathlib import Path

from ledger.errors import StoreError

__all__ = ["LostTail", "MarkWriter", "marker_path", "read_marks"]

MAX_MARKER_BYTES = 1 << 20
SEQ_DIGITS = 20   # a chain's head as 20 digits: every line of the marker has one length
SUFFIX = ".head"


class LostTail(StoreError):
    """A chain in the database is shorter than the head recorded beside it."""

    def __init__(self, path: Path, author: bytes, head: int, marked: int):
        self.author, self.head, self.marked = author, head, marked
        super().__init__(
            f"{path}: the chain of {author.hex()[:16]}… ends at block {head} but block {marked} "
            f"was written before ({marked - head} blocks lost: a deleted -wal file, an old "
            f"backup or a truncated file?). Writing on would fork the chain its counterparties "
            f"hold. Recover the lost blocks with `p2pnode ledger recover {path} --from "
            f"<counterparty or backup ledger>...`")


def marker_path(db_path: Path) -> Path:
    return Path(f"{db_path}{SUFFIX}")


def read_marks(db_path: Path) -> dict[bytes, int]:
    """The marked heads by author; empty when there is no marker.  StoreError if unreadable."""
    path = marker_path(db_path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MARKER_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the head marker ({exc.strerror})") from exc
    if len(data) > MAX_MARKER_BYTES:
        raise StoreError(f"{path}: head marker over {MAX_MARKER_BYTES} bytes")
    marks = {}
    try:
        for line in data.decode("ascii").splitlines():
            author, seq = line.split()
            marks[bytes.fromhex(author)] = int(seq)
    except ValueError as exc:
        raise StoreError(f"{path}: head marker is malformed ({exc}); delete it to skip the "
                         f"check once") from None
    return marks


def _text(marks: dict[bytes, int]) -> bytes:
    return "".join(f"{author.hex()} {seq:0{SEQ_DIGITS}d}\n"
                   for author, seq in sorted(marks.items())).encode("ascii")


def _replace(path: Path, data: bytes) -> None:
    """Replace the marker atomically (temporary file + rename; no fsync, see the module doc)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise StoreError(f"{path}: cannot write the head marker ({exc.strerror})") from exc


class MarkWriter:
    """Writes one database's marker: replaced the first time and whenever its length changes
    (a chain added), else overwritten in place (see the module doc)."""

    def __init__(self, db_path: Path):
        self.path = marker_path(db_path)
        self._fd: int | None = None
        self._size = -1

    def write(self, marks: dict[bytes, int]) -> None:
        data = _text(marks)
        try:
            if self._fd is not None and len(data) == self._size:
                os.pwrite(self._fd, data, 0)
                return
            self.close()
            _replace(self.path, data)
            self._fd, self._size = os.open(self.path, os.O_WRONLY), len(data)
        except OSError as exc:
            self.close()
            raise StoreError(f"{self.path}: cannot write the head marker ({exc.strerror})") \
                from exc

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd, self._size = None, -1
