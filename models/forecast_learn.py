"""Online ridge regression per forecast horizon, with dated coefficient snapshots.

The learned forecasters (:mod:`models.forecast_features`) predict a normalised target (PV: the
clear-sky index; load: energy over the recent daily level) as a linear blend of a few features.
The blend weights are fitted by weighted least squares on the node's own history, one fit per
horizon bucket, shrunk toward a prior blend (ridge): ``w = (X'WX + l I)^-1 (X'Wy + l w0)``.

Only the sufficient statistics ``X'WX`` and ``X'Wy`` are kept (a few hundred numbers), decayed
by ``forget`` per reading so the fit follows the seasons.  Coefficients are refitted once a day
and kept as dated snapshots: a forecast whose readings end at ``cutoff`` uses the newest snapshot
fitted from readings before ``cutoff``, so adding later readings never changes it.  The refit is
the only reader of the statistics, so a day's readings are added in one batch just before it
(:meth:`OnlineRidge.learn` weights each row as if it had been added when its reading arrived).
"""

from __future__ import annotations

from collections import deque

import numpy as np


class OnlineRidge:
    """Sufficient statistics and dated fits for ``buckets`` linear models of ``features``."""

    def __init__(self, prior: np.ndarray, strength: float, forget: float, snapshots: int):
        self.prior = np.asarray(prior, dtype=np.float64)
        buckets, features = self.prior.shape
        self.strength, self.forget = strength, forget
        self.xtx = np.zeros((buckets, features, features))
        self.xty = np.zeros((buckets, features))
        self.fits: deque[tuple[int, np.ndarray]] = deque(maxlen=snapshots)

    @property
    def nbytes(self) -> int:
        return (self.prior.nbytes + self.xtx.nbytes + self.xty.nbytes
                + sum(coef.nbytes for _, coef in self.fits))

    def learn(self, readings: int, buckets: np.ndarray, x: np.ndarray, y: np.ndarray,
              weight: np.ndarray, later: np.ndarray) -> None:
        """Bring the statistics up to date with ``readings`` more readings at once: each ages
        them by ``forget``, and row ``j`` (bucket, features, target, weight), scored on the
        reading that ``later[j]`` others followed, counts ``forget ** later[j]`` of its weight:
        the same sums as adding the rows one reading at a time."""
        self.xtx *= self.forget ** readings
        self.xty *= self.forget ** readings
        weight = np.asarray(weight, dtype=np.float64) * self.forget ** np.asarray(later)
        for bucket in np.unique(buckets):
            rows = buckets == bucket
            weighted = x[rows] * weight[rows, None]
            self.xtx[bucket] += weighted.T @ x[rows]
            self.xty[bucket] += weighted.T @ y[rows]

    def fit(self) -> np.ndarray:
        """Coefficients [bucket, feature] from the statistics so far."""
        eye = np.eye(self.prior.shape[1]) * self.strength
        rhs = (self.xty + self.strength * self.prior)[..., None]
        return np.linalg.solve(self.xtx + eye, rhs)[..., 0]

    def snapshot(self, valid_from: int) -> None:
        """Refit and date the coefficients: they hold for cutoffs at or after ``valid_from``."""
        self.fits.append((valid_from, self.fit()))

    def coefficients(self, cutoff: int) -> np.ndarray:
        """The newest fit dated at or before ``cutoff`` (the prior before the first fit)."""
        for valid_from, coef in reversed(self.fits):
            if valid_from <= cutoff:
                return coef
        return self.prior
