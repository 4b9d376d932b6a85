"""Load-flow benchmark: accuracy against pandapower, one-step speed-up, a batched year.

    python benchmarks/powerflow.py [--quick] [--json PATH]

Both feeders of :data:`optimizer.powerflow.FEEDERS` (IEEE ``case33bw`` and the Kerber LV village
feeder with its transformer). Everything is measured in this run, side by side:

* ``max_dv_pu``: largest ``|V_sweep - V_pandapower|`` (complex, so angles count) over both feeders
  on their own loads, on a reverse-flow case (PV export at every other house) and on sampled steps
  of the year below; pandapower's ``runpp`` is Newton-Raphson at ``tolerance_mva=1e-11``.
* ``speedup_vs_pandapower``: time of one default ``pandapower.runpp`` over one single-step
  ``optimizer.powerflow.solve`` on the same loads (the smaller of the two feeders' ratios);
  pandapower runs without numba (not installed), as a user of this project would run it. BLAS is
  limited to one thread for both (small products on a shared machine are otherwise erratic).
* ``steps_per_s``: a year of 15-minute steps (35 040) solved as one batched call on the LV feeder
  (``steps_per_s_case33bw`` for the other), synthetic house profiles: a daily load shape with
  seeded noise and PV export around noon.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optimizer.powerflow import (  # noqa: E402
    FEEDERS, compare_with_pandapower, feeder_from_pandapower, pandapower_net, solve,
)
from optimizer.powerflow.validate import with_net_loads  # noqa: E402
from report import emit  # noqa: E402

YEAR_STEPS = 35040
LV_FEEDER = "kerber_dorfnetz"


def year_profile(feeder, steps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    hour = (np.arange(steps) % 96) / 4.0
    day = np.arange(steps) // 96
    shape = 0.45 + 0.35 * np.exp(-((hour - 19.0) / 2.5) ** 2) + 0.2 * np.exp(-((hour - 7.5) / 1.5) ** 2)
    season = 1.0 + 0.2 * np.cos(2 * np.pi * day / 365.0)
    noise = rng.uniform(0.6, 1.4, (steps, feeder.n_bus))
    p = feeder.base_p_mw[None, :] * (shape * season)[:, None] * noise
    summer = 1.0 - 0.2 * np.cos(2 * np.pi * day / 365.0)  # day 0 is 1 January
    sun = np.clip(np.sin(np.pi * (hour - 6.0) / 12.0), 0, None) * summer
    pv = np.zeros(feeder.n_bus)
    pv[list(feeder.load_buses[::2])] = 1.5 * feeder.base_p_mw.max()
    p -= sun[:, None] * pv[None, :] * rng.uniform(0.3, 1.0, (steps, 1))
    q = feeder.base_q_mvar[None, :] * (shape * season)[:, None] * noise
    return p, q


def time_per_call(fn, min_calls: int, min_s: float) -> float:
    fn()  # warm-up
    calls, started = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - started < min_s:
        fn()
        calls += 1
    return (time.perf_counter() - started) / calls


def bench_feeder(name: str, quick: bool, rng: np.random.Generator) -> dict:
    import pandapower as pp

    net = pandapower_net(name)
    feeder = feeder_from_pandapower(net, name)
    dv = [compare_with_pandapower(net, feeder).max_dv_complex_pu]
    export = feeder.base_p_mw.copy()
    export[list(feeder.load_buses[::2])] -= 2.5 * feeder.base_p_mw.max()
    dv.append(compare_with_pandapower(net, feeder, export, feeder.base_q_mvar).max_dv_complex_pu)

    reference = with_net_loads(net, feeder, feeder.base_p_mw, feeder.base_q_mvar)
    t_pp = time_per_call(lambda: pp.runpp(reference, numba=False), 5 if quick else 20, 1.0 if quick else 4.0)
    t_sweep = time_per_call(lambda: solve(feeder, feeder.base_p_mw, feeder.base_q_mvar),
                            200, 0.5 if quick else 2.0)

    p, q = year_profile(feeder, YEAR_STEPS, rng)
    started = time.perf_counter()
    year = solve(feeder, p, q)
    t_year = time.perf_counter() - started
    for step in rng.choice(YEAR_STEPS, 2 if quick else 6, replace=False):
        dv.append(compare_with_pandapower(net, feeder, p[step], q[step]).max_dv_complex_pu)
    return {
        f"max_dv_pu_{name}": max(dv),
        f"pandapower_ms_{name}": t_pp * 1e3,
        f"sweep_us_{name}": t_sweep * 1e6,
        f"speedup_vs_pandapower_{name}": t_pp / t_sweep,
        f"steps_per_s_{name}": YEAR_STEPS / t_year,
        f"year_converged_{name}": bool(year.converged.all()),
        f"year_min_vm_pu_{name}": float(year.vm_pu.min()),
        f"year_max_vm_pu_{name}": float(year.vm_pu.max()),
        f"year_loss_mwh_{name}": float(year.loss_mw.sum() * 0.25),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (under a minute)")
    parser.add_argument("--json", type=Path, help="write the results as a flat JSON object")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(2024)
    results: dict[str, float | bool] = {}
    with threadpool_limits(limits=1):
        for name in FEEDERS:
            results.update(bench_feeder(name, args.quick, rng))
    results["max_dv_pu"] = max(results[f"max_dv_pu_{n}"] for n in FEEDERS)
    results["speedup_vs_pandapower"] = min(results[f"speedup_vs_pandapower_{n}"] for n in FEEDERS)
    results["steps_per_s"] = results[f"steps_per_s_{LV_FEEDER}"]
    results["year_steps"] = YEAR_STEPS
    emit(dict(sorted(results.items())), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
