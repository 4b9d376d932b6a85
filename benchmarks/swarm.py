"""Swarm benchmark: a simulated day of real nodes at 100, 300 and 1000 meters.

    python benchmarks/swarm.py [--quick] [--json PATH] [--meters N ...] [--timeout-s S]
                               [--modes MODE ...] [--scenario TOML ...]

Each size runs :func:`simulator.swarm.run_swarm` (one real node per house: key, SQLite ledger,
UDP DHT socket, HTTP peer endpoint, all on loopback) on ``Scenario.default()`` with
``meters=N, processes=2, acceleration=1e6`` -- two worker processes (the cores this machine has)
and no pacing: every step starts as soon as the last one finished on every node.  Each size runs
in a fresh child process (its own session, killed as a group after ``--timeout-s``), so memory
peaks are per size and a failure or time-out is recorded instead of ending the benchmark.

Per size ``m<N>_``:

* ``wall_s``: the whole swarm run (start the nodes, trade every interval, settle what is
  pending, stop, read the trades back, audit every ledger); the profiles are built (or read
  from the cache) before and not counted.  ``intervals_per_s`` = simulated intervals / wall_s.
  ``open_s``/``buy_s``/``settle_s``/``close_s``: wall time of each interval step summed over
  the day; ``setup_s`` is the rest (start-up, finish and audit).
* ``cpu_s``: user + system CPU seconds of the coordinator and the workers during the run;
  ``cpu_share`` = cpu_s / (wall_s x 2 processes): near 1 the two workers were busy all along,
  well below 1 they waited (time-outs, the coordinator, or other load on the machine).
* ``coordinator_peak_rss_mb``: ``getrusage(RUSAGE_SELF)`` max RSS of the coordinator;
  ``worker_peak_rss_mb``: ``getrusage(RUSAGE_CHILDREN)`` max RSS, i.e. the largest worker;
  ``total_peak_rss_mb``: the largest sum of VmRSS over coordinator and workers, sampled from
  /proc every ``SAMPLE_S``.
* ``trades`` (co-signed, settled), ``double_settlements``, ``audit_problems`` (0: every ledger
  valid), ``local_match_ratio`` = delivered kWh / the optimum locally matched kWh on the same
  profiles (``max_local_match_wh``: min(total surplus, total deficit) per interval, the
  closed form of :func:`simulator.solve_optimum` without pair limits -- what ``summary.json``
  reports as ``local_match_ratio``), ``decision_ms_p50``, ``messages_per_trade`` (peer messages
  sent per settled trade).  ``no_reply``: negotiations that got no answer after every attempt;
  ``rpc_timeout``, ``publish_timeout``, ``late_reply`` (answers that came after their request was
  given up: the time-out was shorter than the round trip under CPU load), ``unexpected_reply``
  (duplicates, answers to an attempt after another attempt's answer): DHT counters summed over
  the nodes.  ``udp_rcvbuf_errors``: datagrams the kernel
  dropped during the run because a UDP socket's receive buffer was full (``RcvbufErrors`` of
  /proc/net/snmp, the whole machine: other jobs' drops count too).
* ``wall_per_meter_vs_100``: (wall_s / N) / (wall_s / 100 of the 100-meter run), the scaling
  against the smallest size of the same run (1 would be linear); ``cpu_per_meter_vs_100`` the
  same for cpu_s, which other load on the machine disturbs less than wall time.

Market modes (``--modes ex_post real_time day_ahead``): each size runs once per mode on the
same profiles, keys ``<mode>_m<N>_...``, adding what trading ahead of delivery measures:
``forward_match_ratio`` (delivered energy that met a real deficit / the perfect-foresight
optimum: what ``summary.json`` reports), ``delivered_share`` (delivered / agreed),
``shortfall_kwh``, ``imbalance_cost``, ``trade_duration_s_p50`` and
``forecast_skill_next_interval``.  Ahead of delivery the nodes' forecasters first see the 7
days before (as ``p2pnode simulate`` does).  Without ``--modes`` the scenario's default mode
runs, keys ``m<N>_...``.

Other days (``--scenario examples/winter.toml examples/spring.toml``): each file runs instead
of the quickstart, at its own meter count unless ``--meters`` is given (still two processes, no
pacing), keys prefixed by the scenario's name: ``winter_real_time_m100_forward_match_ratio``.
The three days of issue 12 in both forward modes take about 40 minutes on the 2-core machine.

One run per size (a day takes minutes to an hour): the numbers are single samples on a shared
2-core machine.  ``--quick`` (under a minute or two): 100 meters, 8 midday intervals.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import emit  # noqa: E402

SIZES = (100, 300, 1000)
PROCESSES = 2
ACCELERATION = 1e6
SAMPLE_S = 1.0
TIMEOUT_S = 3 * 3600.0
QUICK_FIRST, QUICK_INTERVALS = 44, 8      # 11:00 to 13:00: sellers and buyers both present


# -- one size, in a child process -------------------------------------------------------------

class RssSampler:
    """Largest sum of VmRSS over this process and its children, sampled in a thread."""

    def __init__(self, period_s: float = SAMPLE_S):
        self.period_s, self.peak_mb = period_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.peak_mb = max(self.peak_mb, sum(map(rss_mb, [os.getpid(), *children()])))


def children() -> list[int]:
    pids = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return pids


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def one_size(meters: int, quick: bool, progress: bool, run_dir: Path, mode: str | None = None,
             scenario_path: Path | None = None) -> dict:
    """Run the swarm once for ``meters`` meters in this process; flat results."""
    from simulator import Scenario, load_scenario, max_local_match_wh
    from simulator.run import forward_stats, run_profiles, within_deficits
    from simulator.swarm import run_swarm

    base = load_scenario(scenario_path) if scenario_path else Scenario.default()
    scenario = dataclasses.replace(base, meters=meters, processes=PROCESSES,
                                   acceleration=ACCELERATION)
    if mode is not None:
        scenario = dataclasses.replace(scenario,
                                       market=dataclasses.replace(scenario.market, mode=mode))
    profiles, history = run_profiles(scenario)
    if quick:
        profiles = profiles.window(QUICK_FIRST, QUICK_INTERVALS)
    cpu0, drops0 = cpu_s(resource.RUSAGE_SELF), udp_receive_buffer_errors()
    with RssSampler() as sampler:
        swarm = run_swarm(scenario, profiles, run_dir, processes=PROCESSES, progress=progress,
                          history=history)
    cpu = cpu_s(resource.RUSAGE_SELF) - cpu0 + cpu_s(resource.RUSAGE_CHILDREN)
    drops = udp_receive_buffer_errors() - drops0
    optimum_wh = float(max_local_match_wh(profiles.surplus_wh, profiles.deficit_wh).sum())
    delivered_wh = sum(row["delivered_wh"] for row in swarm.trades)
    decisions = [row["decision_ms"] for row in swarm.trades if row["decision_ms"] == row["decision_ms"]]
    steps = {f"{step}_s": wall for step, wall in swarm.step_wall_s.items()}
    return {
        "intervals": profiles.intervals, "processes": swarm.processes, "wall_s": swarm.wall_s,
        "intervals_per_s": profiles.intervals / swarm.wall_s, **steps,
        "setup_s": swarm.wall_s - sum(swarm.step_wall_s.values()),
        "cpu_s": cpu, "cpu_share": cpu / (swarm.wall_s * PROCESSES),
        "coordinator_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "total_peak_rss_mb": sampler.peak_mb,
        "trades": len(swarm.trades), "double_settlements": swarm.double_settlements,
        "audit_problems": len(swarm.audit_problems),
        "local_match_kwh": delivered_wh / 1000, "optimum_match_kwh": optimum_wh / 1000,
        "local_match_ratio": delivered_wh / optimum_wh if optimum_wh else 1.0,
        "decision_ms_p50": statistics.median(decisions) if decisions else float("nan"),
        "messages_per_trade": swarm.counters.get("messages_sent", 0) / max(len(swarm.trades), 1),
        "unsettled_trades": swarm.counters.get("unsettled_trades", 0),
        "no_reply": swarm.counters.get("no_reply", 0),
        "discoveries": swarm.counters.get("discoveries", 0),
        **{name: swarm.counters.get(f"dht_{name}", 0)
           for name in ("rpc_timeout", "publish_timeout", "late_reply", "unexpected_reply")},
        "udp_rcvbuf_errors": drops,
        **forward_stats(swarm, within_deficits(swarm.trades, profiles), optimum_wh),
    }


def udp_receive_buffer_errors() -> int:
    """Datagrams the kernel dropped because a UDP socket's receive buffer was full (whole
    machine: ``RcvbufErrors`` of /proc/net/snmp); 0 where that file does not exist."""
    try:
        with open("/proc/net/snmp") as f:
            header, values = [line.split() for line in f if line.startswith("Udp:")][:2]
    except (OSError, ValueError):
        return 0
    return int(values[header.index("RcvbufErrors")])


# -- the driver: every size in its own process group ------------------------------------------

def run_child(meters: int, quick: bool, progress: bool, timeout_s: float,
              mode: str | None = None, scenario_path: Path | None = None) -> dict:
    """One size in a fresh interpreter (own session: killed as a group on time-out)."""
    started = time.perf_counter()
    (ROOT / "runs").mkdir(exist_ok=True)                  # git-ignored, on the repo's disk
    with tempfile.TemporaryDirectory(dir=ROOT / "runs") as run_dir:  # removed even if killed
        command = [sys.executable, __file__, "--one", str(meters), "--run-dir", run_dir] \
            + ["--quick"] * quick + ["--progress"] * progress + (["--mode", mode] if mode else []) \
            + (["--scenario", str(Path(scenario_path).resolve())] if scenario_path else [])
        child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                 start_new_session=True)
        try:
            stdout, _ = child.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            return {"failed": f"timed out after {timeout_s:.0f} s"}
        finally:
            if child.returncode is None:   # the driver itself is being stopped
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
    if child.returncode != 0:
        return {"failed": f"exit code {child.returncode} after "
                          f"{time.perf_counter() - started:.0f} s (see stderr)"}
    return json.loads(stdout.strip().splitlines()[-1])


def run_sizes(sizes: list[int] | None, quick: bool, progress: bool, timeout_s: float,
              json_path: Path | None, modes: list[str] | None = None,
              scenarios: list[Path] | None = None) -> dict:
    """Every scenario (default: the quickstart's) in every mode at every size (default: the
    scenario file's meters, else :data:`SIZES`), one child process each."""
    results: dict = {"processes": PROCESSES, "acceleration": ACCELERATION}
    for path in scenarios or [None]:
        named = scenario_sizes(path) if path else None
        for mode in modes or [None]:
            prefix = (f"{named[0]}_" if named else "") + (f"{mode}_" if mode else "")
            counts = sizes or (named[1] if named else list(SIZES))
            for meters in counts:
                print(f"[swarm] {prefix}{meters} meters...", file=sys.stderr, flush=True)
                size = run_child(meters, quick, progress, timeout_s, mode, path)
                results.update({f"{prefix}m{meters}_{name}": value
                                for name, value in size.items()})
                if not mode and not named:
                    results.update(scaling(results, counts[0], meters))
                emit(results, json_path)   # after every run: one that dies later keeps these
    return results


def scenario_sizes(path: Path) -> tuple[str, list[int]]:
    """A scenario file's name and its meter count (a bad file: the error naming the field)."""
    from simulator import load_scenario
    scenario = load_scenario(path)
    return scenario.name, [scenario.meters]


def scaling(results: dict, base: int, meters: int) -> dict:
    """Wall and CPU seconds per meter of ``meters`` against the ``base`` size of the same run."""
    out = {}
    for name in ("wall_s", "cpu_s"):
        ours, theirs = results.get(f"m{meters}_{name}"), results.get(f"m{base}_{name}")
        if meters != base and ours and theirs:
            out[f"m{meters}_{name.removesuffix('_s')}_per_meter_vs_{base}"] = \
                (ours / meters) / (theirs / base)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"100 meters, {QUICK_INTERVALS} midday intervals")
    parser.add_argument("--json", type=Path, help="write the results as a flat JSON object")
    parser.add_argument("--meters", type=int, nargs="+", help=f"sizes (default {SIZES})")
    parser.add_argument("--timeout-s", type=float, default=TIMEOUT_S,
                        help="per size (default 3 h)")
    parser.add_argument("--progress", action="store_true", help="progress bars on stderr")
    parser.add_argument("--modes", nargs="+", choices=("ex_post", "real_time", "day_ahead"),
                        help="market modes to compare on the same profiles")
    parser.add_argument("--scenario", type=Path, nargs="+", metavar="TOML",
                        help="scenario files to run instead of the quickstart (keys "
                             "<name>_<mode>_m<N>_...; sizes default to each file's meters)")
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)   # the child's entry
    parser.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        scenario = args.scenario[0] if args.scenario else None
        print(json.dumps(one_size(args.one, args.quick, args.progress, args.run_dir, args.mode,
                                  scenario)), flush=True)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # so a running size is killed too
    sizes = args.meters or ([100] if args.quick else None if args.scenario else list(SIZES))
    if sizes and min(sizes) < PROCESSES:
        parser.error(f"--meters must be at least {PROCESSES}")
    for path in args.scenario or []:
        try:
            scenario_sizes(path)
        except (OSError, ValueError) as exc:
            parser.error(f"--scenario {path}: {exc}")
    run_sizes(sorted(sizes) if sizes else None, args.quick, args.progress, args.timeout_s,
              args.json, args.modes, args.scenario)
    return 0


if __name__ == "__main__":
    sys.exit(main())
