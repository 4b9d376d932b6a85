"""Training and held-out evaluation of the two predictors against naive baselines.

Quality is fitted directly; duration is fitted on log(seconds) (durations are skewed and
multiplicative) and transformed back.  Both are scikit-learn ``HistGradientBoostingRegressor``s
with a fixed number of shallow trees (no early stopping, so training is deterministic for a
seed and prediction cost is bounded: see ``benchmarks/selection.py``), exported to the
numpy-evaluated :class:`~models.trees.TreeEnsemble` the node runs (:func:`models.trees.export`).
Training needs the ``[train]`` extra (scikit-learn); the exported predictor does not.

Baselines on the same held-out rows: the training mean, and the seller's own past average
(``seller_past_quality`` / ``seller_past_duration_s``, the training mean where the seller has no
history).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.dataset import Dataset, generate

TEST_SHARE = 0.2
TREES = 60
LEAVES = 15
LEARNING_RATE = 0.2
DEFAULT_ROWS = 20_000
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Scores:
    r2: float
    mae: float


@dataclass(frozen=True)
class Evaluation:
    """Held-out scores: ``scores[target][predictor]`` for target quality/duration_s and predictor
    model/mean/seller_past."""

    rows_train: int
    rows_test: int
    scores: dict[str, dict[str, Scores]]

    def table(self) -> str:
        lines = [f"held-out rows: {self.rows_test} (trained on {self.rows_train})",
                 f"{'target':12} {'predictor':12} {'R2':>8} {'MAE':>10}"]
        for target, by_name in self.scores.items():
            for name, score in by_name.items():
                lines.append(f"{target:12} {name:12} {score.r2:8.3f} {score.mae:10.4f}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {f"{target}_{name}_{metric}": getattr(score, metric)
                for target, by_name in self.scores.items() for name, score in by_name.items()
                for metric in ("r2", "mae")}


def _regressor(seed: int, params: dict | None = None):
    """The ensemble; ``params`` override the defaults (e.g. a smaller, slower-learning one for
    the few hundred rows of a ledger: :mod:`models.ledger_data`)."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    settings = {"max_iter": TREES, "max_leaf_nodes": LEAVES, "learning_rate": LEARNING_RATE,
                **(params or {})}
    return HistGradientBoostingRegressor(early_stopping=False, random_state=seed, **settings)


def split(dataset: Dataset, seed: int) -> tuple[Dataset, Dataset]:
    order = np.random.default_rng(seed).permutation(len(dataset))
    cut = int(len(dataset) * (1 - TEST_SHARE))
    return dataset.subset(order[:cut]), dataset.subset(order[cut:])


def fit(train: Dataset, seed: int = DEFAULT_SEED, quality_params: dict | None = None,
        duration_params: dict | None = None):
    """(quality model, log-duration model) fitted on ``train`` (``*_params``: see
    :func:`_regressor`).

    One OpenMP thread: the data are small, and on a shared or meter-class CPU several threads
    spin-waiting for each other made fitting up to 30 times slower in our measurements.
    """
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1, user_api="openmp"):
        quality = _regressor(seed, quality_params).fit(train.features, train.quality)
        duration = _regressor(seed, duration_params).fit(train.features, np.log(train.duration_s))
    return quality, duration


def _scores(truth: np.ndarray, predicted: np.ndarray) -> Scores:
    from sklearn.metrics import mean_absolute_error, r2_score
    return Scores(float(r2_score(truth, predicted)), float(mean_absolute_error(truth, predicted)))


def evaluate(predict, train: Dataset, test: Dataset) -> Evaluation:
    """Scores of ``predict(features) -> (quality, duration_s)`` and the baselines on ``test``."""
    quality, duration = predict(test.features)
    scores = {}
    for target, column, predicted in (("quality", "seller_past_quality", quality),
                                      ("duration_s", "seller_past_duration_s", duration)):
        truth, mean = getattr(test, target), float(getattr(train, target).mean())
        past = test.column(column)
        scores[target] = {
            "model": _scores(truth, predicted),
            "mean": _scores(truth, np.full_like(truth, mean)),
            "seller_past": _scores(truth, np.where(np.isnan(past), mean, past)),
        }
    return Evaluation(len(train), len(test), scores)


def train(rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED):
    """Generate ``rows`` trades, fit on 80 %, evaluate on 20 %: (Predictor, Evaluation)."""
    from models.predictor import Predictor
    from models.trees import export
    train_set, test_set = split(generate(rows, seed), seed)
    quality, duration = fit(train_set, seed)
    predictor = Predictor(export(quality), export(duration), trained={"rows": rows, "seed": seed})
    evaluation = evaluate(lambda x: predictor.predict(x, check=False), train_set, test_set)
    return predictor.with_metrics(evaluation.to_dict()), evaluation
