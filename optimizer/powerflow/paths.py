"""Transfer efficiency between two buses of a radial feeder: the losses on the path between them.

A trade between the houses at buses ``a`` and ``b`` moves power along the unique path between
them in the tree: up from ``a`` to their lowest common ancestor and down to ``b``.  Its series
resistance is the sum of the branch resistances on that path (the branches on exactly one of the
two root paths).  A power ``P`` drawn through a resistance ``R`` at voltage ``V`` loses
``I^2 R = P^2 R / V^2``, a share ``P R / V^2`` of ``P``; in per unit, with the voltage at 1 pu,
the share lost is ``P_pu * R_pu``.  That is the first-order loss of the trade alone on an
otherwise idle feeder (other flows on shared branches add cross terms the buyer cannot know):
what a buyer that knows the topology can estimate for the transfer efficiency X3.

The root path of a node is read from the sweep matrices of :class:`~optimizer.powerflow.Feeder`:
``B[j, d] != 0`` for the branches ``j`` on the way from the root down to ``d``, and
``forward[d, j] = conj(B[j, d]) z_j``.  Pure: arrays in, numbers out.
"""

from __future__ import annotations

import numpy as np

from optimizer.powerflow.feeder import Feeder

__all__ = ["path_resistance_pu", "transfer_efficiency"]

MIN_EFFICIENCY = 0.5


def _root_path(feeder: Feeder, node: int) -> dict[int, float]:
    """Branch (node it feeds) -> series resistance (pu) on the way from the root to ``node``."""
    column = feeder.backward.getcol(node).tocoo()
    out = {}
    for j, factor in zip(column.row, column.data):
        if j == 0 or factor == 0:
            continue
        z = feeder.forward[node, j] / np.conj(factor)
        out[int(j)] = float(np.real(z))
    return out


def path_resistance_pu(feeder: Feeder, bus_a: int, bus_b: int) -> float:
    """Series resistance (pu on the feeder's base) between pandapower buses ``bus_a`` and
    ``bus_b`` (0 for the same bus)."""
    a = _root_path(feeder, int(feeder.node_of_bus[feeder.position(bus_a)]))
    b = _root_path(feeder, int(feeder.node_of_bus[feeder.position(bus_b)]))
    return sum(r for j, r in a.items() if j not in b) + sum(r for j, r in b.items() if j not in a)


def transfer_efficiency(feeder: Feeder, bus_a: int, bus_b: int, power_kw: float,
                        floor: float = MIN_EFFICIENCY) -> float:
    """The share of ``power_kw`` sent from ``bus_a`` that arrives at ``bus_b`` (see the module
    doc), at least ``floor``."""
    loss = max(0.0, power_kw) / 1000 / feeder.base_mva * path_resistance_pu(feeder, bus_a, bus_b)
    return max(floor, 1.0 - loss)
