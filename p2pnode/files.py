"""Bounded, checked reads of the files a node is given (keys, tokens, vouchers, configs, CSVs).

Every file a node reads is read through :func:`read_bounded`: a regular file only (a device such
as ``/dev/zero`` or a FIFO is refused before a byte is read), and at most ``max_bytes`` of it, so
a path pointing at something huge cannot exhaust memory.  Secrets (key and token files) also go
through :func:`check_private`: owned by the user running the node and not accessible by group or
others -- running as root does not make another user's key acceptable.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from p2pnode.errors import FileLimitError

__all__ = [
    "CONFIG_MAX_BYTES", "CSV_MAX_BYTES", "KEY_FILE_MAX_BYTES", "TOKEN_FILE_MAX_BYTES",
    "VOUCHER_MAX_BYTES", "check_private", "read_bounded", "read_private",
]

KEY_FILE_MAX_BYTES = 16 * 1024          # a PEM Ed25519 key is ~120 bytes, encrypted ~300
TOKEN_FILE_MAX_BYTES = 4 * 1024
VOUCHER_MAX_BYTES = 64 * 1024 + 256     # a sealed CreditVoucher is far below the envelope cap
CONFIG_MAX_BYTES = 1024 * 1024          # node.toml, scenario and sweep TOML
CSV_MAX_BYTES = 256 * 1024 * 1024       # meter CSVs: a year of 1-minute readings is ~20 MB


def read_bounded(path: Path, max_bytes: int, what: str) -> bytes:
    """The bytes of regular file ``path``, refusing anything else or anything over ``max_bytes``.

    ``what`` names the file in errors (e.g. ``"key file"``).  Raises ``FileNotFoundError`` for a
    missing file (callers add how to create it) and :class:`FileLimitError` for anything else.
    """
    data, _ = _read(Path(path), max_bytes, what)
    return data


def read_private(path: Path, max_bytes: int, what: str) -> bytes:
    """Like :func:`read_bounded`, for a secret: also :func:`check_private` on the open file."""
    data, info = _read(Path(path), max_bytes, what)
    check_private(Path(path), info, what)
    return data


def check_private(path: Path, info: os.stat_result, what: str) -> None:
    """Refuse a secret owned by another user or accessible by group or others."""
    euid = os.geteuid()
    if info.st_uid != euid:
        raise FileLimitError(
            f"{what} {path} is owned by uid {info.st_uid}, not by the user running the node "
            f"(uid {euid}); copy it and `chown` it to that user, then `chmod 600 {path}`")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise FileLimitError(
            f"{what} {path} is accessible by others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run `chmod 600 {path}`")


def _read(path: Path, max_bytes: int, what: str) -> tuple[bytes, os.stat_result]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise   # callers say how to create the file
    except OSError as exc:
        raise FileLimitError(f"cannot read {what} {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileLimitError(f"{what} {path} is not a regular file")
        if info.st_size > max_bytes:
            raise FileLimitError(f"{what} {path} is {info.st_size} bytes; at most {max_bytes} "
                                 "are read")
        chunks, total = [], 0
        while True:   # the size may change under us: never read more than the limit + 1
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise FileLimitError(f"{what} {path} is over {max_bytes} bytes")
        return b"".join(chunks), info
    except OSError as exc:
        raise FileLimitError(f"cannot read {what} {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
