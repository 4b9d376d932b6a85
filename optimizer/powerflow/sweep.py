"""Backward-forward sweep load flow, vectorised over many time steps.

Each iteration computes the current every node draws from the voltages of the previous one
(``J = conj(S / V) + Y_shunt V``), sums them up the tree (backward sweep, ``I = B @ J``) and
walks the voltage drops down from the slack (forward sweep, ``V = w V_slack - B^H (z I)``); see
:mod:`optimizer.powerflow.feeder`. Time steps are columns of one matrix, so a year of 15-minute
steps is a handful of sparse matrix products. For a few steps the two sweeps and the shunt
currents are folded into one dense matrix (:func:`optimizer.powerflow.feeder.fold_sweeps`: the
same fixed point, less call overhead).

Inputs are net loads per bus, MW and MVAr, load positive and generation negative, shaped
``(n_bus,)`` for one step or ``(steps, n_bus)``; bus order is :attr:`Feeder.bus_index`.
Non-convergence is a result (:attr:`PowerFlowResult.converged`), not an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.powerflow.errors import PowerFlowError
from optimizer.powerflow.feeder import Feeder

SQRT3 = np.sqrt(3.0)
DENSE_MAX_STEPS = 16  # up to this many steps per batch, use the folded dense matrix


@dataclass(frozen=True)
class SweepOptions:
    """``tol_pu``: stop when no voltage moved more than this between two iterations;
    ``batch_steps``: time steps solved together (bounds memory: ~20 complex arrays of
    ``nodes x batch_steps``)."""

    tol_pu: float = 1e-10
    max_iter: int = 100
    batch_steps: int = 4096

    def __post_init__(self) -> None:
        if not self.tol_pu > 0:
            raise PowerFlowError(f"tol_pu: must be > 0, got {self.tol_pu}")
        if self.max_iter < 1:
            raise PowerFlowError(f"max_iter: must be >= 1, got {self.max_iter}")
        if self.batch_steps < 1:
            raise PowerFlowError(f"batch_steps: must be >= 1, got {self.batch_steps}")


@dataclass(frozen=True)
class VoltageLimits:
    """Allowed bus voltage band in per unit (EN 50160 style +-5 % by default)."""

    v_min_pu: float = 0.95
    v_max_pu: float = 1.05

    def __post_init__(self) -> None:
        if not 0 < self.v_min_pu < self.v_max_pu:
            raise PowerFlowError(f"v_min_pu/v_max_pu: need 0 < v_min_pu < v_max_pu, "
                                 f"got {self.v_min_pu}, {self.v_max_pu}")


@dataclass(frozen=True, eq=False)
class PowerFlowResult:
    """Load flow of ``steps`` time steps; per-bus arrays are ``(steps, n_bus)``.

    ``loss_mw`` is every series and shunt loss of lines and transformers (the transformer iron
    losses included): slack active power minus the net load. ``line_current_ka`` is the series
    current of each line (``Feeder.lines`` order), ``*_loading_percent`` against its rating;
    transformer loading is the apparent power on the high-voltage side over ``sn_mva``.
    """

    vm_pu: np.ndarray
    va_degree: np.ndarray
    p_slack_mw: np.ndarray
    q_slack_mvar: np.ndarray
    loss_mw: np.ndarray
    line_current_ka: np.ndarray
    line_loading_percent: np.ndarray
    trafo_loading_percent: np.ndarray
    converged: np.ndarray
    iterations: int

    def outside_limits(self, limits: VoltageLimits = VoltageLimits()) -> np.ndarray:
        """Boolean ``(steps, n_bus)``: the bus voltage is outside ``limits``."""
        return (self.vm_pu < limits.v_min_pu) | (self.vm_pu > limits.v_max_pu)

    def within_limits(self, limits: VoltageLimits = VoltageLimits()) -> np.ndarray:
        """Boolean ``(steps,)``: converged and every bus inside ``limits``."""
        return self.converged & ~self.outside_limits(limits).any(axis=1)


def solve(feeder: Feeder, p_mw, q_mvar=None, options: SweepOptions = SweepOptions()) -> PowerFlowResult:
    """Load flow of ``feeder`` with net loads ``p_mw`` (and ``q_mvar``, default zero) per bus."""
    p = _as_steps(p_mw, "p_mw", feeder.n_bus)
    q = np.zeros_like(p) if q_mvar is None else _as_steps(q_mvar, "q_mvar", feeder.n_bus)
    if q.shape != p.shape:
        raise PowerFlowError(f"q_mvar: shape {q.shape} differs from p_mw {p.shape}")
    s_bus = (p + 1j * q) / feeder.base_mva
    parts = [_solve_batch(feeder, s_bus[start:start + options.batch_steps], options)
             for start in range(0, len(s_bus), options.batch_steps)]
    return _concatenate(parts)


def _as_steps(values, name: str, n_bus: int) -> np.ndarray:
    try:
        array = np.array(values, dtype=float, ndmin=1)
    except (TypeError, ValueError) as exc:
        raise PowerFlowError(f"{name}: not numeric ({exc})") from None
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != n_bus or array.shape[0] == 0:
        raise PowerFlowError(f"{name}: expected shape (steps, {n_bus}) or ({n_bus},), "
                             f"got {np.shape(values)}")
    if not np.isfinite(array).all():
        raise PowerFlowError(f"{name}: contains NaN or infinity")
    return array


def _node_loads(feeder: Feeder, s_bus: np.ndarray) -> np.ndarray:
    s = np.zeros((feeder.n_nodes, s_bus.shape[0]), dtype=complex)
    s[feeder.node_of_bus] = s_bus.T  # one node per bus
    return s


def _solve_batch(feeder: Feeder, s_bus: np.ndarray, options: SweepOptions) -> PowerFlowResult:
    s = _node_loads(feeder, s_bus)
    dense = s.shape[1] <= DENSE_MAX_STEPS and feeder.folded is not None
    iterate = _dense_iteration if dense else _sparse_iteration
    v, moved, iterations = iterate(feeder, s, options)
    with np.errstate(all="ignore"):
        currents = feeder.backward @ (np.conj(s / v) + feeder.shunt_pu[:, None] * v)
    converged = np.isfinite(moved) & (moved < options.tol_pu)
    return _result(feeder, s_bus, v, currents, converged, iterations)


def _sparse_iteration(feeder: Feeder, s: np.ndarray, options: SweepOptions):
    """The two sweeps as sparse products; shunt currents from the previous iterate."""
    v_no_load = (feeder.no_load_factor * feeder.v_slack_pu)[:, None]
    shunt, backward, forward = feeder.shunt_pu[:, None], feeder.backward, feeder.forward
    v, moved, iterations = np.repeat(v_no_load, s.shape[1], axis=1), np.full(s.shape[1], np.inf), 0
    with np.errstate(all="ignore"):
        while iterations < options.max_iter and not (moved < options.tol_pu).all():
            v_next = v_no_load - forward @ (backward @ (np.conj(s / v) + shunt * v))
            moved = np.abs(v_next - v).max(axis=0)
            v, iterations = v_next, iterations + 1
    return v, moved, iterations


def _dense_iteration(feeder: Feeder, s: np.ndarray, options: SweepOptions):
    """The folded form of :func:`optimizer.powerflow.feeder.fold_sweeps` (few steps)."""
    v_start = (feeder.folded_no_load * feeder.v_slack_pu)[:, None]
    folded = feeder.folded
    v, moved, iterations = np.repeat(v_start, s.shape[1], axis=1), np.full(s.shape[1], np.inf), 0
    with np.errstate(all="ignore"):
        while iterations < options.max_iter and not (moved < options.tol_pu).all():
            v_next = v_start - folded @ np.conj(s / v)
            moved = np.abs(v_next - v).max(axis=0)
            v, iterations = v_next, iterations + 1
    return v, moved, iterations


def _result(feeder: Feeder, s_bus, v, currents, converged, iterations) -> PowerFlowResult:
    s_slack = feeder.v_slack_pu * np.conj(currents[0]) * feeder.base_mva
    v_bus = v[feeder.node_of_bus].T
    lines, trafos = feeder.lines, feeder.trafos
    line_ka = np.abs(currents[lines.node]).T * feeder.base_mva / (
        SQRT3 * feeder.node_vn_kv[lines.node])
    hv_current = currents[trafos.node] / np.conj(feeder.trafo_ratio)[:, None]
    s_hv = v[feeder.trafo_hv_node] * np.conj(hv_current) * feeder.base_mva
    return PowerFlowResult(
        vm_pu=np.abs(v_bus), va_degree=np.degrees(np.angle(v_bus)),
        p_slack_mw=s_slack.real, q_slack_mvar=s_slack.imag,
        loss_mw=s_slack.real - s_bus.real.sum(axis=1) * feeder.base_mva,
        line_current_ka=line_ka, line_loading_percent=100 * line_ka / lines.rating,
        trafo_loading_percent=(100 * np.abs(s_hv) / trafos.rating[:, None]).T,
        converged=converged, iterations=iterations,
    )


def _concatenate(parts: list[PowerFlowResult]) -> PowerFlowResult:
    if len(parts) == 1:
        return parts[0]
    fields = {name: np.concatenate([getattr(p, name) for p in parts])
              for name in PowerFlowResult.__dataclass_fields__ if name != "iterations"}
    return PowerFlowResult(**fields, iterations=max(p.iterations for p in parts))
