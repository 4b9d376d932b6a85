"""Predictor files: numpy ``.npz`` archives of plain arrays, versioned and schema-checked.

A file holds ``meta`` (a JSON text: format tag and version, the feature schema, training facts
and metrics, the baseline of each model) and, per model (``quality``, ``duration``), the
arrays of :class:`~models.trees.TreeEnsemble` as ``<model>.<array>``.  Reading uses
``numpy.load(allow_pickle=False)``: a file can hold numbers and text only, never code.  Loading
checks format, version and schema, naming what differs, and the trees' structure.  Neither
scikit-learn nor any file write is involved in loading.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from models.errors import ModelFileError, ModelVersionError, SchemaError
from models.features import CURRENT_SCHEMA, FeatureSchema
from models.trees import ARRAYS, TreeEnsemble

FORMAT = "p2p-energy-predictor"
FORMAT_VERSION = 2          # 1 was a skops file of scikit-learn objects
MODELS = ("quality", "duration")
MAX_FILE_BYTES = 64 * 1024 * 1024


def save(path: Path, models: dict[str, TreeEnsemble], trained: dict, metrics: dict) -> None:
    """Write ``models`` (by name, :data:`MODELS`) atomically to ``path``."""
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "schema": CURRENT_SCHEMA.to_dict(), "trained": dict(trained), "metrics": dict(metrics),
            "baseline": {name: models[name].baseline for name in MODELS}}
    arrays = {f"{name}.{array}": value for name in MODELS
              for array, value in models[name].arrays().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as out:
        np.savez_compressed(out, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    temporary.replace(path)


def load(path: Path, schema: FeatureSchema = CURRENT_SCHEMA) -> tuple[dict, dict[str, TreeEnsemble]]:
    """(meta, models by name) of a predictor file; raises ModelFileError (missing, damaged,
    not ours), ModelVersionError (another format version) or SchemaError."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ModelFileError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        contents = _arrays(path)
        meta = json.loads(str(contents.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{path} is not a readable {FORMAT} file: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a {FORMAT} file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelVersionError(f"{path}: format version {meta.get('format_version')!r}, "
                                f"this code reads {FORMAT_VERSION}; retrain with `p2pnode train`")
    try:
        found = FeatureSchema.from_dict(meta["schema"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: unreadable feature schema: {exc}") from exc
    _check_schema(path, found, schema)
    return meta, {name: _ensemble(path, name, meta, contents, len(schema.names))
                  for name in MODELS}


def _arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file (numbers and text only: pickles are refused)."""
    with path.open("rb") as handle:
        archive = np.load(handle, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with archive:
            return {name: archive[name] for name in archive.files}


def _ensemble(path: Path, name: str, meta: dict, contents: dict, features: int) -> TreeEnsemble:
    arrays = {array: contents.get(f"{name}.{array}") for array in ARRAYS}
    missing = [array for array, value in arrays.items() if value is None]
    if missing:
        raise ModelFileError(f"{path}: {name} model lacks {missing}")
    try:
        baseline = float(meta["baseline"][name])
        return TreeEnsemble.from_arrays(arrays, baseline, features)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: {name} model has no baseline: {exc}") from exc
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {name} model: {exc}") from None


def _check_schema(path: Path, found: FeatureSchema, expected: FeatureSchema) -> None:
    if found == expected:
        return
    missing = [n for n in expected.names if n not in found.names]
    extra = [n for n in found.names if n not in expected.names]
    if found.names == expected.names:
        detail = "same columns, another schema version"
    elif missing or extra:
        detail = f"missing {missing}, unexpected {extra}"
    else:
        detail = "columns in another order"
    raise SchemaError(f"{path}: feature schema v{found.version} does not match v{expected.version} "
                      f"({detail}); retrain with `p2pnode train`")
