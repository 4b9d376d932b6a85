"""Memory of a trading node process: ``p2pnode run`` beside partner nodes, until it traded.

Used by ``benchmarks/dht.py`` (keys ``node_*``).  One ``p2pnode run --config FILE --speed S``
process (key, voucher, CSV meter and TOML config written to a temp dir) is bootstrapped to a
few nodes of this process that run the same daemon loop on the same replay clock, trading with
it (its meter alternates surplus and deficit, theirs the opposite).  After some closed
intervals with trades settled both ways: ``node_rss_mb`` (VmRSS of the process) and
``node_peak_rss_mb`` (VmHWM); then SIGTERM (``node_exit_code`` must be 0;
``node_trades_bought``/``_sold`` are what it counted).  What it is made of, each an idle
interpreter of the same venv: ``node_bare_python_rss_mb`` (nothing imported),
``node_imports_rss_mb`` (the node's modules imported: numpy, and scipy through the optimizer's
exact solver) and ``node_imports_predictor_rss_mb`` (also the default predictor loaded, as a
buying node does at start: scikit-learn and the model).
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sqlite3
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
from trade_path import FEEDER, INTERVAL_S, TRADE_START_S, voucher_for  # noqa: E402

__all__ = ["daemon_memory"]

DAEMON_START = "2026-07-01T11:59:00Z"   # one node minute before an interval boundary
DAEMON_FIRST_S = TRADE_START_S - INTERVAL_S  # the first interval its daemon loop trades
DAEMON_PARTNERS = 3
DAEMON_METER_INTERVALS = 48
DAEMON_UP_TIMEOUT_S = 60.0
DAEMON_BUY_DELAY_S = 120  # node seconds: covers what is left of the two clocks' skew

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
        f'[network]\nhost = "127.0.0.1"\nbootstrap = [{peers}]\nmax_peers_per_host = 0\n\n'
        f'[meter]\nkind = "csv"\npath = "meter.csv"\n\n'
        f'[credit]\nvouchers = ["credit.voucher"]\ntrusted_issuers = ["{issuer.public.hex()}"]\n\n'
        f'[timing]\nbuy_delay_s = {DAEMON_BUY_DELAY_S}\n')
    return config


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
                            network=NetworkConfig(max_peers_per_host=0),   # all on 127.0.0.1
                            timing=Timing(buy_delay_s=DAEMON_BUY_DELAY_S),
                            credit=CreditConfig(trusted_issuers=(issuer.public.hex(),)))
        node = Node(config, meter, key=SigningKey.from_seed(rng.randbytes(32)), clock=clock,
                    predictor=predictor)
        await node.start()
        node.deposit(voucher_for(node.public, issuer, rng))
        nodes.append(node)
    await asyncio.gather(*(n.dht.bootstrap([nodes[0].dht.address]) for n in nodes[1:]))
    return nodes


async def daemon_memory(speed: float, intervals: int, max_intervals: int,
                        rng: random.Random) -> dict:
    """Run ``p2pnode run`` against partners until it traded both ways; read its memory."""
    out: dict = {"node_speed": speed}
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        workdir = Path(tmp)
        clock = ReplayClock(_parse_iso(DAEMON_START), speed)   # set to the daemon's once up
        partners = await daemon_partners(workdir, clock, rng)
        config = daemon_files(workdir, ["%s:%d" % n.dht.address for n in partners], rng)
        log = workdir / "node.log"
        launched = time.perf_counter()
        with log.open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "p2pnode.cli", "run", "--config", str(config), "--speed",
                str(speed), "--start", DAEMON_START, "--log-level", "WARNING",
                cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=stderr)
        tasks = []
        try:
            up = await asyncio.wait_for(proc.stdout.readline(), DAEMON_UP_TIMEOUT_S)
            if not up.startswith(b"{"):
                raise SystemExit(f"p2pnode run did not start:\n{log.read_text()}")
            out["node_startup_s"] = time.perf_counter() - launched
            clock.start_s, clock.wall0 = daemon_time_s(workdir / "node.db"), time.monotonic()
            tasks = [asyncio.create_task(node.run(speed=speed)) for node in partners]
            out.update(await watch_daemon(proc.pid, partners, intervals, max_intervals))
            status = proc_status_mb(proc.pid)
            out["node_rss_mb"], out["node_peak_rss_mb"] = status["VmRSS"], status["VmHWM"]
            out.update(await stop_daemon(proc, log))
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
            out[key] = await python_rss_mb(code)
    return out


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
    out["node_trades_sold"] = counters.get("settlements_agreed", 0)
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
        sold = sum(n.counters["settlements_agreed"] for n in partners)     # the daemon bought
        bought = sum(n.counters["trades_settled"] for n in partners)       # the daemon sold
        if closed >= max_intervals or (closed >= intervals and sold and bought):
            return {"node_intervals": closed}
        if not Path(f"/proc/{pid}").exists():
            raise SystemExit("p2pnode run exited while trading")
        await asyncio.sleep(0.1)


async def python_rss_mb(code: str) -> float:
    """VmRSS of an interpreter of the same venv that ran ``code`` and waits."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", f"{code}\nimport sys; sys.stdout.write('up\\n'); sys.stdout.flush(); "
        "sys.stdin.read()", cwd=ROOT, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    if not (await asyncio.wait_for(proc.stdout.readline(), DAEMON_UP_TIMEOUT_S)).startswith(b"up"):
        raise SystemExit(f"python -c {code!r} failed")
    rss = proc_status_mb(proc.pid)["VmRSS"]
    proc.stdin.close()
    await proc.wait()
    return rss
