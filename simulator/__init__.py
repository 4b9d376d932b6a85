"""The simulator's data, scenarios and scoring (SPEC "The simulator", SRS 3.2.8).

* Scenarios: :func:`load_scenario` / :meth:`Scenario.default` (:mod:`simulator.scenario`), with
  :class:`Tariffs`, :class:`Households`, :class:`Weights`, :class:`Selection`, :class:`Faults`.
* Real data: :func:`build_profiles` turns a :class:`ProfileSpec` (``scenario.profile_spec()``)
  into :class:`Profiles`: BDEW household load (demandlib), PV from pvlib's TMY3 files, optional
  batteries, cached on disk (:mod:`simulator.profiles`, :mod:`simulator.load`,
  :mod:`simulator.pv`, :mod:`simulator.battery`, :mod:`simulator.cache`).
* Baselines on the same data: :func:`run_baselines` (no trading, the exact optimum of
  :mod:`simulator.optimum`, and any :class:`IntervalMarket` such as the double auction of
  ``optimizer.markets``).
* Scoring: a run's trades (:func:`trade_arrays`) become an :class:`Outcome`
  (:func:`settle_profiles`), scored by
  :func:`score` into :class:`Metrics` (:mod:`simulator.metrics`).

* Sub-interval readings: :func:`substep_readings` (:mod:`simulator.substeps`) spreads each interval's
  whole Wh over one-minute sub-steps (clouds, appliance spikes), summing exactly.

The swarm runner that drives real nodes is :mod:`simulator.swarm`; :mod:`simulator.run` runs a
scenario end to end into its run directory (:mod:`simulator.report`).

Names are imported on first use (PEP 562), so importing ``simulator.cli`` (how the ``p2pnode``
command finds the simulator's subcommands) does not load pandas, pvlib or scipy.
"""

import importlib

_LAZY = {
    "simulator.baselines": (
        "Baselines", "IntervalMarket", "MarketClearing", "Prices", "default_prices",
        "market_outcome", "run_baselines", "settle_profiles",
    ),
    "simulator.battery": (
        "BatteryBank", "NetPositions", "apply_batteries", "step_batteries",
    ),
    "simulator.errors": (
        "Problem", "ProfileError", "ScenarioError", "SimulatorError",
    ),
    "simulator.mechanisms": (
        "MECHANISMS", "Comparison", "MechanismError", "MechanismSetup", "compare_mechanisms",
        "comparison_table", "format_table", "scenario_feeder",
    ),
    "simulator.metrics": (
        "Metrics", "gini", "net_cost", "per_interval", "savings_per_house", "score",
    ),
    "simulator.optimum": (
        "IntervalSolution", "MatchConstraints", "Optimum", "max_local_match_wh", "merit_order",
        "solve_interval_lp", "solve_optimum",
    ),
    "simulator.outcome": (
        "Outcome", "settle", "trade_arrays",
    ),
    "simulator.profiles": (
        "HouseInfo", "ProfileSpec", "Profiles", "build_profiles", "compose_profiles",
    ),
    "simulator.report": (
        "ScoredRun", "print_summary", "score_run", "summarize", "write_run",
    ),
    "simulator.scenario": (
        "FEEDERS", "Scenario", "load_scenario", "scenario_from_dict",
    ),
    "simulator.substeps": (
        "clear_sky_substeps", "substep_readings",
    ),
    "simulator.settings": (
        "Faults", "Households", "Selection", "Weights",
    ),
    "simulator.tariffs": (
        "Tariffs", "TimeFrame",
    ),
    "simulator.trades": (
        "RunStats", "TradeLog",
    ),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str):
    """Import the module that defines ``name`` on first use (see the module docstring)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Baselines", "BatteryBank", "FEEDERS", "Faults", "HouseInfo", "Households",
    "IntervalMarket", "IntervalSolution", "MarketClearing", "MatchConstraints", "Metrics",
    "NetPositions", "Optimum", "Outcome", "Prices", "Problem", "ProfileError", "ProfileSpec",
    "Profiles", "Scenario", "ScenarioError", "Selection", "SimulatorError", "Tariffs",
    "TimeFrame", "Weights", "apply_batteries", "build_profiles", "compose_profiles",
    "default_prices", "gini", "load_scenario", "market_outcome", "max_local_match_wh",
    "merit_order", "net_cost", "per_interval", "run_baselines", "savings_per_house",
    "scenario_from_dict", "score", "settle", "settle_profiles", "solve_interval_lp",
    "solve_optimum", "step_batteries", "trade_arrays", "clear_sky_substeps", "substep_readings",
    "RunStats", "ScoredRun", "TradeLog", "print_summary", "score_run", "summarize", "write_run",
    "MECHANISMS", "Comparison", "MechanismError", "MechanismSetup", "compare_mechanisms",
    "comparison_table", "format_table", "scenario_feeder",
    "clear_sky_substeps", "substep_readings",
]
