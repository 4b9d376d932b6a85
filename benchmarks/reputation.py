"""Does using sellers' track records pay?  Informed vs blind selection with overselling sellers.

    python benchmarks/reputation.py [--quick] [--json PATH] [--plot PATH]

The same day, seed and houses (``Scenario.default()``, real-time market, ``[households]
overselling_share = 0.1``: one in ten sellers offers ``overselling_factor`` times its forecast
surplus, :mod:`simulator.strategic`), run twice with real nodes (:func:`simulator.swarm.run_swarm`):

* **informed**: the default weights (transaction duration C4 = quality C5 = 1), so the ranking
  uses the predicted quality and duration of each seller, which the predictor derives from its
  verified record (:mod:`p2pnode.reputation`), and a buyer that weighs quality buys from a
  seller at most the share of its offer its record says arrives (of its trades at the offer's
  price or dearer: :meth:`~p2pnode.reputation.Reputation.expected_share`), passes over sellers far
  below the median candidate (:func:`p2pnode.ranking.reliable_records`) and first ranks
  sellers drawn in proportion to the energy their records say arrives
  (:func:`p2pnode.ranking.spread_records`: the feeder's demand spread over the offers, not
  every buyer on the same few sellers);
* **blind**: C4 = C5 = 0 (``[weights] transaction_duration = transaction_quality = 0``); the
  records are still fetched and verified (and the new-key share cap applies), they just do not
  weigh in the choice.

Reported: ``shortfall_kwh_*`` (agreed minus delivered energy over all trades),
``delivered_share_*`` (delivered / agreed), ``buyer_imbalance_cost_*`` (the imbalance charges
of the shortfalls: what the buyers had to buy from the grid instead, which the sellers pay them,
in currency units), ``shortfall_reduction`` = 1 - informed / blind, the shortfall split between
the overselling and the honest sellers (``strategic_*``, ``honest_*``).  ``--repeats N`` runs N
pairs (scenario seeds +0 .. N-1; each pair the same day, seed and roles): every key is the mean
over the pairs, ``shortfall_reduction`` is pooled (1 - Σ informed / Σ blind) and
``shortfall_reduction_runs`` lists each pair's.  The predictors trained on
the ledgers: the informed runs' ledgers (every DELIVERY settlement, :mod:`models.ledger_data`)
are split by day (the first ``train_days`` days train, the last one is held out) and evaluated
against the naive baselines (training mean, the seller's past average); ``quality_r2_ledger``,
``duration_r2_ledger`` and the best baseline of each (``*_baseline``) on the held-out day.

``--quick``: 30 meters, hourly intervals, three days per run (the predictors train on the
informed run's days 1-2 and are scored on its day 3; the shortfall numbers are over all days in
both runs; with two days the predictors had one training day, which could not show them a
cloudier day).  The two swarms of a pair run at once (threads, each with its node
processes).  One pair took 66 s of wall time and 122 s of CPU (``wall_s``, ``cpu_s``: this
process and its node processes) on the 2-core machine with nothing else running (before the
signature memo and running the pair at once: 170-210 s of CPU, 230-540 s of wall time on the
shared machine).  ``--meters``, ``--interval-s``,
``--days``, ``--start-date`` and ``--factor`` override the scenario (e.g. a run of clear days,
``--start-date 2023-07-08``), ``--keep DIR`` keeps the runs' ledgers.  The full run: 100 meters,
15-minute intervals (not run: hours on this machine).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import emit  # noqa: E402

PROCESSES = 2
ACCELERATION = 1e6
OVERSELLING_SHARE = 0.1
OVERSELLING_FACTOR = 3.0
QUICK_METERS, FULL_METERS = 30, 100
QUICK_INTERVAL_S = 3600
DAYS = 3
DEFAULT_PLOT = ROOT / "docs" / "reputation_choices.png"


def scenario_for(meters: int, informed: bool, interval_s: int = 900, days: int = DAYS,
                 start_date=None, factor: float = OVERSELLING_FACTOR, seed_offset: int = 0):
    from simulator import Scenario
    base = Scenario.default()
    base = dataclasses.replace(base, seed=base.seed + seed_offset)
    if start_date is not None:
        base = dataclasses.replace(base, start_date=start_date)
    weights = base.weights if informed else dataclasses.replace(
        base.weights, transaction_duration=0.0, transaction_quality=0.0)
    households = dataclasses.replace(base.households, overselling_share=OVERSELLING_SHARE,
                                     overselling_factor=factor)
    return dataclasses.replace(base, name="informed" if informed else "blind", meters=meters,
                               days=days, interval_s=interval_s, processes=PROCESSES,
                               acceleration=ACCELERATION,
                               weights=weights, households=households)


def one_run(meters: int, informed: bool, run_dir: Path, progress: bool, **options):
    from simulator.run import forward_stats, run_profiles, within_deficits
    from simulator.swarm import run_swarm

    scenario = scenario_for(meters, informed, **options)
    profiles, history = run_profiles(scenario)
    swarm = run_swarm(scenario, profiles, run_dir, processes=PROCESSES, progress=progress,
                      history=history)
    stats = forward_stats(swarm, within_deficits(swarm.trades, profiles), swarm.optimum_wh)
    return scenario, swarm, stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_METERS} meters")
    parser.add_argument("--json", type=Path, help="write the results as a flat JSON object")
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT,
                        help=f"where the buyers' choices over the day go (default {DEFAULT_PLOT})")
    parser.add_argument("--progress", action="store_true", help="progress bars on stderr")
    parser.add_argument("--meters", type=int, help="override the meter count")
    parser.add_argument("--interval-s", type=int, help="override the interval length")
    parser.add_argument("--days", type=int, help="override the number of days")
    parser.add_argument("--start-date", type=date.fromisoformat, help="override the first day")
    parser.add_argument("--factor", type=float, help="override the overselling factor")
    parser.add_argument("--keep", type=Path, help="keep the runs' directories (ledgers) here")
    parser.add_argument("--repeats", type=int, default=1,
                        help="pairs of runs, the scenario seed +0, +1, ... (default 1)")
    args = parser.parse_args()
    from simulator.strategic import choice_shift, plot_choice_shift

    meters = args.meters or (QUICK_METERS if args.quick else FULL_METERS)
    options = {"interval_s": args.interval_s or (QUICK_INTERVAL_S if args.quick else 900),
               "days": args.days or DAYS, "start_date": args.start_date,
               "factor": args.factor or OVERSELLING_FACTOR}
    started = time.perf_counter()
    results: dict = {"meters": meters, "days": options["days"],
                     "interval_s": options["interval_s"], "repeats": args.repeats,
                     "overselling_share": OVERSELLING_SHARE,
                     "overselling_factor": options["factor"]}
    runs, shifts, ledgers = [], {}, []
    with tempfile.TemporaryDirectory(prefix="reputation-") as scratch:
        tmp = Path(args.keep or scratch)
        for repeat in range(args.repeats):
            run: dict = {}
            # the pair at once: each swarm waits on its own nodes' round trips part of the time
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                pair = {informed: pool.submit(
                    one_run, meters, informed,
                    tmp / f"{repeat}-{'informed' if informed else 'blind'}", args.progress,
                    seed_offset=repeat, **options) for informed in (False, True)}
            for informed in (False, True):
                label = "informed" if informed else "blind"
                scenario, swarm, stats = pair[informed].result()
                run.update(mode_results(label, swarm, stats))
                if repeat == 0:
                    shifts[label] = choice_shift(swarm.trades, swarm.roles, scenario.intervals,
                                                 per_bin=max(1, 7200 // scenario.interval_s))
                if informed:
                    ledgers += list(swarm.ledger_paths)
            run["shortfall_reduction"] = round(
                1 - run["shortfall_kwh_informed"] / run["shortfall_kwh_blind"], 4) \
                if run["shortfall_kwh_blind"] else 0.0
            print(f"seed {scenario.seed}: {run}", file=sys.stderr, flush=True)
            runs.append(run)
        for key in runs[0]:
            if key != "shortfall_reduction":
                results[key] = round(sum(r[key] for r in runs) / len(runs), 4)
        blind = sum(r["shortfall_kwh_blind"] for r in runs)
        results["shortfall_reduction"] = round(
            1 - sum(r["shortfall_kwh_informed"] for r in runs) / blind, 4) if blind else 0.0
        results["shortfall_reduction_runs"] = [r["shortfall_reduction"] for r in runs]
        results.update(ledger_predictors(ledgers, scenario))
    plot_choice_shift(shifts, args.plot, options["interval_s"], population_share=None)
    results["plot"] = str(args.plot.relative_to(ROOT) if args.plot.is_relative_to(ROOT)
                          else args.plot)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    results["cpu_s"] = round(sum(u.ru_utime + u.ru_stime for u in used), 1)
    emit(results, args.json)
    return 0


def mode_results(label: str, swarm, stats: dict) -> dict:
    """One run's numbers, keys suffixed with ``label`` (blind / informed)."""
    from simulator.strategic import seller_rows

    rows = seller_rows(swarm.trades, swarm.roles)
    strategic = [r for r in rows if r["role"] != "honest"]
    honest = [r for r in rows if r["role"] == "honest"]

    def share(group):
        return round(sum(r["delivered_kwh"] for r in group)
                     / max(sum(r["agreed_kwh"] for r in group), 1e-9), 4)

    def short(group):
        return round(sum(r["agreed_kwh"] - r["delivered_kwh"] for r in group), 3)

    out = {"shortfall_kwh": stats["shortfall_kwh"], "delivered_share": stats["delivered_share"],
           "buyer_imbalance_cost": stats["imbalance_cost"],
           "local_match_kwh": stats["delivered_local_kwh"],
           "audit_problems": len(swarm.audit_problems),
           "strategic_sellers": len(swarm.roles),
           "strategic_delivered_share": share(strategic),
           "strategic_agreed_kwh": round(sum(r["agreed_kwh"] for r in strategic), 3),
           "strategic_shortfall_kwh": short(strategic),
           "honest_shortfall_kwh": short(honest), "honest_delivered_share": share(honest),
           "records_rejected": sum(v for k, v in swarm.counters.items()
                                   if k.startswith("record_rejected_"))}
    return {f"{key}_{label}": value for key, value in out.items()}


def ledger_predictors(ledgers: list[Path], scenario) -> dict:
    """Train on the ledgers' first days, evaluate on the last (see the module doc)."""
    from models.ledger_data import evaluate_by_day, rows_from_ledgers

    rows = rows_from_ledgers(ledgers, interval_s=scenario.interval_s)
    report = evaluate_by_day(rows, seed=scenario.seed)
    return {"ledger_rows": len(rows), **report}


if __name__ == "__main__":
    sys.exit(main())
