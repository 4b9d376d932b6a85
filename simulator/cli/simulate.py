"""``p2pnode simulate``: a swarm of real nodes trades a scenario; the run directory and report."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from p2pnode.errors import ConfigError

DEFAULT_SCENARIO = Path("examples/quickstart.toml")


def register(sub) -> None:
    parser = sub.add_parser(
        "simulate", help="run a scenario with one real node per meter and write the report",
        description="Build the scenario's household and PV profiles (cached after the first "
                    "run), start one real node per meter on 127.0.0.1 (own key, ledger, DHT "
                    "socket and peer endpoint), trade every interval, audit every ledger, score "
                    "the run against the exact optimum, no trading and the literature markets on "
                    "the same data, and write DIR/summary.json, intervals.csv, trades.csv, "
                    "households.csv, PNG plots and a self-contained report.html. An older run in "
                    "DIR is replaced.",
    )
    parser.add_argument("scenario", nargs="?", type=Path, default=None,
                        help=f"scenario TOML (default: the built-in quickstart, {DEFAULT_SCENARIO})")
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory (default: runs/<scenario name>)")
    parser.add_argument("--processes", type=int, default=None,
                        help="OS processes for the nodes (default: the scenario's `processes`)")
    parser.add_argument("--mechanisms", default="double_auction,continuous,pooling",
                        help="baselines to compare, comma separated; add nsga2 for the welfare "
                             "optimisation (slower); empty for none")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.set_defaults(func=_simulate)


def _simulate(args) -> int:
    from simulator import Scenario, SimulatorError, load_scenario, print_summary
    from simulator.run import simulate

    try:
        scenario = load_scenario(args.scenario) if args.scenario else Scenario.default()
    except SimulatorError as exc:
        raise ConfigError(str(exc)) from None
    if args.processes is not None and not 1 <= args.processes <= scenario.meters:
        raise ConfigError(f"--processes {args.processes}: must be between 1 and the number of "
                          f"meters ({scenario.meters})")
    out = args.out or Path("runs") / scenario.name
    shutil.rmtree(out / "ledgers", ignore_errors=True)   # a run starts with empty ledgers
    mechanisms = tuple(m.strip() for m in args.mechanisms.split(",") if m.strip())
    started = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {line}", file=sys.stderr, flush=True)

    try:
        summary = simulate(scenario, out, processes=args.processes, mechanisms=mechanisms,
                           progress=not args.no_progress, plots=not args.no_plots, log=log)
    except (SimulatorError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    print(print_summary(summary))
    print(f"\nReport: {out / 'report.html'}   (tables and plots in {out}/)")
    trusted = out / "meter_keys.txt"   # written by a run with [faults] meter_keys
    option = f"--trusted-meter-file {trusted} " if trusted.is_file() else ""
    print(f"Audit the ledgers yourself:  p2pnode ledger verify {option}{out}/ledgers/*.db")
    ok = summary["ledgers_valid"] and summary["double_settlements"] == 0
    return 0 if ok else 1
