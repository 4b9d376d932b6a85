"""Radial feeders and their backward-forward sweep load flow.

    feeder = load_feeder("case33bw")              # or feeder_from_pandapower(net)
    result = solve(feeder, p_mw, q_mvar)          # (steps, n_bus) net loads, MW / MVAr
    result.vm_pu, result.loss_mw, result.within_limits(VoltageLimits())

Modules: :mod:`~optimizer.powerflow.feeder` (the sweep matrices),
:mod:`~optimizer.powerflow.pandapower_feeder` (building from pandapower),
:mod:`~optimizer.powerflow.sweep` (the solver), :mod:`~optimizer.powerflow.catalog` (named
feeders), :mod:`~optimizer.powerflow.validate` (cross-check against pandapower).
"""

from optimizer.powerflow.catalog import FEEDERS, load_feeder, pandapower_net
from optimizer.powerflow.errors import FeederError, PowerFlowError
from optimizer.powerflow.feeder import Branches, Feeder
from optimizer.powerflow.pandapower_feeder import feeder_from_pandapower
from optimizer.powerflow.sweep import PowerFlowResult, SweepOptions, VoltageLimits, solve
from optimizer.powerflow.validate import Comparison, compare_with_pandapower

__all__ = [
    "Branches", "Comparison", "FEEDERS", "Feeder", "FeederError", "PowerFlowError",
    "PowerFlowResult", "SweepOptions", "VoltageLimits", "compare_with_pandapower",
    "feeder_from_pandapower", "load_feeder", "pandapower_net", "solve",
]
