"""The market modes side by side: the same scenario traded ex post, in real time and day ahead.

``p2pnode market compare --modes ex_post,real_time,day_ahead`` and ``benchmarks/swarm.py
--modes`` call :func:`compare_modes`: one real swarm per mode on the same profiles (each its own
run directory under ``out_dir``), the rows :data:`MODE_COLUMNS` read from each run's summary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from simulator.errors import SimulatorError
from simulator.scenario import Scenario

__all__ = ["MODE_COLUMNS", "compare_modes", "format_modes"]

MODE_COLUMNS = ("forward_match_ratio", "ahead_match_ratio", "balancing_kwh",
                "delivered_local_kwh", "perfect_foresight_match_kwh", "delivered_share",
                "shortfall_kwh", "imbalance_cost", "trade_duration_s_p50",
                "forecast_skill_next_interval")


def compare_modes(scenario: Scenario, modes: Sequence[str], out_dir: Path, *,
                  progress: bool = False, log: Callable[[str], None] = lambda line: None
                  ) -> dict[str, dict]:
    """Mode -> its row: the :data:`MODE_COLUMNS` of its summary, trades, wall time, audit."""
    from simulator.run import simulate

    unknown = [m for m in modes if m not in ("ex_post", "real_time", "day_ahead")]
    if unknown or not modes:
        raise SimulatorError(f"--modes {','.join(modes)}: choose from ex_post, real_time, "
                             "day_ahead")
    rows = {}
    for mode in modes:
        log(f"[{mode}] trading {scenario.meters} meters ...")
        summary = simulate(dataclasses.replace(
            scenario, market=dataclasses.replace(scenario.market, mode=mode)),
                           Path(out_dir) / mode, mechanisms=(), progress=progress, plots=True)
        extra = summary["extra"]
        rows[mode] = {**{c: extra.get(c) for c in MODE_COLUMNS}, "trades": summary["trades"],
                      "swarm_wall_s": summary["wall_s"],
                      "double_settlements": summary["double_settlements"],
                      "ledgers_valid": summary["ledgers_valid"]}
    return rows


def format_modes(rows: dict[str, dict]) -> str:
    """A plain-text table, one line per mode."""
    head = (f"{'mode':<10} {'match':>7} {'local kWh':>10} {'delivered':>9} {'short kWh':>9} "
            f"{'imbalance':>9} {'dur p50 s':>9} {'skill':>6} {'trades':>6}  ledgers")

    def number(value, spec: str) -> str:
        return format(value, spec) if isinstance(value, (int, float)) else "-"

    lines = [head]
    for mode, r in rows.items():
        lines.append(
            f"{mode:<10} {number(r['forward_match_ratio'], '7.1%')} "
            f"{number(r['delivered_local_kwh'], '10.2f')} {number(r['delivered_share'], '9.1%')} "
            f"{number(r['shortfall_kwh'], '9.2f')} {number(r['imbalance_cost'], '9.2f')} "
            f"{number(r['trade_duration_s_p50'], '9.0f')} "
            f"{number(r['forecast_skill_next_interval'], '6.2f')} {r['trades']:>6}  "
            f"{'valid' if r['ledgers_valid'] else 'INVALID'}, {r['double_settlements']} double")
    return "\n".join(lines)
