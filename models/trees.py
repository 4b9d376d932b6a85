"""A gradient-boosted tree ensemble as plain arrays, evaluated with numpy alone.

Training uses scikit-learn's ``HistGradientBoostingRegressor`` (the ``[train]`` extra);
:func:`export` copies what its prediction reads (per node: split feature, threshold, where a
missing value goes, children, leaf value; the baseline) into a :class:`TreeEnsemble`.  The node
evaluates that with numpy only, so a meter never imports scikit-learn or scipy, and a model file
does not depend on the scikit-learn release that wrote it.

All trees are stored in one set of arrays.  A leaf points to itself (``left == right == node``),
so evaluation moves every (row, tree) pair one level down per step until none moves, at most
the depth of the deepest tree.  Every internal node's children come after it within its tree
(scikit-learn writes trees depth first), which :meth:`TreeEnsemble.check` verifies: a model file
cannot make evaluation loop or index out of bounds.

The prediction is what scikit-learn computes: baseline + the sum of the leaf values reached, a
row going left when its value is ``<= threshold``, or, if missing (NaN), when the node's
``missing_left`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.errors import ModelFileError

__all__ = ["ARRAYS", "TreeEnsemble", "export"]

ARRAYS = ("feature", "threshold", "missing_left", "left", "right", "value", "roots")
MAX_NODES = 1_000_000


@dataclass(frozen=True, eq=False)
class TreeEnsemble:
    """``baseline`` + one tree per entry of ``roots``; node arrays as in the module doc."""

    feature: np.ndarray        # int32, the column a node splits on (0 for leaves)
    threshold: np.ndarray      # float64, go left when value <= threshold
    missing_left: np.ndarray   # bool, where a NaN goes
    left: np.ndarray           # int32, child index (itself for a leaf)
    right: np.ndarray          # int32
    value: np.ndarray          # float64, the leaf value (ignored for internal nodes)
    roots: np.ndarray          # int32, the root node of each tree
    baseline: float

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """The raw prediction for each row of ``matrix`` (n, features), float64."""
        rows = np.arange(len(matrix))[:, None]
        node = np.broadcast_to(self.roots, (len(matrix), len(self.roots)))
        while True:
            x = matrix[rows, self.feature[node]]
            go_left = np.where(np.isnan(x), self.missing_left[node], x <= self.threshold[node])
            child = np.where(go_left, self.left[node], self.right[node])
            if np.array_equal(child, node):
                break
            node = child
        return self.baseline + self.value[node].sum(axis=1)

    @property
    def trees(self) -> int:
        return len(self.roots)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ARRAYS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], baseline: float,
                    features: int) -> "TreeEnsemble":
        """Build from stored arrays, converting types and checking the structure (see
        :meth:`check`); ``ModelFileError`` names what is wrong."""
        try:
            ensemble = cls(
                feature=np.asarray(arrays["feature"], dtype=np.int32),
                threshold=np.asarray(arrays["threshold"], dtype=np.float64),
                missing_left=np.asarray(arrays["missing_left"], dtype=bool),
                left=np.asarray(arrays["left"], dtype=np.int32),
                right=np.asarray(arrays["right"], dtype=np.int32),
                value=np.asarray(arrays["value"], dtype=np.float64),
                roots=np.asarray(arrays["roots"], dtype=np.int32),
                baseline=float(baseline))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"tree arrays unreadable: {exc}") from exc
        ensemble.check(features)
        return ensemble

    def check(self, features: int) -> None:
        """Raise ``ModelFileError`` unless the arrays form valid trees over ``features``
        columns: equal 1-d lengths, in-range indices, children after their parent."""
        nodes = len(self.feature)
        for name in ARRAYS:
            array = getattr(self, name)
            if array.ndim != 1 or (name != "roots" and len(array) != nodes):
                raise ModelFileError(f"tree array {name} has shape {array.shape}, "
                                     f"expected ({nodes},)")
        if not 0 < nodes <= MAX_NODES or not len(self.roots):
            raise ModelFileError(f"{nodes} tree nodes and {len(self.roots)} trees")
        if not np.isfinite(self.baseline) or not np.isfinite(self.value).all():
            raise ModelFileError("tree values must be finite")
        index = np.arange(nodes)
        leaf = (self.left == index) & (self.right == index)
        inner = ~leaf
        if ((self.left[inner] <= index[inner]).any() | (self.right[inner] <= index[inner]).any()
                | (self.left >= nodes).any() | (self.right >= nodes).any()):
            raise ModelFileError("a tree node's children must follow it")
        if ((self.feature < 0) | (self.feature >= features)).any():
            raise ModelFileError(f"a tree splits on a feature outside 0..{features - 1}")
        if ((self.roots < 0) | (self.roots >= nodes)).any():
            raise ModelFileError("a tree root is outside the node arrays")


def export(estimator) -> TreeEnsemble:
    """A fitted scikit-learn ``HistGradientBoostingRegressor`` as a :class:`TreeEnsemble`.

    Reads the estimator's fitted attributes only (scikit-learn is not imported here).  Raises
    ``ValueError`` for what this format cannot express: categorical splits, several trees per
    iteration, a link other than the identity.
    """
    predictors = getattr(estimator, "_predictors", None)
    if predictors is None:
        raise ValueError(f"{type(estimator).__name__} is not a fitted gradient-boosting model")
    if getattr(estimator, "n_trees_per_iteration_", 1) != 1:
        raise ValueError("only one tree per iteration (regression) can be exported")
    link = type(getattr(getattr(estimator, "_loss", None), "link", None)).__name__
    if link != "IdentityLink":
        raise ValueError(f"only the identity link can be exported, not {link}")
    parts, roots, offset = [], [], 0
    for (tree,) in predictors:
        nodes = tree.nodes
        if nodes["is_categorical"].any():
            raise ValueError("categorical splits cannot be exported")
        leaf = nodes["is_leaf"].astype(bool)
        own = np.arange(len(nodes)) + offset
        parts.append({
            "feature": np.where(leaf, 0, nodes["feature_idx"]),
            "threshold": np.where(leaf, 0.0, nodes["num_threshold"]),
            "missing_left": nodes["missing_go_to_left"].astype(bool) & ~leaf,
            "left": np.where(leaf, own, nodes["left"].astype(np.int64) + offset),
            "right": np.where(leaf, own, nodes["right"].astype(np.int64) + offset),
            "value": np.where(leaf, nodes["value"], 0.0),
        })
        roots.append(offset)
        offset += len(nodes)
    arrays = {name: np.concatenate([p[name] for p in parts]) for name in ARRAYS[:-1]}
    arrays["roots"] = np.array(roots)
    baseline = float(np.asarray(estimator._baseline_prediction).ravel()[0])
    return TreeEnsemble.from_arrays(arrays, baseline, estimator.n_features_in_)
