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
"""

from simulator.baselines import (
    Baselines, IntervalMarket, MarketClearing, Prices, default_prices, market_outcome,
    run_baselines, settle_profiles,
)
from simulator.battery import BatteryBank, NetPositions, apply_batteries, step_batteries
from simulator.errors import Problem, ProfileError, ScenarioError, SimulatorError
from simulator.mechanisms import (
    MECHANISMS, Comparison, MechanismError, MechanismSetup, compare_mechanisms, comparison_table,
    format_table, scenario_feeder,
)
from simulator.metrics import Metrics, gini, net_cost, per_interval, savings_per_house, score
from simulator.optimum import (
    IntervalSolution, MatchConstraints, Optimum, max_local_match_wh, merit_order,
    solve_interval_lp, solve_optimum,
)
from simulator.outcome import Outcome, settle, trade_arrays
from simulator.profiles import HouseInfo, ProfileSpec, Profiles, build_profiles, compose_profiles
from simulator.report import ScoredRun, print_summary, score_run, summarize, write_run
from simulator.substeps import clear_sky_substeps, substep_readings
from simulator.scenario import FEEDERS, Scenario, load_scenario, scenario_from_dict
from simulator.settings import Faults, Households, Selection, Weights
from simulator.tariffs import Tariffs, TimeFrame
from simulator.trades import RunStats, TradeLog

__all__ = [
    "Baselines", "BatteryBank", "FEEDERS", "Faults", "HouseInfo", "Households",
    "IntervalMarket", "IntervalSolution", "MarketClearing", "MatchConstraints", "Metrics",
    "NetPositions", "Optimum", "Outcome", "Prices", "Problem", "ProfileError", "ProfileSpec",
    "Profiles", "Scenario", "ScenarioError", "Selection", "SimulatorError", "Tariffs",
    "TimeFrame", "Weights", "apply_batteries", "build_profiles", "compose_profiles",
    "default_prices", "gini", "load_scenario", "market_outcome", "max_local_match_wh",
    "merit_order", "net_cost", "per_interval", "run_baselines", "savings_per_house",
    "scenario_from_dict", "score", "settle", "settle_profiles", "solve_interval_lp",
    "solve_optimum", "step_batteries", "trade_arrays",
    "RunStats", "ScoredRun", "TradeLog", "print_summary", "score_run", "summarize", "write_run",
    "MECHANISMS", "Comparison", "MechanismError", "MechanismSetup", "compare_mechanisms",
    "comparison_table", "format_table", "scenario_feeder",
    "clear_sky_substeps", "substep_readings",
]
