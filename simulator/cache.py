"""On-disk cache of built profiles: one ``.npz`` file per parameter set, never pickle.

The key is a SHA-256 of the canonical JSON of the parameters, the cache format version and the
versions of the data packages (a new ``pvlib`` or ``demandlib`` may ship different data).  Files
are written to a temporary name and renamed, so a crash never leaves a half-written entry, and
an unreadable or mismatching entry is treated as a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np

CACHE_FORMAT = 1
CACHE_ENV = "P2P_CACHE_DIR"
_KEY_FIELD = "_cache_key"
_DATA_PACKAGES = ("pvlib", "demandlib")


def default_cache_dir() -> Path:
    """``$P2P_CACHE_DIR``, else ``$XDG_CACHE_HOME/p2p-energy``, else ``~/.cache/p2p-energy``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "p2p-energy"


def cache_key(params: dict) -> str:
    """Canonical JSON of ``params`` plus format and data-package versions."""
    versions = {name: _version(name) for name in _DATA_PACKAGES}
    body = {"format": CACHE_FORMAT, "params": params, "packages": versions}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)


def cache_path(cache_dir: Path, kind: str, key: str) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return Path(cache_dir) / f"{kind}-{digest}.npz"


def load_arrays(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays stored under ``key``, or ``None`` on a miss (absent, corrupt, other key)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    stored_key = arrays.pop(_KEY_FIELD, None)
    if stored_key is None or str(stored_key) != key:
        return None
    return arrays


def save_arrays(path: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically: temporary file in the same directory, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays, **{_KEY_FIELD: np.array(key)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"
