"""``p2pnode demo``: a street of households trading one day on real ledgers (see p2pnode.demo)."""

from __future__ import annotations

import random
import time
from pathlib import Path

from p2pnode.errors import ConfigError


def register(sub) -> None:
    demo = sub.add_parser(
        "demo", help="trade one day between households on real signed ledgers",
        description="Run a street of households through one day in 15-minute intervals: each "
                    "house has its own key and ledger database; surplus is minted, sold in "
                    "co-signed trades and settled; the rest goes to the grid; every database is "
                    "audited at the end. Load and PV curves are simple synthetic shapes until "
                    "the simulator with real profiles lands.")
    demo.add_argument("--houses", type=int, default=30, help="number of households (default 30)")
    demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"),
                      help="directory for the ledger databases (default runs/demo; old ones "
                           "there are replaced)")
    demo.set_defaults(func=_demo)


def _demo(args) -> int:
    from tqdm import tqdm

    from p2pnode.demo import DemoReport, audit_street, make_street, run_interval

    if not 2 <= args.houses <= 2000:
        raise ConfigError(f"--houses {args.houses}: must be between 2 and 2000")
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("house-*.db*"):
        old.unlink()
    started = time.perf_counter()
    street, _ = make_street(args.out, args.houses, args.seed)
    rng, report = random.Random(args.seed), DemoReport(houses=args.houses, intervals=96)
    for index in tqdm(range(96), desc="trading day", unit="interval"):
        run_interval(street, index, rng, report)
    audit_street(street, report)
    _print(report, args.out, time.perf_counter() - started)
    return 0 if not report.problems else 1


def _print(report, out: Path, seconds: float) -> None:
    kwh = lambda wh: f"{wh / 1000:,.1f} kWh"  # noqa: E731
    matched = report.local_wh / max(1, report.matchable_wh)
    print(f"\n{report.houses} households, {report.intervals} intervals in {seconds:.1f} s")
    print(f"  surplus {kwh(report.surplus_wh)}, deficit {kwh(report.deficit_wh)}")
    print(f"  traded locally {kwh(report.local_wh)} in {report.trades} co-signed trades "
          f"({matched:.1%} of the {kwh(report.matchable_wh)} that could be matched)")
    print(f"  grid import {kwh(report.grid_import_wh)}, export {kwh(report.grid_export_wh)}")
    verdict = "all valid" if not report.problems else f"{len(report.problems)} PROBLEMS"
    print(f"  ledgers: {report.blocks} blocks in {len(report.databases)} databases, {verdict}")
    for problem in report.problems[:10]:
        print(f"    {problem}")
    print(f"\nAudit them yourself:  .venv/bin/p2pnode ledger verify {out}/house-*.db")
