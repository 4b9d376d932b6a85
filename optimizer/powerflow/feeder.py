"""A radial feeder reduced to the two matrices of the backward-forward sweep.

Nodes are numbered with the slack (root) as node 0. Every other node ``j`` is fed by exactly one
branch, also called ``j``: an ideal transformer of complex ratio ``N_j`` on the parent side
(``N_j = 1`` for a line) followed by a series impedance ``z_j``. Shunt admittances (line
charging, transformer magnetising branch) sit at nodes. With ``I_j`` the current in branch ``j``
(child side) and ``J_d`` the current a node draws (loads and shunts):

* backward sweep: ``I_j = J_j + sum_{c child of j} I_c / conj(N_c)``, unrolled into the matrix
  ``B[j, d] = prod_{c on the path below j down to d} 1 / conj(N_c)`` so that ``I = B @ J``
  (row 0 gives the current drawn from the slack);
* forward sweep: ``V_j = V_parent / N_j - z_j I_j``, unrolled into ``V = w V_slack - B^H (z * I)``
  with ``w_d = prod_{b on the path to d} 1 / N_b`` (the no-load voltage).

This is the BIBC/BCBV formulation of the sweep (Teng 2003) extended with off-nominal, phase
shifting transformers. Everything here is plain arrays; building from pandapower lives in
:mod:`optimizer.powerflow.pandapower_feeder`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from optimizer.powerflow.errors import FeederError

if TYPE_CHECKING:       # scipy (the [sim] extra) is imported where a feeder is built
    from scipy import sparse

FOLD_MAX_NODES = 1500  # above this, no dense folded matrix (n^2 complex numbers)


@dataclass(frozen=True, eq=False)
class Branches:
    """Reportable branches (lines or transformers), each identified by the node it feeds.

    ``index`` is the element's index in its source table, ``node`` the internal node fed by the
    branch's series impedance, ``rating`` its limit (kA for lines, MVA for transformers).
    """

    index: np.ndarray
    node: np.ndarray
    rating: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


@dataclass(frozen=True, eq=False)
class Feeder:
    """A radial feeder ready for :func:`optimizer.powerflow.solve`.

    Buses are reported in ``bus_index`` order (the pandapower bus indices); ``node_of_bus`` maps
    them to internal nodes (internal nodes also include transformer midpoints). Powers are in
    MW/MVAr, per-unit values on ``base_mva`` and each bus's ``bus_vn_kv``.
    ``base_p_mw``/``base_q_mvar`` are the net loads (load minus generation) of the source
    network, per bus; ``load_buses`` are the positions of buses that host a load (the houses).
    ``backward``/``forward`` are the sweep matrices ``B`` and ``B^H diag(z)``; ``folded`` and
    ``folded_no_load`` are the dense one-matrix form used for a few steps at a time (see
    :func:`fold_sweeps`; ``None`` above :data:`FOLD_MAX_NODES` nodes).
    """

    name: str
    base_mva: float
    bus_index: np.ndarray
    node_of_bus: np.ndarray
    node_vn_kv: np.ndarray
    v_slack_pu: complex
    shunt_pu: np.ndarray
    no_load_factor: np.ndarray
    backward: sparse.csr_matrix
    forward: sparse.csr_matrix
    folded: np.ndarray | None
    folded_no_load: np.ndarray | None
    lines: Branches
    trafos: Branches
    trafo_hv_node: np.ndarray
    trafo_ratio: np.ndarray
    base_p_mw: np.ndarray
    base_q_mvar: np.ndarray
    load_buses: tuple[int, ...]

    @property
    def bus_vn_kv(self) -> np.ndarray:
        return self.node_vn_kv[self.node_of_bus]

    @property
    def n_bus(self) -> int:
        return len(self.bus_index)

    @property
    def n_nodes(self) -> int:
        return len(self.shunt_pu)

    def position(self, bus: int) -> int:
        """Position in the reported bus order of pandapower bus ``bus``."""
        hits = np.flatnonzero(self.bus_index == bus)
        if len(hits) == 0:
            raise FeederError(f"feeder {self.name}: no bus {bus}")
        return int(hits[0])


@dataclass(frozen=True)
class Topology:
    """Parent of every node (``parent[0] == -1``), in an order where parents come first."""

    parent: np.ndarray
    ratio: np.ndarray
    z_pu: np.ndarray


def sweep_matrices(topology: Topology) -> tuple[sparse.csr_matrix, sparse.csr_matrix, np.ndarray]:
    """``(B, B^H diag(z), w)`` of the module docstring, from a parent-first topology."""
    parent, ratio = topology.parent, topology.ratio
    rows, cols, vals = [], [], []
    no_load = np.ones(len(parent), dtype=complex)
    for node in range(len(parent)):
        factor, j = 1.0 + 0j, node
        while j > 0:
            rows.append(j), cols.append(node), vals.append(factor)
            factor /= np.conj(ratio[j])
            j = parent[j]
        rows.append(0), cols.append(node), vals.append(factor)
        no_load[node] = np.conj(factor)
    n = len(parent)
    from scipy import sparse
    backward = sparse.csr_matrix((vals, (rows, cols)), shape=(n, n), dtype=complex)
    forward = (backward.conj().T @ sparse.diags(topology.z_pu)).tocsr()
    return backward, forward, no_load


def check_topology(topology: Topology) -> None:
    """Raise :class:`FeederError` unless every parent precedes its child."""
    parent = topology.parent
    if len(parent) == 0 or parent[0] != -1:
        raise FeederError("topology: node 0 must be the slack (parent -1)")
    bad = np.flatnonzero((parent[1:] < 0) | (parent[1:] >= np.arange(1, len(parent))))
    if len(bad):
        raise FeederError(f"topology: node {bad[0] + 1} has parent {parent[bad[0] + 1]}, "
                          "expected an earlier node")


def fold_sweeps(backward: sparse.csr_matrix, forward: sparse.csr_matrix, shunt_pu: np.ndarray,
                no_load: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Both sweeps as one dense matrix, with the shunt currents solved exactly.

    With ``M = B^H diag(z) B`` a full sweep is ``V = w V0 - M (conj(S/V) + Y V)``; the shunt
    term is linear in ``V``, so ``V = K1 V0 - K conj(S/V)`` with ``A = I + M diag(Y)``,
    ``K = A^-1 M`` and ``K1 = A^-1 w``. Same fixed point, fewer operations per iteration.
    Large feeders (dense matrices too big to be worth it) get ``(None, None)``.
    """
    if len(shunt_pu) > FOLD_MAX_NODES:
        return None, None
    folded = (forward @ backward).toarray()
    system = np.eye(len(shunt_pu)) + folded * shunt_pu[None, :]
    return np.linalg.solve(system, folded), np.linalg.solve(system, no_load)
