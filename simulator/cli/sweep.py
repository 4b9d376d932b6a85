"""``p2pnode sweep``: many real swarms over a grid, random or NSGA-II search of parameters."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from p2pnode.errors import ConfigError

EPILOG = """\
sweep file (TOML; see examples/sweep.toml and simulator/sweep_spec.py for every key):
  base = "quickstart.toml"        scenario every point starts from (relative to the file)
  method = "grid"                 "grid" | "random" (samples = N) | "nsga2" (population,
                                  generations)
  repeats = 1                     seeds per parameter set;  workers = all cores by default
  [fixed]       meters = 24       dotted scenario keys set on every point
  [parameters]  "weights.trade_surplus" = [0.0, 1.0, 3.0]     values, or {low = 0, high = 2}
  [objectives]  local_match_ratio = "max"   messages_per_trade = "min"
  [cluster]     engine = "dask", address = "tcp://host:8786"   (or engine = "ray")

output: DIR/results.csv (+ results.parquet), sensitivity.png, pareto.png, best.toml,
DIR/points/<id>/ (each run's directory). Rerunning into DIR skips finished runs; a DIR of
another sweep is refused.

exit status: 0 every run ok with valid ledgers; 1 some run failed or had invalid ledgers or a
double settlement; 2 bad sweep file, scenario or output directory."""


def register(sub) -> None:
    parser = sub.add_parser(
        "sweep", help="run many real swarms over a grid/random/NSGA-II search of parameters",
        description="Run one real swarm (simulate) per point of a parameter sweep over the "
                    "scenario's six weights and other keys, in parallel on all cores (or on a "
                    "Dask or Ray cluster), collect every run's summary metrics in one table, "
                    "plot each parameter against each objective and the Pareto front, and "
                    "write the best configuration back as a scenario file.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path, help="sweep TOML file")
    parser.add_argument("--out", type=Path, default=None,
                        help="sweep directory (default: runs/sweep-<sweep file name>); "
                             "rerunning into it resumes")
    parser.add_argument("--workers", type=int, default=None,
                        help="points run at once on this machine (default: the file's "
                             "`workers`, else every core); ignored on a cluster")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the file, list the points (for nsga2: the first "
                             "generation) and exit without running anything")
    parser.add_argument("--top", type=int, default=10, help="configurations to print (10)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_sweep)


def _sweep(args) -> int:
    from simulator import SimulatorError
    from simulator.sweep import load_sweep, plan, run_sweep

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: must be at least 1")
    try:
        spec = load_sweep(args.sweep, workers=args.workers)
        points = plan(spec)
    except SimulatorError as exc:
        raise ConfigError(str(exc)) from None
    if args.dry_run:
        _list(spec, points)
        return 0
    out = args.out or Path("runs") / f"sweep-{args.sweep.stem}"
    started = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {line}", file=sys.stderr, flush=True)

    try:
        result = run_sweep(spec, out, progress=not args.no_progress, log=log)
    except SimulatorError as exc:
        raise ConfigError(str(exc)) from None
    print(f"{result.ran} run(s) now, {result.skipped} finished before, {result.failed} failed; "
          f"{len(result.table)} in the table")
    print(result.top(args.top))
    plots = [str(out / name) for name in ("sensitivity.png", "pareto.png")
             if (out / name).exists()]
    print(f"\nTable: {out / 'results.csv'}   Plots: {', '.join(plots) or 'none'}")
    if result.best_point is not None:
        print(f"Best: {result.best_point.label()}  ->  {out / 'best.toml'}")
    if result.unhealthy:
        print(f"{result.unhealthy} run(s) failed, had invalid ledgers or settled a trade twice")
    return 1 if result.unhealthy else 0


def _list(spec, points) -> None:
    note = " (first generation)" if spec.method == "nsga2" else ""
    print(f"{spec.method} sweep of {len(points)} run(s){note}; base {spec.base['name']!r}, "
          f"{spec.workers} worker(s)" +
          (f", {spec.cluster.engine} cluster {spec.cluster.address}" if spec.cluster else ""))
    for point in points:
        print(f"  {point.id}  seed {point.seed}  {point.label()}")
