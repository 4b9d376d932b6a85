"""The predictor the node calls: quality (share delivered, 0..1) and duration (s) per candidate.

    predictor = Predictor.default()          # bundled model, trained on demand if missing
    quality, duration_s = predictor.predict(rows)   # rows: (n, 11) array or TransactionFeatures

``predict`` is the hot path (a whole candidate set at once): no pandas, one float64 matrix, two
tree-ensemble evaluations on one OpenMP thread.  With scikit-learn's default (all cores) the
threads spin-wait for each other whenever another process holds a core: on the 2-core test
machine that made the median call 3-10 times and the 90th percentile 20-50 times slower.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from models import store
from models.errors import ModelFileError
from models.features import TransactionFeatures, feature_matrix

DEFAULT_MODEL_PATH = Path(__file__).with_name("default_predictor.skops")
log = logging.getLogger(__name__)


@functools.cache
def _thread_controller():
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()


@dataclass(frozen=True, eq=False)
class Predictor:
    """Two fitted regressors (quality; log duration) with their training facts and metrics."""

    quality_model: object
    duration_model: object
    trained: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    def predict(self, rows: np.ndarray | Iterable[TransactionFeatures], *,
                check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(quality in 0..1, duration_s > 0) for every row; ``check`` validates the ranges."""
        matrix = feature_matrix(rows, check=check)
        if not len(matrix):
            return np.zeros(0), np.zeros(0)
        with _thread_controller().limit(limits=1, user_api="openmp"):
            quality = np.clip(self.quality_model.predict(matrix), 0.0, 1.0)
            duration = np.exp(self.duration_model.predict(matrix))
        return quality, duration

    def with_metrics(self, metrics: dict) -> "Predictor":
        return replace(self, metrics=dict(metrics))

    def save(self, path: Path) -> None:
        store.save(Path(path), self.quality_model, self.duration_model, self.trained, self.metrics)

    @classmethod
    def load(cls, path: Path) -> "Predictor":
        """Load a model file; raises SchemaError / ModelVersionError / ModelFileError."""
        payload = store.load(Path(path))
        return cls(payload["quality"], payload["duration"], payload["trained"], payload["metrics"])

    @classmethod
    def default(cls, path: Path = DEFAULT_MODEL_PATH, *, write: bool = True,
                rows: int | None = None) -> "Predictor":
        """The bundled model; if it is missing or unusable (e.g. written by another scikit-learn),
        train the default one now (``rows`` synthetic trades, a few seconds for the default
        20 000) and, if ``write``, save it for next time."""
        try:
            return cls.load(path)
        except ModelFileError as exc:
            log.info("default predictor unavailable (%s); training it", exc)
        from models.train import DEFAULT_ROWS, train
        predictor, _ = train(rows or DEFAULT_ROWS)
        if write:
            try:
                predictor.save(path)
            except OSError as exc:
                log.warning("could not save the default predictor to %s: %s", path, exc)
        return predictor
