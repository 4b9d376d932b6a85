"""Footprint of a trading node: ``p2pnode run`` from the meter install, against the old code.

    python benchmarks/node_rss.py [--quick] [--json PATH] [--old-commit d9915c0 | --no-old]

New code: the wheel of this tree is installed without extras into a fresh venv
(``tests/slimkit.py``); ``core_install_mb`` is that venv's site-packages.  A ``p2pnode run
--config FILE --speed S`` daemon of that venv (key, voucher, CSV meter and TOML config written to
a temp dir; run from outside the source tree, so it runs the installed wheel) is bootstrapped to
partner nodes of this process on the same replay clock, all peer links over libp2p (Noise,
yamux: the daemon's deployed default, written into its config; the partners use it too); its
meter alternates surplus and deficit, theirs the opposite, so it buys (loading the bundled
predictor) and sells.  Once some closed
intervals had trades settled both ways: ``node_rss_mb`` (VmRSS), ``node_peak_rss_mb`` (VmHWM),
``cpu_ms_per_interval`` (the daemon's user+system CPU from up to then, per closed interval),
``node_startup_s`` (launch to its "up" line); then SIGTERM (``node_exit_code`` must be 0).
``deps_floor_rss_mb``: an idle interpreter of the same venv that imports exactly the third-party
modules that daemon imported while it ran (aiohttp, cryptography, msgpack, kademlia, deap, numpy,
libp2p and what they pull in; read from its ``-X importtime`` report, so lazy imports count) and none of
ours; ``node_overhead_ratio`` = ``node_rss_mb`` / ``deps_floor_rss_mb``.

Old code (``old``, same keys): a git worktree of ``--old-commit`` installed the same way (its
base install had every library), its own copy of this harness (``daemon_memory``, partners of its
own code) run by that venv's python, the floor measured with the same module list; same run,
same machine.

``daemon_memory`` is also used by ``benchmarks/dht.py`` (keys ``node_*``) with this venv's
python, with ``node_bare_python_rss_mb`` (nothing imported), ``node_imports_rss_mb`` (the node's
modules) and ``node_imports_predictor_rss_mb`` (also the default predictor loaded).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ledger import BlockBody, SigningKey, open_envelope  # noqa: E402
from p2pnode.commands.run import ReplayClock  # noqa: E402
from p2pnode.config import CreditConfig, NetworkConfig, NodeConfig, Timing  # noqa: E402
from p2pnode.identity import create_key_file  # noqa: E402
from p2pnode.meter import ProfileMeter  # noqa: E402
from p2pnode.node import Node  # noqa: E402
from report import emit  # noqa: E402
from tests import slimkit  # noqa: E402
from trade_path import FEEDER, INTERVAL_S, TRADE_START_S, voucher_for  # noqa: E402

__all__ = ["daemon_memory"]

OLD_COMMIT = "d9915c0"
EX_POST = "ex_post"
TOP_LEVEL_DEPS = ("aiohttp", "cryptography", "msgpack", "kademlia", "deap", "numpy", "libp2p")
OUR_PACKAGES = frozenset({"p2pnode", "ledger", "optimizer", "models", "simulator", "tests"})

DAEMON_START = "2026-07-01T11:59:00Z"   # one node minute before an interval boundary
DAEMON_FIRST_S = TRADE_START_S - INTERVAL_S  # the first interval its daemon loop trades
DAEMON_PARTNERS = 3
DAEMON_METER_INTERVALS = 48
DAEMON_UP_TIMEOUT_S = 60.0
DAEMON_BUY_DELAY_S = 120  # node seconds: covers what is left of the two clocks' skew
PEER_TRANSPORT = "libp2p"  # what a deployed daemon uses by default; its partners use it too

# What parts of the daemon cost: an idle interpreter, one that imported the node's modules, one
# that also loaded the default predictor (what a buying node loads at start).
RSS_PARTS = {
    "node_bare_python_rss_mb": "pass",
    "node_imports_rss_mb": "import p2pnode.node",
    "node_imports_predictor_rss_mb": "import p2pnode.node; p2pnode.node.default_predictor()",
}


def proc_status_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` in MiB (from /proc/PID/status)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values


def daemon_files(workdir: Path, bootstrap: list[str], rng: random.Random) -> Path:
    """Key, voucher, CSV meter (surplus and deficit by turns) and the TOML config."""
    key = create_key_file(workdir / "node.key")
    issuer = SigningKey.from_seed(rng.randbytes(32))
    (workdir / "credit.voucher").write_bytes(voucher_for(key.public, issuer, rng).raw)
    rows = ["interval_start_s,generation_wh,consumption_wh"]
    for i in range(DAEMON_METER_INTERVALS):
        generation, consumption = (3000, 200) if i % 2 == 0 else (0, 2500)
        rows.append(f"{DAEMON_FIRST_S + i * INTERVAL_S},{generation},{consumption}")
    (workdir / "meter.csv").write_text("\n".join(rows) + "\n")
    peers = ", ".join(f'"{address}"' for address in bootstrap)
    config = workdir / "node.toml"
    config.write_text(
        f'key_file = "node.key"\nledger = "node.db"\nfeeder = "{FEEDER}"\n\n'
        f'[network]\nhost = "127.0.0.1"\nbootstrap = [{peers}]\nmax_peers_per_host = 0\n'
        + (f'transport = "{PEER_TRANSPORT}"\n' if peer_transports() else '') + '\n'
        f'[meter]\nkind = "csv"\npath = "meter.csv"\n\n'
        f'[credit]\nvouchers = ["credit.voucher"]\ntrusted_issuers = ["{issuer.public.hex()}"]\n\n'
        f'[timing]\nbuy_delay_s = {DAEMON_BUY_DELAY_S}\n')
    if market_modes():
        with config.open("a") as out:
            out.write(f'\n[market]\nmode = "{EX_POST}"\n')
    return config


def market_modes() -> bool:
    """Whether this code's node config has a ``[market]`` table (newer code: trading ahead on
    forecasts by default).  The benchmark trades ex post, on the metered energy, so that its
    nodes trade from the first interval, with no forecast history, as the older code did."""
    return "market" in {f.name for f in dataclasses.fields(NodeConfig)}


def peer_transports() -> bool:
    """Whether this code's nodes have ``[network] transport`` (newer code: a deployed daemon
    defaults to libp2p).  Daemon and partners then all trade over :data:`PEER_TRANSPORT`."""
    return "transport" in {f.name for f in dataclasses.fields(NetworkConfig)}


def partner_network() -> NetworkConfig:
    """The partners' ``[network]``: all on 127.0.0.1, on the daemon's peer transport."""
    if peer_transports():
        return NetworkConfig(max_peers_per_host=0, transport=PEER_TRANSPORT)
    return NetworkConfig(max_peers_per_host=0)


def ex_post(config: NodeConfig) -> NodeConfig:
    if not market_modes():
        return config
    from p2pnode.config import MarketConfig
    return dataclasses.replace(config, market=MarketConfig(mode=EX_POST))


async def daemon_partners(workdir: Path, clock, rng: random.Random) -> list[Node]:
    """Nodes of this process whose meters mirror the daemon's: they buy when it sells."""
    from models import Predictor
    predictor = Predictor.default()
    generation = [1000 if i % 2 else 0 for i in range(DAEMON_METER_INTERVALS)]
    consumption = [0 if i % 2 else 600 for i in range(DAEMON_METER_INTERVALS)]
    issuer = SigningKey.from_seed(rng.randbytes(32))
    nodes = []
    for i in range(DAEMON_PARTNERS):
        meter = ProfileMeter(DAEMON_FIRST_S, INTERVAL_S, generation, consumption)
        config = NodeConfig(ledger=workdir / f"partner-{i}.db", feeder=FEEDER,
                            network=partner_network(),
                            timing=Timing(buy_delay_s=DAEMON_BUY_DELAY_S),
                            credit=CreditConfig(trusted_issuers=(issuer.public.hex(),)))
        config = ex_post(config)
        node = Node(config, meter, key=SigningKey.from_seed(rng.randbytes(32)), clock=clock,
                    predictor=predictor)
        await node.start()
        node.deposit(voucher_for(node.public, issuer, rng))
        nodes.append(node)
    await asyncio.gather(*(n.dht.bootstrap([nodes[0].dht.address]) for n in nodes[1:]))
    return nodes


async def daemon_memory(speed: float, intervals: int, max_intervals: int,
                        rng: random.Random, python: Path | None = None,
                        modules: bool = False) -> dict:
    """Run ``p2pnode run`` against partners until it traded both ways; read its memory.

    ``python``: the interpreter of another venv whose installed ``p2pnode`` runs the daemon
    (from a directory outside the source tree); default: this one, on this source tree.
    ``modules``: also return ``node_modules``, every module the daemon imported while it ran
    (Python's ``-X importtime`` report on its stderr), lazily imported ones included.
    """
    out: dict = {"node_speed": speed}
    env = os.environ | ({"PYTHONPROFILEIMPORTTIME": "1"} if modules else {})
    if python is None:
        command, cwd = [sys.executable, "-m", "p2pnode.cli"], ROOT
    else:
        command, cwd = [str(Path(python).parent / "p2pnode")], None
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        workdir = Path(tmp)
        clock = ReplayClock(_parse_iso(DAEMON_START), speed)   # set to the daemon's once up
        partners = await daemon_partners(workdir, clock, rng)
        config = daemon_files(workdir, ["%s:%d" % n.dht.address for n in partners], rng)
        log = workdir / "node.log"
        launched = time.perf_counter()
        with log.open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                *command, "run", "--config", str(config), "--speed",
                str(speed), "--start", DAEMON_START, "--log-level", "WARNING",
                cwd=cwd or workdir, stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env)
        tasks = []
        try:
            up = await asyncio.wait_for(proc.stdout.readline(), DAEMON_UP_TIMEOUT_S)
            if not up.startswith(b"{"):
                raise SystemExit(f"p2pnode run did not start:\n{log.read_text()}")
            out["node_startup_s"] = time.perf_counter() - launched
            clock.start_s, clock.epoch = daemon_time_s(workdir / "node.db"), time.time()
            tasks = [asyncio.create_task(node.run(speed=speed)) for node in partners]
            cpu_s, closed = cpu_seconds(proc.pid), len(partners[0].reports)
            out.update(await watch_daemon(proc.pid, partners, intervals, max_intervals))
            out["cpu_ms_per_interval"] = 1000 * (cpu_seconds(proc.pid) - cpu_s) / max(
                1, len(partners[0].reports) - closed)
            out.update(partner_links(partners))
            status = proc_status_mb(proc.pid)
            out["node_rss_mb"], out["node_peak_rss_mb"] = status["VmRSS"], status["VmHWM"]
            out.update(await stop_daemon(proc, log))
            if modules:
                out["node_modules"] = imported_modules(log)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for node in partners:
                await node.stop()
        for key, code in RSS_PARTS.items():
            out[key] = await python_rss_mb(code, python)
    return out


def partner_links(partners: list[Node]) -> dict:
    """What the partners' libp2p hosts counted: requests they answered (from the daemon as a
    buyer) and streams they opened (to the daemon as a seller); none on older code."""
    if not peer_transports():
        return {}
    counters = [n.peer_server.counters for n in partners]
    return {"partners_libp2p_served": sum(c["libp2p_requests_served"] for c in counters),
            "partners_libp2p_streams_opened": sum(c["libp2p_streams_opened"] for c in counters)}


def imported_modules(log: Path) -> list[str]:
    """The modules named in a ``-X importtime`` report (``import time: self | cumul | name``)."""
    names = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("import time:") and "imported package" not in line:
            names.append(line.rpartition("|")[2].strip())
    return names


def sold_count(counters) -> int:
    """Deliveries a seller settled (the counter's name in this code and in older code)."""
    return counters.get("deliveries_settled", 0) + counters.get("settlements_agreed", 0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def stop_daemon(proc, log: Path) -> dict:
    """SIGTERM; the exit code and the trades the daemon counted (its last stdout line)."""
    proc.send_signal(signal.SIGTERM)
    stdout = await asyncio.wait_for(proc.stdout.read(), 60)
    out = {"node_exit_code": await proc.wait()}
    lines = stdout.decode().strip().splitlines()
    counters = json.loads(lines[-1]).get("counters", {}) if lines else {}
    if out["node_exit_code"] != 0 or not counters:
        print(f"p2pnode run exited {out['node_exit_code']}:\n{log.read_text()[-2000:]}",
              file=sys.stderr)
    out["node_trades_bought"] = counters.get("trades_settled", 0)
    out["node_trades_sold"] = sold_count(counters)
    return out


def _parse_iso(text: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def daemon_time_s(ledger: Path) -> float:
    """The daemon's node time when it deposited its voucher, a moment before it said it is up.

    Its replay clock starts before it imports and starts the node (a second or two, i.e.
    hundreds of node seconds at high --speed), so the partners take the time from its ledger.
    """
    db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        raw = db.execute("SELECT raw FROM blocks ORDER BY seq DESC LIMIT 1").fetchone()[0]
    finally:
        db.close()
    return open_envelope(raw, BlockBody)[0].message.time_ms / 1000


async def watch_daemon(pid: int, partners: list[Node], intervals: int, max_intervals: int) -> dict:
    """Wait until ``intervals`` intervals closed with trades settled both ways (or give up)."""
    while True:
        closed = len(partners[0].reports)
        sold = sum(sold_count(n.counters) for n in partners)               # the daemon bought
        bought = sum(n.counters["trades_settled"] for n in partners)       # the daemon sold
        if closed >= max_intervals or (closed >= intervals and sold and bought):
            return {"node_intervals": closed}
        if not Path(f"/proc/{pid}").exists():
            raise SystemExit("p2pnode run exited while trading")
        await asyncio.sleep(0.1)


async def python_rss_mb(code: str, python: Path | None = None) -> float:
    """VmRSS of an interpreter (this one, or ``python`` run outside the source tree) that ran
    ``code`` and waits."""
    proc = await asyncio.create_subprocess_exec(
        str(python or sys.executable), "-c",
        f"{code}\nimport sys; sys.stdout.write('up\\n'); sys.stdout.flush(); "
        "sys.stdin.read()", cwd=ROOT if python is None else tempfile.gettempdir(),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    if not (await asyncio.wait_for(proc.stdout.readline(), DAEMON_UP_TIMEOUT_S)).startswith(b"up"):
        raise SystemExit(f"python -c {code!r} failed")
    rss = proc_status_mb(proc.pid)["VmRSS"]
    proc.stdin.close()
    await proc.wait()
    return rss


# -- the benchmark: the meter install against the old code --------------------------------------

OLD_DRIVER = """
import asyncio, json, os, random, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
import node_rss

def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

watch = node_rss.watch_daemon

async def watched(pid, partners, intervals, max_intervals):
    cpu, closed = cpu_seconds(pid), len(partners[0].reports)
    result = await watch(pid, partners, intervals, max_intervals)
    result["cpu_ms_per_interval"] = 1000 * (cpu_seconds(pid) - cpu) / max(
        1, len(partners[0].reports) - closed)
    return result

node_rss.watch_daemon = watched
speed, intervals, max_intervals, seed = sys.argv[1:5]
result = asyncio.run(node_rss.daemon_memory(float(speed), int(intervals), int(max_intervals),
                                            random.Random(int(seed))))
print(json.dumps(result))
"""
KEYS = ("node_rss_mb", "deps_floor_rss_mb", "node_overhead_ratio", "core_install_mb",
        "node_startup_s", "cpu_ms_per_interval")
DETAILS = ("deps_floor_top_level_rss_mb", "node_peak_rss_mb", "node_trades_bought", "node_trades_sold", "node_intervals",
           "node_exit_code", "node_imports_rss_mb", "node_imports_predictor_rss_mb",
           "node_bare_python_rss_mb", "partners_libp2p_served", "partners_libp2p_streams_opened")


def dependency_modules(names: list[str]) -> list[str]:
    """The third-party modules among ``names`` (none of ours, none of the stdlib)."""
    return sorted({name for name in names
                   if name.partition(".")[0] not in OUR_PACKAGES | set(sys.stdlib_module_names)
                   and not name.startswith("__") and name != "_distutils_hack"})


def floor_code(modules: list[str]) -> str:
    """Import each module (some, e.g. Cython's internal ones, cannot be imported by name)."""
    return ("import importlib\n"
            f"for name in {modules!r}:\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except ImportError:\n        pass\n")


async def measure(python: Path, run, modules: list[str] | None = None) -> dict:
    """The issue's keys for one install: ``run()`` gives the daemon's figures; the floor imports
    ``modules`` (default: the dependency modules that daemon imported)."""
    out = {"core_install_mb": slimkit.tree_mb(slimkit.site_packages(python))}
    out.update(await run())
    out["floor_modules"] = modules or dependency_modules(out.pop("node_modules"))
    out["deps_floor_rss_mb"] = await python_rss_mb(floor_code(out["floor_modules"]), python)
    out["node_overhead_ratio"] = out["node_rss_mb"] / out["deps_floor_rss_mb"]
    out["deps_floor_top_level_rss_mb"] = await python_rss_mb(   # the old code has no libp2p
        floor_code(list(TOP_LEVEL_DEPS)), python)
    return out


async def dependency_costs(python: Path, modules: list[str]) -> dict[str, float]:
    """MiB each base dependency adds to a bare interpreter (its modules a node loads, and what
    they pull in), largest first."""
    bare = await python_rss_mb("pass", python)
    costs = {}
    for dependency in TOP_LEVEL_DEPS:
        own = [name for name in modules if name.partition(".")[0] == dependency]
        costs[dependency] = await python_rss_mb(floor_code(own), python) - bare
    return dict(sorted(costs.items(), key=lambda item: -item[1]))


def old_code(workdir: Path, commit: str, plan: tuple, seed: int) -> tuple[Path, Path]:
    """A worktree of ``commit`` and a venv with it installed as its pyproject said (no extras)."""
    source = workdir / "old-src"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(source), commit],
                   check=True, capture_output=True, timeout=120)
    progress(f"old code {commit}: installing its base requirements (about 1 GB)")
    return source, slimkit.make_venv(workdir / "old", str(source))


def old_daemon(source: Path, python: Path, plan: tuple, seed: int) -> dict:
    out = subprocess.run([str(python), "-c", OLD_DRIVER, *map(str, plan), str(seed)],
                         capture_output=True, text=True, cwd=source, timeout=1800)
    if out.returncode:
        raise SystemExit(f"old harness failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def progress(text: str) -> None:
    print(f"[node_rss] {text}", file=sys.stderr, flush=True)


async def benchmark(plan: tuple, seed: int, old_commit: str | None) -> dict:
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        progress("building the wheel and the slim venv")
        slim = slimkit.slim_venv(workdir / "new")
        progress("new code: the daemon trades")
        new = await measure(slim, lambda: daemon_memory(*plan, random.Random(seed), python=slim,
                                                        modules=True))
        modules = new["floor_modules"]
        progress(f"the floor: {len(modules)} dependency modules the daemon imported")
        results.update({key: new[key] for key in KEYS})
        results.update({key: new[key] for key in DETAILS if key in new})
        results["deps_rss_mb"] = await dependency_costs(slim, modules)
        if old_commit:
            source, python = old_code(workdir, old_commit, plan, seed)
            try:
                progress(f"old code {old_commit}: the daemon trades")

                async def run_old():
                    return await asyncio.to_thread(old_daemon, source, python, plan, seed)
                old = await measure(python, run_old, modules)
            finally:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(source)], capture_output=True, timeout=120)
            results["old"] = {"commit": old_commit} | {key: old[key] for key in KEYS} | {
                key: old[key] for key in DETAILS if key in old}
            for key in ("node_rss_mb", "core_install_mb", "node_overhead_ratio"):
                results[f"{key}_vs_old"] = results[key] / old[key]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer intervals, faster clock")
    parser.add_argument("--json", type=Path, help="write the results as a JSON object")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--old-commit", default=OLD_COMMIT,
                        help=f"the old code to compare with (default {OLD_COMMIT})")
    parser.add_argument("--no-old", action="store_true", help="measure the new code only")
    args = parser.parse_args()
    plan = (300.0, 2, 5) if args.quick else (100.0, 4, 8)   # speed, intervals, max intervals
    results = asyncio.run(benchmark(plan, args.seed, None if args.no_old else args.old_commit))
    old = results.pop("old", None)
    shown = {k: v for k, v in results.items() if not isinstance(v, dict)}
    shown |= {f"deps_rss_mb.{k}": v for k, v in results["deps_rss_mb"].items()}
    emit(shown | ({f"old.{k}": v for k, v in old.items()} if old else {}), None)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results | ({"old": old} if old else {}), indent=2,
                                        sort_keys=True) + "\n")
    bought, sold = results.get("node_trades_bought", 0), results.get("node_trades_sold", 0)
    if not (results.get("partners_libp2p_served") and results.get("partners_libp2p_streams_opened")):
        print("the daemon's peer requests did not travel over libp2p both ways", file=sys.stderr)
        return 1
    if not (bought and sold) or results.get("node_exit_code") != 0:
        print(f"the daemon did not trade both ways or exit cleanly (bought {bought}, sold {sold})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
