"""What happened in a run, per house and interval: the input of every metric.

Energy bookkeeping (Wh, per house and interval), after self-consumption and batteries:

* ``surplus_wh`` is sold locally (``sold_wh``), exported (``grid_export_wh``) or wasted
  (``wasted_wh``: it could be neither sold nor exported because export is capped);
* ``deficit_wh`` is bought locally (``bought_wh``) or imported (``grid_import_wh``).

Money (currency units, per house and interval): ``paid`` for energy bought from peers,
``received`` for energy sold to peers.  Grid costs are computed from the tariffs by the metrics.
Whoever collected the trades (the swarm runner, a market baseline) calls :func:`settle`;
:func:`settle` derives the grid flows so every outcome obeys the same bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOLERANCE_WH = 1e-6


@dataclass(frozen=True, eq=False)
class Outcome:
    """Per-house, per-interval flows of one run (arrays [house, interval])."""

    generation_wh: np.ndarray
    consumption_wh: np.ndarray
    surplus_wh: np.ndarray
    deficit_wh: np.ndarray
    bought_wh: np.ndarray
    sold_wh: np.ndarray
    grid_import_wh: np.ndarray
    grid_export_wh: np.ndarray
    wasted_wh: np.ndarray
    paid: np.ndarray
    received: np.ndarray
    export_limit_wh: float | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.surplus_wh.shape


def settle(*, generation_wh, consumption_wh, surplus_wh, deficit_wh, bought_wh=None,
           sold_wh=None, paid=None, received=None, export_limit_wh: float | None = None,
           tolerance_wh: float = TOLERANCE_WH) -> Outcome:
    """Complete local trades with the grid: import the rest of each deficit, export the rest of
    each surplus up to ``export_limit_wh`` per house and interval, waste what is left.

    Absent trade arrays mean no trading (the grid-only baseline).  Raises ``ValueError`` if a
    house bought more than its deficit or sold more than its surplus by more than
    ``tolerance_wh`` (raise it to 1 Wh if trades are rounded to whole-Wh tokens), or if shapes
    disagree.
    """
    surplus = np.asarray(surplus_wh, dtype=np.float64)
    shape = surplus.shape
    arrays = {name: _matrix(value, shape, name) for name, value in (
        ("generation_wh", generation_wh), ("consumption_wh", consumption_wh),
        ("deficit_wh", deficit_wh), ("bought_wh", bought_wh), ("sold_wh", sold_wh),
        ("paid", paid), ("received", received))}
    deficit, bought, sold = arrays["deficit_wh"], arrays["bought_wh"], arrays["sold_wh"]
    _check_within(bought, deficit, "bought_wh", "deficit_wh", tolerance_wh)
    _check_within(sold, surplus, "sold_wh", "surplus_wh", tolerance_wh)
    grid_import = np.maximum(deficit - bought, 0.0)
    left = np.maximum(surplus - sold, 0.0)
    export = left if export_limit_wh is None else np.minimum(left, export_limit_wh)
    return Outcome(surplus_wh=surplus, grid_import_wh=grid_import, grid_export_wh=export,
                   wasted_wh=left - export, export_limit_wh=export_limit_wh, **arrays)


def _matrix(value, shape, name: str) -> np.ndarray:
    if value is None:
        return np.zeros(shape)
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, expected {shape}")
    return array


def trade_arrays(houses: int, intervals: int, *, interval, seller, buyer, energy_wh,
                 price_per_kwh, delivered_wh=None) -> dict[str, np.ndarray]:
    """Per-house arrays for :func:`settle` from a table of trades (one entry per trade).

    ``interval``, ``seller``, ``buyer``: integer indices; ``energy_wh``: agreed energy;
    ``delivered_wh``: energy actually delivered (default: as agreed), which is what moves and
    what is paid for.  Returns ``bought_wh``, ``sold_wh``, ``paid`` and ``received``.
    """
    t = np.asarray(interval, dtype=np.intp)
    s, b = np.asarray(seller, dtype=np.intp), np.asarray(buyer, dtype=np.intp)
    energy = np.asarray(energy_wh if delivered_wh is None else delivered_wh, dtype=np.float64)
    money = energy * np.asarray(price_per_kwh, dtype=np.float64) / 1000.0
    out = {name: np.zeros((houses, intervals)) for name in ("bought_wh", "sold_wh", "paid",
                                                          "received")}
    np.add.at(out["bought_wh"], (b, t), energy)
    np.add.at(out["sold_wh"], (s, t), energy)
    np.add.at(out["paid"], (b, t), money)
    np.add.at(out["received"], (s, t), money)
    return out


def _check_within(part: np.ndarray, whole: np.ndarray, part_name: str, whole_name: str,
                  tolerance_wh: float) -> None:
    if (part < -tolerance_wh).any():
        raise ValueError(f"{part_name} has negative entries")
    over = part - whole
    if (over > tolerance_wh).any():
        house, interval = np.unravel_index(np.argmax(over), over.shape)
        raise ValueError(f"{part_name} exceeds {whole_name} by {over.max():.6g} Wh "
                         f"(house {house}, interval {interval})")
