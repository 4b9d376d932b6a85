"""Fuzz every decoder for a while and report executions, crashes and coverage.

    python benchmarks/fuzz.py --quick --json benchmarks/results/fuzz.json    # < 2 minutes
    python benchmarks/fuzz.py --seconds 600 --json ...                       # per target
    python benchmarks/fuzz.py --total-execs 1000000 --json ...               # until 1 M in total

Each target of :mod:`fuzz.targets` runs in its own process under atheris (``fuzz/run.py``),
``--jobs`` of them at a time (default 2, the machine's cores),
starting from the committed corpus (``fuzz/corpus/<target>``; new inputs go to a scratch
directory, the committed corpus is not changed).  From libFuzzer's output it takes the number of
executions and the coverage reached (``cov``: instrumented edges of our packages hit; ``ft``:
features, i.e. edges with hit counts).  A crash keeps its input in ``fuzz/crashes/``.

JSON keys: ``fuzz_execs`` (total), ``fuzz_crashes`` (must be 0), ``fuzz_coverage_edges``
(sum over targets of the edges reached), ``fuzz_seconds`` (wall time) and ``targets`` (per
target: execs, crashes, cov, ft, corpus size, seconds).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fuzz.targets import TARGETS  # noqa: E402

RUNNER = ROOT / "fuzz" / "run.py"
CORPUS = ROOT / "fuzz" / "corpus"
CRASHES = ROOT / "fuzz" / "crashes"
QUICK_SECONDS = 3           # per target: 10 targets x (3 s + ~7 s start-up) stays under 2 minutes
STATUS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)")
DONE = re.compile(r"Done (\d+) runs in")


def run_target(name: str, seconds: float, runs: int | None = None, nice: int = 0) -> dict:
    """Fuzz ``name`` for ``seconds`` (or ``runs`` executions); its counts and coverage."""
    CRASHES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as scratch:
        args = [sys.executable, str(RUNNER), name, f"-max_total_time={int(seconds)}",
                f"-artifact_prefix={CRASHES}/{name}-", "-print_final_stats=1", "-timeout=10",
                "-rss_limit_mb=2048", "-max_len=8192", scratch, str(CORPUS / name)]
        if runs is not None:
            args.insert(3, f"-runs={runs}")
        started = time.monotonic()
        proc = subprocess.run(args, capture_output=True, text=True, cwd=scratch,
                              preexec_fn=(lambda: os.nice(nice)) if nice else None,
                              env=dict(os.environ, FUZZ_TMP=scratch))
        elapsed = time.monotonic() - started
    out = proc.stderr + proc.stdout
    statuses = STATUS.findall(out)
    done = DONE.findall(out)
    execs = int(done[-1]) if done else int(statuses[-1][0]) if statuses else 0
    cov, ft, corp = (int(x) for x in statuses[-1][1:]) if statuses else (0, 0, 0)
    crashed = proc.returncode != 0
    if crashed:
        print(f"{name}: CRASH (exit {proc.returncode})\n{out[-3000:]}", file=sys.stderr)
    return {"execs": execs, "crashes": int(crashed), "cov": cov, "ft": ft, "corpus": corp,
            "seconds": round(elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SECONDS} s per target")
    parser.add_argument("--seconds", type=float, default=60.0, help="per target (default 60)")
    parser.add_argument("--total-execs", type=int, default=None,
                        help="repeat rounds of all targets until this many executions in total")
    parser.add_argument("--targets", nargs="*", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--nice", type=int, default=0, help="niceness of the fuzzing processes")
    parser.add_argument("--jobs", type=int, default=2,
                        help="targets fuzzed at once, one process each (default 2)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    seconds = QUICK_SECONDS if args.quick else args.seconds
    results: dict[str, dict] = {}
    started = time.monotonic()
    while True:
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            rounds = dict(zip(args.targets, pool.map(
                lambda name: run_target(name, seconds, nice=args.nice), args.targets)))
        for name, got in rounds.items():
            old = results.get(name)
            if old is not None:   # another round: add executions, keep the best coverage
                got = {"execs": old["execs"] + got["execs"],
                       "crashes": old["crashes"] + got["crashes"],
                       "cov": max(old["cov"], got["cov"]), "ft": max(old["ft"], got["ft"]),
                       "corpus": max(old["corpus"], got["corpus"]),
                       "seconds": round(old["seconds"] + got["seconds"], 1)}
            results[name] = got
        total = sum(r["execs"] for r in results.values())
        if args.total_execs is None or total >= args.total_execs:
            break
    summary = {
        "fuzz_execs": sum(r["execs"] for r in results.values()),
        "fuzz_crashes": sum(r["crashes"] for r in results.values()),
        "fuzz_coverage_edges": sum(r["cov"] for r in results.values()),
        "fuzz_seconds": round(time.monotonic() - started, 1),
        "seconds_per_target": seconds,
        "jobs": args.jobs,
        "targets": results,
    }
    print(f"{'target':16} {'execs':>10} {'exec/s':>8} {'cov':>6} {'ft':>6} {'corpus':>7} crashes")
    for name, r in results.items():
        rate = r["execs"] / r["seconds"] if r["seconds"] else 0
        print(f"{name:16} {r['execs']:>10} {rate:>8.0f} {r['cov']:>6} {r['ft']:>6} "
              f"{r['corpus']:>7} {r['crashes']}")
    print(f"{'total':16} {summary['fuzz_execs']:>10} {'':>8} {summary['fuzz_coverage_edges']:>6}"
          f" {'':>6} {'':>7} {summary['fuzz_crashes']}   ({summary['fuzz_seconds']} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if summary["fuzz_crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
