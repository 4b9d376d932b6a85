"""The forecaster's memory: a fixed-size ring of the last days of interval readings.

Readings are addressed by their *interval index* ``interval_start_s // interval_s`` on the
node's clock.  They must arrive in time order; a gap (a missed reading) is kept as NaN.  The ring
holds ``capacity`` intervals: index ``i`` is known iff ``newest - capacity < i <= newest`` and
its value is not NaN.  Every lookup takes a ``cutoff``: indices at or after it read as missing,
which is how a forecast issued at time ``t`` sees only the readings that had ended by ``t``.
"""

from __future__ import annotations

import math

import numpy as np

from models.errors import ReadingError


class ReadingHistory:
    """Generation and consumption (Wh) per interval index, bounded to ``capacity`` intervals."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("ReadingHistory capacity must be at least 1")
        self.capacity = capacity
        self.generation_wh = np.full(capacity, np.nan)
        self.consumption_wh = np.full(capacity, np.nan)
        self.newest: int | None = None

    @property
    def nbytes(self) -> int:
        return self.generation_wh.nbytes + self.consumption_wh.nbytes

    @property
    def oldest(self) -> int | None:
        """The oldest index the ring can still hold (None while empty)."""
        return None if self.newest is None else self.newest - self.capacity + 1

    def append(self, index: int, generation_wh: float, consumption_wh: float) -> None:
        """Store one reading; refuses a duplicate or an out-of-order index, or a bad value."""
        for name, value in (("generation_wh", generation_wh), ("consumption_wh", consumption_wh)):
            if not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(value) or value < 0:
                raise ReadingError("bad_value", f"reading {name}={value!r}: must be a finite "
                                   "number >= 0")
        if self.newest is not None and index <= self.newest:
            reason = "duplicate" if index == self.newest else "out_of_order"
            raise ReadingError(reason, f"reading for interval {index} refused ({reason}): the "
                               f"newest reading is interval {self.newest}")
        if self.newest is not None:
            self._clear_gap(self.newest + 1, index)
        position = index % self.capacity
        self.generation_wh[position] = generation_wh
        self.consumption_wh[position] = consumption_wh
        self.newest = index

    def _clear_gap(self, first: int, stop: int) -> None:
        count = min(stop - first, self.capacity)
        if count > 0:
            positions = np.arange(stop - count, stop) % self.capacity
            self.generation_wh[positions] = np.nan
            self.consumption_wh[positions] = np.nan

    def known(self, indices: np.ndarray, cutoff: int) -> np.ndarray:
        """Which ``indices`` hold a reading that had ended before ``cutoff``."""
        if self.newest is None:
            return np.zeros(np.shape(indices), dtype=bool)
        indices = np.asarray(indices)
        in_ring = (indices > self.newest - self.capacity) & (indices <= self.newest) \
            & (indices < cutoff)
        return in_ring & ~np.isnan(self.generation_wh[indices % self.capacity])

    def values(self, indices, cutoff: int) -> tuple[np.ndarray, np.ndarray]:
        """Generation and consumption at ``indices`` (NaN where unknown or not before cutoff)."""
        indices = np.asarray(indices, dtype=np.int64)
        ok = self.known(indices, cutoff)
        positions = indices % self.capacity
        return (np.where(ok, self.generation_wh[positions], np.nan),
                np.where(ok, self.consumption_wh[positions], np.nan))

    def last_known(self, cutoff: int) -> int | None:
        """The newest index before ``cutoff`` that holds a reading (None if there is none)."""
        if self.newest is None:
            return None
        top = min(cutoff - 1, self.newest)
        indices = np.arange(top, max(top - self.capacity, self.newest - self.capacity), -1)
        hits = np.flatnonzero(self.known(indices, cutoff))
        return int(indices[hits[0]]) if hits.size else None
