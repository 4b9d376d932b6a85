"""Cross-check of the sweep against pandapower's Newton-Raphson ``runpp`` on the same loads."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from optimizer.powerflow.feeder import Feeder
from optimizer.powerflow.sweep import PowerFlowResult, SweepOptions, solve

PANDAPOWER_TOL_MVA = 1e-11


@dataclass(frozen=True)
class Comparison:
    """Largest differences between the sweep and pandapower for one step."""

    max_dv_pu: float           # voltage magnitude
    max_dv_complex_pu: float   # complex voltage (angles included)
    loss_sweep_mw: float
    loss_pandapower_mw: float
    sweep: PowerFlowResult


def with_net_loads(net, feeder: Feeder, p_mw: np.ndarray, q_mvar: np.ndarray):
    """A copy of ``net`` whose loads and sgens are replaced by one load per bus."""
    import pandapower as pp

    out = copy.deepcopy(net)
    out.load.drop(out.load.index, inplace=True)
    out.sgen.drop(out.sgen.index, inplace=True)
    for bus, p, q in zip(feeder.bus_index, p_mw, q_mvar):
        if p or q:
            pp.create_load(out, int(bus), p_mw=float(p), q_mvar=float(q))
    return out


def run_pandapower(net) -> None:
    """``runpp`` tight enough to compare at 1e-9 p.u."""
    import pandapower as pp

    pp.runpp(net, numba=False, tolerance_mva=PANDAPOWER_TOL_MVA, calculate_voltage_angles=True)


def compare_with_pandapower(net, feeder: Feeder, p_mw=None, q_mvar=None,
                            options: SweepOptions = SweepOptions()) -> Comparison:
    """Solve one step with both; ``p_mw``/``q_mvar`` default to the network's own loads."""
    p = feeder.base_p_mw if p_mw is None else np.asarray(p_mw, dtype=float)
    q = feeder.base_q_mvar if q_mvar is None else np.asarray(q_mvar, dtype=float)
    reference = with_net_loads(net, feeder, p, q)
    run_pandapower(reference)
    res = reference.res_bus.loc[feeder.bus_index]
    v_pp = res.vm_pu.to_numpy() * np.exp(1j * np.deg2rad(res.va_degree.to_numpy()))
    sweep = solve(feeder, p, q, options)
    v_bfs = sweep.vm_pu[0] * np.exp(1j * np.deg2rad(sweep.va_degree[0]))
    loss_pp = float(reference.res_line.pl_mw.sum() + reference.res_trafo.pl_mw.sum())
    return Comparison(
        max_dv_pu=float(np.max(np.abs(sweep.vm_pu[0] - res.vm_pu.to_numpy()))),
        max_dv_complex_pu=float(np.max(np.abs(v_bfs - v_pp))),
        loss_sweep_mw=float(sweep.loss_mw[0]), loss_pandapower_mw=loss_pp, sweep=sweep,
    )
