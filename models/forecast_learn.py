"""Online ridge regression per forecast horizon, with dated coefficient snapshots.

The learned forecasters (:mod:`models.forecast_features`) predict a normalised target (PV: the
clear-sky index; load: energy over the recent daily level) as a linear blend of a few features.
The blend weights are fitted by weighted least squares on the node's own history, one fit per
horizon bucket, shrunk toward a prior blend (ridge): ``w = (X'WX + l I)^-1 (X'Wy + l w0)``.

Only the sufficient statistics ``X'WX`` and ``X'Wy`` are kept (a few hundred numbers), decayed
by ``forget`` per reading so the fit follows the seasons.  Coefficients are refitted once a day
and kept as dated snapshots: a forecast whose readings end at ``cutoff`` uses the newest snapshot
fitted from readings before ``cutoff``, so adding later readings never changes it.
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

    def decay(self) -> None:
        """Age the statistics by one reading."""
        self.xtx *= self.forget
        self.xty *= self.forget

    def add(self, bucket: int, x: np.ndarray, y: float, weight: float) -> None:
        self.xtx[bucket] += weight * np.outer(x, x)
        self.xty[bucket] += weight * y * x

    def fit(self) -> np.ndarray:
        """Coefficients [bucket, feature] from the statistics so far."""
        eye = np.eye(self.prior.shape[1]) * self.strength
        return np.linalg.solve(self.xtx + eye, (self.xty + self.strength * self.prior)[..., None])[..., 0]

    def snapshot(self, valid_from: int) -> None:
        """Refit and date the coefficients: they hold for cutoffs at or after ``valid_from``."""
        self.fits.append((valid_from, self.fit()))

    def coefficients(self, cutoff: int) -> np.ndarray:
        """The newest fit dated at or before ``cutoff`` (the prior before the first fit)."""
        for valid_from, coef in reversed(self.fits):
            if valid_from <= cutoff:
                return coef
        return self.prior
