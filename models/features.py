"""The feature schema shared by the dataset, training and prediction.

One row describes a prospective trade with one seller, as the buyer knows it before sending the
request:

===========================  ==================================================================
transaction                  ``energy_wh`` to buy, ``price_per_kwh`` asked
environment                  ``irradiance_w_m2`` (global horizontal, now), ``temperature_c``
technical                    ``line_efficiency`` (0..1) and ``distance_m`` between the meters
location                     ``zone``: the seller's feeder/zone index, 0..``ZONES``−1
history (from the ledger)    ``seller_past_quality`` (mean share delivered), ``seller_participation``
                             (past trades as seller), ``seller_past_duration_s`` (mean duration);
                             the two means are NaN for a seller without history
market                       ``supply_demand_ratio`` seen in the DHT for this interval
===========================  ==================================================================

The schema has a version; a saved model records the version and the names, and loading a model
with another schema fails with :class:`~models.errors.SchemaError`.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass, fields
from typing import Iterable, Sequence

import numpy as np

from models.errors import FeatureError

SCHEMA_VERSION = 1
ZONES = 16


@dataclass(frozen=True)
class TransactionFeatures:
    """One feature row; field order is the column order of the feature matrix."""

    energy_wh: float
    price_per_kwh: float
    irradiance_w_m2: float
    temperature_c: float
    line_efficiency: float
    distance_m: float
    zone: int
    seller_past_quality: float
    seller_participation: int
    seller_past_duration_s: float
    supply_demand_ratio: float


FEATURES: tuple[str, ...] = tuple(f.name for f in fields(TransactionFeatures))
MAY_BE_MISSING = frozenset({"seller_past_quality", "seller_past_duration_s"})
RANGES: dict[str, tuple[float, float]] = {
    "energy_wh": (0.0, math.inf), "price_per_kwh": (0.0, math.inf),
    "irradiance_w_m2": (0.0, 1500.0), "temperature_c": (-60.0, 70.0),
    "line_efficiency": (0.0, 1.0), "distance_m": (0.0, math.inf), "zone": (0, ZONES - 1),
    "seller_past_quality": (0.0, 1.0), "seller_participation": (0, math.inf),
    "seller_past_duration_s": (0.0, math.inf), "supply_demand_ratio": (0.0, math.inf),
}


@dataclass(frozen=True)
class FeatureSchema:
    """What a model was trained on: the schema version and the column names in order."""

    version: int = SCHEMA_VERSION
    names: tuple[str, ...] = FEATURES

    def to_dict(self) -> dict:
        return {"version": self.version, "names": list(self.names)}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureSchema":
        return cls(int(data["version"]), tuple(str(n) for n in data["names"]))


CURRENT_SCHEMA = FeatureSchema()


def feature_matrix(rows: np.ndarray | Iterable[TransactionFeatures | Sequence[float]],
                   *, check: bool = True) -> np.ndarray:
    """A C-contiguous float64 (n, len(FEATURES)) array from an array, dataclasses or sequences."""
    if isinstance(rows, np.ndarray):
        matrix = np.ascontiguousarray(rows, dtype=np.float64)
    else:
        matrix = np.array([astuple(r) if isinstance(r, TransactionFeatures) else tuple(r) for r in rows],
                          dtype=np.float64)
        if matrix.size == 0:
            matrix = matrix.reshape(0, len(FEATURES))
    if matrix.ndim != 2 or matrix.shape[1] != len(FEATURES):
        raise FeatureError(f"features must have shape (n, {len(FEATURES)}) in the order "
                           f"{', '.join(FEATURES)}; got {matrix.shape}")
    if check:
        check_ranges(matrix)
    return matrix


def check_ranges(matrix: np.ndarray) -> None:
    """Raise :class:`FeatureError` naming the first feature with a value out of range."""
    for column, name in enumerate(FEATURES):
        values = matrix[:, column]
        missing = np.isnan(values)
        if missing.any() and name not in MAY_BE_MISSING:
            raise FeatureError(f"feature {name} is NaN (only {sorted(MAY_BE_MISSING)} may be)")
        low, high = RANGES[name]
        present = values[~missing]
        bad_mask = ~np.isfinite(present) | (present < low) | (present > high)
        if bad_mask.any():
            bad = present[bad_mask][0]
            raise FeatureError(f"feature {name} must be in [{low}, {high}], got {bad!r}")
