"""The predictor the node calls: quality (share delivered, 0..1) and duration (s) per candidate.

    predictor = Predictor.default()          # the bundled model file, read once
    quality, duration_s = predictor.predict(rows)   # rows: (n, 11) array or TransactionFeatures

Both models are :class:`~models.trees.TreeEnsemble` s evaluated with numpy: no scikit-learn,
no scipy, no threads at run time.  Loading reads a file and nothing else: no training and no
file writes happen when a node starts (a missing or unreadable file is an error that says how
to make one: ``p2pnode train``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from models import store
from models.features import TransactionFeatures, feature_matrix
from models.trees import TreeEnsemble

DEFAULT_MODEL_PATH = Path(__file__).with_name("default_predictor.npz")


@dataclass(frozen=True, eq=False)
class Predictor:
    """Two tree ensembles (quality; log duration) with their training facts and metrics."""

    quality_model: TreeEnsemble
    duration_model: TreeEnsemble
    trained: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    def predict(self, rows: np.ndarray | Iterable[TransactionFeatures], *,
                check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(quality in 0..1, duration_s > 0) for every row; ``check`` validates the ranges."""
        matrix = feature_matrix(rows, check=check)
        if not len(matrix):
            return np.zeros(0), np.zeros(0)
        quality = np.clip(self.quality_model.predict(matrix), 0.0, 1.0)
        duration = np.exp(self.duration_model.predict(matrix))
        return quality, duration

    def with_metrics(self, metrics: dict) -> "Predictor":
        return replace(self, metrics=dict(metrics))

    def save(self, path: Path) -> None:
        store.save(Path(path), {"quality": self.quality_model, "duration": self.duration_model},
                   self.trained, self.metrics)

    @classmethod
    def load(cls, path: Path) -> "Predictor":
        """Read a model file; raises SchemaError / ModelVersionError / ModelFileError."""
        meta, models = store.load(Path(path))
        return cls(models["quality"], models["duration"], meta.get("trained", {}),
                   meta.get("metrics", {}))

    @classmethod
    def default(cls, path: Path = DEFAULT_MODEL_PATH) -> "Predictor":
        """The model file shipped with the package (see :meth:`load` for the errors)."""
        return cls.load(path)
