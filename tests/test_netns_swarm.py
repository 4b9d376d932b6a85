"""The swarm for real: the compose file's commands as separate processes, in network namespaces
(one per node, like containers) and on loopback (where namespaces are not allowed).

A six-meter scenario (three PV houses selling, three buying around 11:00) is replayed from
11:00 at 180x for three 15-minute intervals on one shared clock (``--epoch``).  The nodes run
exactly the ``command`` of the compose services (bootstrap, meter) and are probed with the
image's health check; the compose ``audit`` command checks the ledgers afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger import BlockBody, BlockType, LedgerStore, open_envelope
from p2pnode.transport.address import parse_libp2p_endpoint
from tests import netnskit

SCENARIO = """\
name = "six-meters"
seed = 7                  # houses 3, 4, 5 have PV; 0, 1, 2 buy around noon
meters = 6
feeder = "none"
[time]
start_date = 2023-06-30
interval_s = 900
[households]
pv_share = 0.5
battery_share = 0.0
"""
SPEED, INTERVALS, INTERVAL_S = 180, 3, 900
METERS = 5                        # plus the bootstrap: six nodes
EPOCH_LEAD_S = 40                 # wall seconds for every node to start and join before trading
RUN_S = INTERVALS * INTERVAL_S / SPEED
SETTLE_MARGIN_S = 30
CONTAINER_DIR = "/swarm"          # the compose volume's mount point
P2PNODE = str(Path(sys.executable).with_name("p2pnode"))
DEFAULT_TRANSPORT = "libp2p"      # deployed nodes' peer links unless SWARM_TRANSPORT says http


@dataclass
class Process:
    name: str
    argv: list[str]
    proc: subprocess.Popen
    out: Path
    err: Path

    def lines(self) -> list[dict]:
        text = self.out.read_text()
        complete = text[:text.rfind("\n") + 1]      # the process may be writing the last one
        return [json.loads(line) for line in complete.splitlines() if line.startswith("{")]

    def start_line(self) -> dict | None:
        lines = [line for line in self.lines() if "public_key" in line]
        return lines[0] if lines else None

    def counters(self) -> dict:
        stops = [line for line in self.lines() if line.get("stopped")]
        assert stops, f"{self.name} printed no stop line:\n{self.tail()}"
        return stops[-1]["counters"]

    def tail(self) -> str:
        return f"$ {' '.join(self.argv)}\n{self.err.read_text()[-3000:]}"


class Swarm:
    """The processes of one run, their files, and the compose commands adapted to the host."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.swarm_dir = tmp_path / "swarm"
        self.scenario = tmp_path / "six-meters.toml"
        self.scenario.write_text(SCENARIO)
        self.epoch = int(time.time()) + EPOCH_LEAD_S
        self.env = {"SWARM_SPEED": str(SPEED), "SWARM_INTERVALS": str(INTERVALS),
                    "SWARM_SCENARIO": str(self.scenario)}
        self.swarm_dir.mkdir()      # the clock as the first node would write it (--epoch-file)
        (self.swarm_dir / "epoch").write_text(f"{self.epoch}\n")
        self.processes: list[Process] = []

    def choose_transport(self, transport: str) -> None:
        """libp2p: the compose file's default, so ``SWARM_TRANSPORT`` stays unset (the run
        checks that the default is libp2p); otherwise set, as a user selects HTTP."""
        if transport != DEFAULT_TRANSPORT:
            self.env["SWARM_TRANSPORT"] = transport

    def argv(self, service: str) -> list[str]:
        """The service's command with the container's paths mapped into this test's directory."""
        return [self._local(word) for word in netnskit.service_argv(service, self.env)]

    def _local(self, word: str) -> str:
        if word == "p2pnode":
            return P2PNODE
        if word == CONTAINER_DIR:
            return str(self.swarm_dir)
        return word.replace(f"{CONTAINER_DIR}/", f"{self.swarm_dir}/").replace(
            "exec p2pnode ", f"exec {P2PNODE} ")

    def process_env(self) -> dict[str, str]:
        """This environment plus the image's ENV (paths mapped), as inside the container."""
        env = dict(os.environ)
        for instruction, args in netnskit.dockerfile():
            if instruction == "ENV":
                for pair in args.split():
                    key, _, value = pair.partition("=")
                    if key.startswith(("P2P_", "PYTHON")):   # not the image's PATH, venv, pip
                        env[key] = self._local(value)
        return env

    def start(self, name: str, argv: list[str]) -> Process:
        out, err = self.tmp / f"{name}.out", self.tmp / f"{name}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=self.process_env(),
                                    start_new_session=True)
        process = Process(name, argv, proc, out, err)
        self.processes.append(process)
        return process

    def wait_all(self) -> float:
        """Wait for every process to exit by itself; returns when the last one did (wall s)."""
        deadline = self.epoch + RUN_S + SETTLE_MARGIN_S
        for process in self.processes:
            try:
                process.proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{process.name} still runs {SETTLE_MARGIN_S} s after the run's "
                            f"end:\n{process.tail()}")
        return time.time()

    def stop_all(self) -> None:
        for process in self.processes:
            if process.proc.poll() is None:
                process.proc.terminate()
                try:
                    process.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.proc.kill()
                    process.proc.wait()


def wait_for(check, what: str, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")


def set_option(argv: list[str], option: str, value: str | None) -> list[str]:
    """``argv`` with ``option``'s value replaced (``None``: the option removed)."""
    assert option in argv, f"{option} is not in the compose command {argv}"
    at = argv.index(option)
    rest = argv[:at] + argv[at + 2:]
    return rest if value is None else argv[:at + 1] + [value] + argv[at + 2:]


def trade_authors_per_ledger(paths: list[Path]) -> list[set[bytes]]:
    authors = []
    for path in paths:
        with LedgerStore(path) as store:
            found = set()
            for author, _seq, _hash, raw in store.raw_blocks():
                if open_envelope(raw, BlockBody)[0].message.type is BlockType.TRADE:
                    found.add(bytes(author))
            authors.append(found)
    return authors


def check_run(swarm: Swarm, finished_at: float) -> dict:
    """What every run must show; returns the measurements."""
    for process in swarm.processes:
        assert process.proc.returncode == 0, f"{process.name} exited " \
                                             f"{process.proc.returncode}:\n{process.tail()}"
        start = process.start_line()
        assert start is not None, f"{process.name} printed no start line:\n{process.tail()}"
        assert {"public_key", "dht", "peer", "ledger"} <= start.keys()
    counters = [p.counters() for p in swarm.processes]
    bought = sum(c.get("trades_bought", 0) for c in counters)
    sold = sum(c.get("trades_proposed", 0) for c in counters)
    settled = sum(c.get("trades_settled", 0) for c in counters)
    assert bought > 0, f"no trades: {counters}"
    ledgers = sorted(swarm.swarm_dir.glob("house-*/node.db"))
    assert len(ledgers) == len(swarm.processes)
    authors = trade_authors_per_ledger(ledgers)
    assert any(len(a) >= 2 for a in authors), "no ledger holds a TRADE pair of two authors"
    audit = subprocess.run(swarm.argv("audit"), capture_output=True, text=True,
                           env=swarm.process_env(), timeout=60)
    assert audit.returncode == 0, f"the audit failed:\n{audit.stdout}\n{audit.stderr}"
    assert ": valid" in audit.stderr
    return {"nodes": len(swarm.processes), "trades_bought": bought, "trades_proposed": sold,
            "trades_settled": settled, "ledgers_with_trades": sum(bool(a) for a in authors),
            "run_s": round(finished_at - swarm.epoch, 1), "audit": audit.stderr.strip()}


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("transport", ["http", "libp2p"])
def test_compose_swarm_in_network_namespaces(tmp_path, transport):
    reason = netnskit.unavailable()
    if reason:
        pytest.skip(f"no network namespaces here: {reason}")
    names = ["bootstrap"] + [f"meter-{i}" for i in range(1, METERS + 1)]
    swarm = Swarm(tmp_path)
    swarm.choose_transport(transport)
    with netnskit.Lab(names) as lab:
        try:
            started = time.time()
            boot = swarm.start("bootstrap", lab.command("bootstrap", swarm.argv("bootstrap")))
            health = [P2PNODE, *health_check()[1:]]
            wait_for(lambda: subprocess.run(lab.command("bootstrap", health),
                                            capture_output=True).returncode == 0
                     or boot.proc.poll() is not None, "the bootstrap's health check", 60)
            assert boot.proc.poll() is None, f"the bootstrap died:\n{boot.tail()}"
            for name in names[1:]:
                swarm.start(name, lab.command(name, swarm.argv("meter")))
            wait_for(lambda: all(p.start_line() or p.proc.poll() is not None
                                 for p in swarm.processes), "every node's start line", 90)
            up_s = time.time() - started
            finished = swarm.wait_all()
        finally:
            swarm.stop_all()
    measured = check_run(swarm, finished)
    for process in swarm.processes:
        host = lab.host(process.name)
        line = process.start_line()["peer"]   # a multiaddr over libp2p, host:port over HTTP
        peer = parse_libp2p_endpoint(line) if line.startswith("/") else None
        assert (peer is not None) == (transport == "libp2p")
        advertised = f"{peer.host}:{peer.port}" if peer is not None else line
        assert advertised == f"{host.address}:7401"                   # advertised, resolved
        assert process.start_line()["dht"] == "0.0.0.0:7400"
    claims = {p.name: p.read_text() for p in (swarm.swarm_dir / "claims").iterdir()}
    assert sorted(claims) == [f"house-{i:04d}" for i in range(len(names))]   # one house each
    assert claims["house-0000"] == "bootstrap" and sorted(claims.values()) == sorted(names)
    print(f"\nnetns swarm: {json.dumps({**measured, 'startup_s': round(up_s, 1)})}")


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("transport", ["http", "libp2p"])
def test_compose_commands_as_processes_on_loopback(tmp_path, transport):
    """The compose commands as separate processes on 127.0.0.1, over each peer transport
    (``SWARM_TRANSPORT``: the compose default is libp2p)."""
    swarm = Swarm(tmp_path)
    swarm.choose_transport(transport)
    local = {"--host": "127.0.0.1", "--dht-port": "0", "--peer-port": "0"}
    try:
        started = time.time()
        argv = swarm.argv("bootstrap")
        for option, value in local.items():
            argv = set_option(argv, option, value)
        boot = swarm.start("bootstrap", argv)
        wait_for(lambda: boot.start_line() or boot.proc.poll() is not None,
                 "the bootstrap's start line", 60)
        assert boot.proc.poll() is None, f"the bootstrap died:\n{boot.tail()}"
        peer = boot.start_line()["peer"]
        assert peer.startswith("/ip4/127.0.0.1/tcp/") == (transport == "libp2p")
        assert subprocess.run([P2PNODE, "health", "--peer", peer]).returncode == 0
        for house in range(1, METERS + 1):
            argv = swarm.argv("meter")
            for option, value in {**local, "--bootstrap": boot.start_line()["dht"],
                                  "--house": str(house), "--first-house": None}.items():
                argv = set_option(argv, option, value)
            swarm.start(f"meter-{house}", argv)
        wait_for(lambda: all(p.start_line() or p.proc.poll() is not None
                             for p in swarm.processes), "every node's start line", 90)
        up_s = time.time() - started
        finished = swarm.wait_all()
    finally:
        swarm.stop_all()
    measured = check_run(swarm, finished)
    assert subprocess.run([P2PNODE, "health", "--peer", peer]).returncode == 1   # stopped
    print(f"\nloopback swarm: {json.dumps({**measured, 'startup_s': round(up_s, 1)})}")


def health_check() -> list[str]:
    """The image's HEALTHCHECK command (exec form), e.g. ["p2pnode", "health", ...]."""
    args = dict(netnskit.dockerfile())["HEALTHCHECK"]
    return json.loads(args[args.index("CMD") + 3:].strip())


@pytest.mark.timeout(60)
def test_the_lab_is_private_and_leaves_nothing_behind():
    reason = netnskit.unavailable()
    if reason:
        pytest.skip(f"no network namespaces here: {reason}")
    before = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    with pytest.raises(RuntimeError, match="fails inside"):
        with netnskit.Lab(["a", "b"]) as lab:
            a, b = lab.host("a"), lab.host("b")
            sleeper = subprocess.Popen(lab.command("a", ["sleep", "60"]))
            routes = subprocess.run(["ip", "-n", a.netns, "route"], capture_output=True,
                                    text=True).stdout
            assert routes.split()[:3] == [f"{netnskit.SUBNET}.0/24", "dev", "eth0"]
            assert "default" not in routes                  # nothing can leave the lab
            found = subprocess.run(lab.command("b", [sys.executable, "-c",
                                   "import socket; print(socket.gethostname(),"
                                   " socket.gethostbyname('a'))"]), capture_output=True,
                                   text=True, timeout=30).stdout.split()
            assert found == ["b", a.address]
            assert b.address not in subprocess.run(["ip", "-o", "addr"], capture_output=True,
                                                   text=True).stdout    # not in the root ns
            raise RuntimeError("a test fails inside the lab")
    assert sleeper.wait(timeout=10) != 0                    # killed by the teardown
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert a.netns not in names and b.netns not in names
    assert not (netnskit.NETNS_ETC / a.netns).exists()
    assert subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout == before
