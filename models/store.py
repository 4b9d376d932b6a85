"""Saving and loading predictors with skops (no pickle): versioned, schema-checked, type-checked.

A file holds one dict: a format tag and version, the scikit-learn version, the feature schema,
training facts and metrics (plain types), and the two estimators.  Loading first lists the types
the file would instantiate and refuses any outside :data:`EXPECTED_TYPES`, then checks format,
library version and schema, naming what differs.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from models.errors import ModelFileError, ModelVersionError, SchemaError
from models.features import CURRENT_SCHEMA, FeatureSchema

FORMAT = "p2p-energy-predictor"
FORMAT_VERSION = 1
EXPECTED_TYPES = frozenset({
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
})


def _library_version() -> str:
    import sklearn
    return sklearn.__version__


def save(path: Path, quality, duration, trained: dict, metrics: dict) -> None:
    import skops.io
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "sklearn": _library_version(),
               "schema": CURRENT_SCHEMA.to_dict(), "trained": dict(trained), "metrics": dict(metrics),
               "quality": quality, "duration": duration}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    skops.io.dump(payload, temporary, compression=zipfile.ZIP_DEFLATED)
    temporary.replace(path)


def _read(path: Path) -> dict:
    import skops.io
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}")
    try:
        unexpected = set(skops.io.get_untrusted_types(file=path)) - EXPECTED_TYPES
        if unexpected:
            raise ModelFileError(f"{path}: refusing to load unexpected types {sorted(unexpected)}")
        payload = skops.io.load(path, trusted=sorted(EXPECTED_TYPES))
    except ModelFileError:
        raise
    except Exception as exc:  # skops/zipfile/json raise many kinds for a damaged file
        raise ModelFileError(f"{path} is not a readable skops model file: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a {FORMAT} file")
    return payload


def load(path: Path, schema: FeatureSchema = CURRENT_SCHEMA) -> dict:
    """The checked payload of a model file (see module doc for the errors)."""
    path = Path(path)
    payload = _read(path)
    if payload.get("format_version") != FORMAT_VERSION:
        raise ModelVersionError(f"{path}: format version {payload.get('format_version')!r}, "
                                f"this code reads {FORMAT_VERSION}; retrain with `p2pnode train`")
    if payload.get("sklearn") != _library_version():
        raise ModelVersionError(f"{path}: trained with scikit-learn {payload.get('sklearn')}, running "
                                f"{_library_version()}; retrain with `p2pnode train`")
    _check_schema(path, FeatureSchema.from_dict(payload["schema"]), schema)
    _check_estimators(path, payload)
    return payload


def _check_estimators(path: Path, payload: dict) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor
    for name in ("quality", "duration"):
        if not isinstance(payload.get(name), HistGradientBoostingRegressor):
            raise ModelFileError(f"{path}: {name} model is {type(payload.get(name)).__name__}, "
                                 "expected HistGradientBoostingRegressor")


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
