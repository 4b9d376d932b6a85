"""``p2pnode meter-node``: one house of a scenario as a node process; ``p2pnode health``.

``meter-node`` makes a scenario's house runnable anywhere (a container, a network namespace, a
shell): it prepares the house's files in a swarm directory shared by all nodes and runs them with
``p2pnode run``'s code (:func:`p2pnode.commands.run._serve`) on a replay clock shared through
``--epoch``.  :data:`DESCRIPTION` (the ``--help`` text) describes the directory and the clock.
The house's node is the swarm runner's node for that house
(:func:`simulator.nodes.node_config`), with ``[timing]`` scaled to ``--speed``.

``health`` asks a node's peer endpoint: a libp2p endpoint answers multistream-select's header
(its listener is up; the probe does not reach the node's event loop); over HTTP the negotiation
route answers a GET with 405 (POST only) when the node's event loop is serving.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path

from p2pnode.commands.run import parse_time
from p2pnode.errors import ConfigError
from p2pnode.meter import Meter, Reading

CREDIT_PER_HOUSE = 200.0          # currency units on each house's voucher (as the swarm runner)
PUBLISH_WALL_S = 1.0              # wall seconds sellers get to publish before buyers look
NEGOTIATE_WALL_S = 3.0            # wall seconds buyers get to discover, rank and negotiate
MAX_WINDOW_SHARE = 0.8            # the trading window may take at most this share of an interval
HEALTH_TIMEOUT_S = 3.0
HEALTH_PATH = "/p2p/v1/negotiate"   # p2pnode.peer.PATH, not imported: it would load aiohttp
ANY_HOST = "0.0.0.0"


def register(sub) -> None:
    _register_meter_node(sub)
    _register_health(sub)


def _register_meter_node(sub) -> None:
    parser = sub.add_parser(
        "meter-node", help="prepare and run one meter node of a scenario (containers, netns)",
        formatter_class=argparse.RawDescriptionHelpFormatter, description=DESCRIPTION)
    parser.add_argument("--scenario", type=Path, required=True, help="scenario file (TOML)")
    parser.add_argument("--house", required=True,
                        help="house index N (0-based), 'claim' (the first free index from "
                             "--first-house on, kept per hostname: compose replicas) or "
                             "'ordinal' (--first-house + the N of a hostname ending in -N: "
                             "StatefulSet pods)")
    parser.add_argument("--first-house", type=int, default=0,
                        help="lowest index 'claim' and 'ordinal' give out (default 0)")
    parser.add_argument("--dir", type=Path, required=True, help="the swarm directory (shared)")
    parser.add_argument("--issuer-key", type=Path, default=None,
                        help="credit issuer key file, created if absent (default DIR/issuer.key)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 in containers)")
    parser.add_argument("--advertise-host", default=None,
                        help="address peers reach this node at (default: --host; with 0.0.0.0 "
                             "the address this machine's hostname resolves to)")
    parser.add_argument("--dht-port", type=int, default=0, help="UDP port (default 0: any)")
    parser.add_argument("--peer-port", type=int, default=0,
                        help="TCP port of the peer endpoint (default 0: any; required with "
                             "--host 0.0.0.0)")
    parser.add_argument("--transport", choices=("libp2p", "http"), default="libp2p",
                        help="peer links: libp2p (Noise over TCP, yamux; the default) or http")
    parser.add_argument("--bootstrap", action="append", default=[], metavar="HOST:PORT",
                        help="DHT address of a node to join through (repeatable; names are "
                             "resolved now)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="node seconds per wall second (default 1); the same on every node")
    parser.add_argument("--start", default=None,
                        help="node time at --epoch, ISO 8601 within the scenario's days, e.g. "
                             "2023-06-30T11:00Z (required unless --prepare-only)")
    parser.add_argument("--epoch", type=float, default=None,
                        help="wall-clock unix time at which node time is --start (default: now); "
                             "give every node the same value")
    parser.add_argument("--epoch-file", type=Path, default=None,
                        help="instead of --epoch: read it from this file, which the first node "
                             "to start creates as its start time + --epoch-delay (compose: the "
                             "clock is set when the swarm starts, not before a build)")
    parser.add_argument("--epoch-delay", type=float, default=60.0,
                        help="seconds from the first node's start to the epoch, with "
                             "--epoch-file (default 60; the others must be up by then)")
    parser.add_argument("--intervals", type=int, default=None,
                        help="the run ends after this many intervals from --start (default: "
                             "run until stopped)")
    parser.add_argument("--stay", action="store_true",
                        help="after a bounded run keep the process alive until SIGTERM "
                             "(StatefulSets restart pods whose process exits)")
    parser.add_argument("--prepare-only", action="store_true",
                        help="write the files, print the node.toml path as JSON and exit; "
                             "`p2pnode run --config ... --speed S` (the same S) runs it alone "
                             "(it has no --epoch to join a replay)")
    parser.add_argument("--log-level", default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="default INFO")
    parser.set_defaults(func=_meter_node)


def _register_health(sub) -> None:
    health = sub.add_parser(
        "health", help="check that a node's peer endpoint is serving (exit 0) or not (exit 1)",
        description="GET the negotiation route of a node's peer endpoint: a node whose event "
                    "loop is serving answers 405 (POST only). Exit 0 when it does, 1 otherwise "
                    "(refused, timed out, another answer). For container health checks.")
    health.add_argument("--peer", required=True, metavar="HOST:PORT",
                        help="the peer endpoint: 127.0.0.1:7401 or the multiaddr a node prints")
    health.add_argument("--timeout", type=float, default=HEALTH_TIMEOUT_S,
                        help=f"seconds (default {HEALTH_TIMEOUT_S:g})")
    health.set_defaults(func=_health)


DESCRIPTION = """\
Make one house of a scenario a node and run it with the code of `p2pnode run`.

DIR is the swarm directory, shared by all nodes of a swarm (a compose volume, a
ReadWriteMany claim, a temporary directory):
  DIR/issuer.key         credit issuer (default --issuer-key; the first node creates it)
  DIR/claims/house-NNNN  the hostname running house NNNN (one node per house and ledger)
  DIR/house-NNNN/        node.key (0600), meter.csv, voucher.bin, node.toml, node.db,
                         finished.json (when a bounded run ends)
The meter measures at the grid connection after self-consumption and battery: the
house's net surplus is its generation_wh, its net deficit its consumption_wh. The node
is the swarm runner's node for the house; [timing] is scaled to --speed. Key and
voucher are kept when the node is prepared again (a restart).

Replays share one clock: node time is --start at wall time --epoch and runs --speed
times faster, so nodes started at different moments agree. A node started before the
epoch is up and joined but idle (its meter reads nothing before --start); a late one
joins the replay where it is. --intervals counts from --start: all nodes stop together.

Examples:
  bootstrap:  p2pnode meter-node --scenario s.toml --house 0 --dir /swarm --host 0.0.0.0 \\
                --dht-port 7400 --peer-port 7401 --speed 180 --start 2023-06-30T11:00Z \\
                --epoch 1782907200 --intervals 4
  replicas:   ... --house claim --first-house 1 --bootstrap bootstrap:7400 (same clock flags)
  one node:   p2pnode meter-node ... --house 3 --prepare-only
              p2pnode run --config DIR/house-0003/node.toml --speed 180 --start 2023-06-30T11:00Z
"""


# -- which house -------------------------------------------------------------------------------

def pick_house(choice: str, meters: int, claims: Path, name: str, first: int = 0) -> int:
    """The house this node runs, recorded in ``claims`` under ``name`` (see the module doc)."""
    if not 0 <= first < meters:
        raise ConfigError(f"--first-house {first}: the scenario has houses 0..{meters - 1}")
    claims.mkdir(parents=True, exist_ok=True)
    if choice == "claim":
        return _claim_free(meters, claims, name, first)
    if choice == "ordinal":
        match = re.search(r"-(\d+)$", name)
        if match is None:
            raise ConfigError(f"--house ordinal: hostname {name!r} does not end in -N "
                              "(a StatefulSet pod name)")
        house = first + int(match.group(1))
    elif choice.isdigit():
        house = int(choice)
    else:
        raise ConfigError(f"--house {choice!r}: must be an index, 'claim' or 'ordinal'")
    if house >= meters:
        raise ConfigError(f"--house {choice}: house {house} does not exist; the scenario has "
                          f"houses 0..{meters - 1}")
    if not _claim(claims, house, name):
        raise ConfigError(f"house {house} is already run by {_claimant(claims, house)!r} "
                          f"({claims / _claim_name(house)}); one node per house")
    return house


def _claim_free(meters: int, claims: Path, name: str, first: int) -> int:
    for house in range(first, meters):          # a restarted node keeps its house
        if _claimant(claims, house) == name:
            return house
    for house in range(first, meters):
        if _claim(claims, house, name):
            return house
    raise ConfigError(f"--house claim: houses {first}..{meters - 1} are all claimed in {claims}; "
                      "run at most that many nodes (or start from an empty directory)")


def _claim_name(house: int) -> str:
    return f"house-{house:04d}"


def _claimant(claims: Path, house: int) -> str | None:
    from p2pnode.files import read_bounded
    try:
        return read_bounded(claims / _claim_name(house), 4096, "claim file").decode(
            "utf-8", "replace")
    except FileNotFoundError:
        return None


def _claim(claims: Path, house: int, name: str) -> bool:
    """Claim ``house`` for ``name`` atomically; True when it is (now or already) ``name``'s."""
    path = claims / _claim_name(house)
    try:
        _write_new(path, name.encode(), 0o644)
    except FileExistsError:
        return _claimant(claims, house) == name
    return True


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``data`` atomically (readers never see it half written); raises
    :class:`FileExistsError` when it exists."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


# -- the house's files -------------------------------------------------------------------------

def replay_timing(interval_s: int, speed: float):
    """``[timing]`` for a replay at ``speed``: wall time to publish and to negotiate."""
    from p2pnode.config import Timing

    default = Timing()
    buy_delay_s = max(default.buy_delay_s, speed * PUBLISH_WALL_S)
    window_s = max(default.window_s, buy_delay_s + speed * NEGOTIATE_WALL_S)
    if window_s > MAX_WINDOW_SHARE * interval_s:
        fastest = MAX_WINDOW_SHARE * interval_s / (PUBLISH_WALL_S + NEGOTIATE_WALL_S)
        raise ConfigError(f"--speed {speed:g}: too fast for {interval_s} s intervals; a node "
                          f"needs {PUBLISH_WALL_S + NEGOTIATE_WALL_S:g} wall seconds per interval "
                          f"to trade (at most --speed {fastest:g})")
    return Timing(buy_delay_s=buy_delay_s, window_s=min(window_s, interval_s * MAX_WINDOW_SHARE))


def prepare(scenario, house: int, swarm_dir: Path, issuer_path: Path, network, speed: float,
            profiles=None) -> Path:
    """Write (or refresh) ``DIR/house-NNNN``; returns its node.toml.  Key and voucher are kept."""
    import numpy as np
    from simulator import build_profiles

    house_dir = swarm_dir / _claim_name(house)
    house_dir.mkdir(parents=True, exist_ok=True)
    key = _house_key(house_dir / "node.key")
    issuer = _issuer_key(issuer_path)
    _ensure_voucher(house_dir / "voucher.bin", issuer, key.public)
    profiles = profiles or build_profiles(scenario.profile_spec())
    starts = profiles.interval_start.astype("datetime64[s]").astype(np.int64)   # naive = UTC
    surplus = np.floor(profiles.surplus_wh[house]).astype(np.int64)
    deficit = np.floor(profiles.deficit_wh[house]).astype(np.int64)
    rows = "".join(f"{s},{g},{c}\n" for s, g, c in zip(starts, surplus, deficit))
    _replace(house_dir / "meter.csv", "interval_start_s,generation_wh,consumption_wh\n" + rows)
    config = _house_config(scenario, house, house_dir, network, speed)
    header = (f"# written by `p2pnode meter-node`: house {house} of scenario {scenario.name!r} "
              f"(seed {scenario.seed}), [timing] for --speed {speed:g}\n")
    path = house_dir / "node.toml"
    _replace(path, header + config_toml(config, issuer.public.hex()))
    from p2pnode.config import load_config
    load_config(path)           # what `p2pnode run` reads must load
    return path


def _house_key(path: Path):
    from p2pnode.identity import create_key_file, load_key_file

    return load_key_file(path) if path.exists() else create_key_file(path)


def _issuer_key(path: Path):
    """The shared issuer key; the first node creates it, atomically (others may race)."""
    from ledger import SigningKey
    from p2pnode.identity import load_key_file

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            _write_new(path, SigningKey.generate().to_pem(), 0o600)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ConfigError(f"--issuer-key {path}: cannot create ({exc.strerror})") from exc
    return load_key_file(path)


def _ensure_voucher(path: Path, issuer, account: bytes) -> None:
    from ledger import CreditVoucher, LedgerError, seal, unseal
    from p2pnode.files import VOUCHER_MAX_BYTES, read_bounded

    if path.exists():
        try:
            kept = unseal(read_bounded(path, VOUCHER_MAX_BYTES, "voucher"), CreditVoucher).message
        except LedgerError as exc:
            raise ConfigError(f"{path}: not a valid signed voucher ({exc}); delete it") from exc
        if kept.issuer != issuer.public or kept.account != account:
            raise ConfigError(f"{path}: issued by another issuer key or for another node key "
                              "than this run's; delete it or pass the --issuer-key it came from")
        return
    voucher = CreditVoucher(issuer.public, account, os.urandom(16),
                            int(round(CREDIT_PER_HOUSE * 1e6)))
    _replace(path, seal(voucher, issuer).raw)


def _replace(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(data, str):
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)


def _house_config(scenario, house: int, house_dir: Path, network, speed: float):
    from dataclasses import replace
    from simulator.nodes import node_config

    config = node_config(scenario, house, house_dir)
    # a replayed house has no past readings for a forecaster to learn from: the container
    # swarm trades each interval on its metered energy (p2pnode simulate warms the forecasters
    # up and trades ahead of delivery)
    return replace(config, ledger=house_dir / "node.db",
                   key_file=house_dir / "node.key", network=network,
                   timing=replay_timing(scenario.interval_s, speed),
                   market=replace(config.market, mode="ex_post"))


def config_toml(config, issuer_hex: str) -> str:
    """The TOML text of a house's :class:`~p2pnode.config.NodeConfig` (paths relative to it)."""
    net, detection, selection, timing = (config.network, config.detection, config.selection,
                                         config.timing)
    lines = [f"key_file = {_q(config.key_file.name)}", f"ledger = {_q(config.ledger.name)}",
             f"feeder = {_q(config.feeder)}", f"location = {_q(config.location)}",
             f"interval_s = {config.interval_s}", "",
             "[network]", f"host = {_q(net.host)}", f"dht_port = {net.dht_port}",
             f"peer_port = {net.peer_port}", f"advertise = {_q(net.advertise)}",
             f"transport = {_q(net.transport)}",
             f"bootstrap = [{', '.join(_q(b) for b in net.bootstrap)}]", "",
             "[meter]", 'kind = "csv"', 'path = "meter.csv"', "",
             "[detection]", f"enter_wh = {detection.enter_wh}", f"exit_wh = {detection.exit_wh}",
             "", "[tariffs]", f"feed_in_per_kwh = {config.tariffs.feed_in_micro_per_kwh / 1e6!r}"]
    for frame in config.tariffs.frames:
        lines += ["", f"[tariffs.frames.{frame.name}]", f"start_hour = {frame.start_hour}",
                  f"end_hour = {frame.end_hour}",
                  f"retail_per_kwh = {frame.retail_micro_per_kwh / 1e6!r}"]
    weights = selection.weights
    lines += ["", "[selection]", f"strategy = {_q(selection.strategy)}", "",
              "[selection.weights]"]
    lines += [f"{f.name} = {float(getattr(weights, f.name))!r}" for f in fields(weights)]
    lines += ["", "[timing]"] + [f"{f.name} = {getattr(timing, f.name)!r}" for f in fields(timing)]
    lines += ["", "[market]", f"mode = {_q(config.market.mode)}"]
    lines += ["", "[credit]", 'vouchers = ["voucher.bin"]', f"trusted_issuers = [{_q(issuer_hex)}]"]
    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    return json.dumps(str(text))      # a TOML basic string (JSON escapes are TOML escapes)


# -- network -----------------------------------------------------------------------------------

def network_config(host: str, advertise_host: str | None, dht_port: int, peer_port: int,
                   bootstrap: list[str], transport: str = "libp2p"):
    from p2pnode.config import NetworkConfig, parse_hostport

    if host == ANY_HOST and not peer_port:
        raise ConfigError("--host 0.0.0.0 needs a fixed --peer-port: it is advertised in offers")
    if advertise_host is None and host == ANY_HOST:
        advertise_host = _resolve(socket.gethostname(), "this machine's hostname")
    advertise = f"{advertise_host}:{peer_port}" if advertise_host and peer_port else ""
    if advertise_host and advertise_host != host and not peer_port:
        raise ConfigError("--advertise-host needs a fixed --peer-port")
    entries = []
    for text in bootstrap:
        name, port = parse_hostport(text, "--bootstrap")
        entries.append(f"{_resolve(name, '--bootstrap ' + text)}:{port}")
    return NetworkConfig(host=host, dht_port=dht_port, peer_port=peer_port, advertise=advertise,
                         bootstrap=tuple(entries), transport=transport)


def _resolve(name: str, what: str) -> str:
    try:
        return socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0]
    except (socket.gaierror, IndexError) as exc:
        raise ConfigError(f"{what}: cannot resolve {name!r} to an IPv4 address") from exc


# -- the replay clock --------------------------------------------------------------------------

def replay_until(start_s: float, interval_s: int, intervals: int | None) -> float | None:
    """Node time at which a run of ``intervals`` intervals from ``start_s`` is over (as ``run``)."""
    if intervals is None:
        return None
    return (int(start_s) // interval_s + intervals) * interval_s + 1


def shared_epoch(path: Path, delay_s: float) -> float:
    """The swarm's epoch from ``path``; the first node creates it (atomically) as now + delay."""
    if not path.exists():
        try:
            _write_new(path, f"{time.time() + delay_s:.3f}\n".encode(), 0o644)
        except FileExistsError:
            pass                        # another node was first
        except OSError as exc:
            raise ConfigError(f"--epoch-file {path}: cannot create ({exc.strerror})") from exc
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    try:
        epoch = float(text)
    except ValueError:
        epoch = math.nan
    if not math.isfinite(epoch):
        raise ConfigError(f"--epoch-file {path}: {text[:40]!r} is not a unix time; delete it")
    return epoch


class ReplayMeter(Meter):
    """The house's recorded meter, idle (no flow) in intervals traded before the replay starts.

    A node is up before the epoch so that the swarm has joined when trading starts; its clock
    then reads before ``--start`` and the intervals it passes there are not part of the run.
    """

    def __init__(self, recorded, start_s: float):
        self.recorded, self.start_s = recorded, start_s

    def read(self, interval_start_s: int, interval_s: int) -> Reading:
        if interval_start_s + interval_s <= self.start_s:
            return Reading(interval_start_s, interval_s, 0, 0)
        return self.recorded.read(interval_start_s, interval_s)


def _check_replay(args, scenario) -> float:
    if args.start is None:
        raise ConfigError("--start is required to run (all nodes of a replay use the same)")
    if args.intervals is not None and args.intervals < 1:
        raise ConfigError(f"--intervals {args.intervals}: must be at least 1")
    if args.epoch is not None and not math.isfinite(args.epoch):
        raise ConfigError(f"--epoch {args.epoch}: must be a unix time in seconds")
    if args.epoch_file is not None and args.epoch is not None:
        raise ConfigError("--epoch and --epoch-file: give one")
    if not 0 <= args.epoch_delay <= 86400:
        raise ConfigError(f"--epoch-delay {args.epoch_delay}: must be in [0, 86400]")
    start_s = parse_time(args.start)
    first = datetime(*scenario.start_date.timetuple()[:3], tzinfo=timezone.utc).timestamp()
    last = first + scenario.days * 86400
    if not first <= start_s < last:
        raise ConfigError(f"--start {args.start}: outside the scenario's days "
                          f"({scenario.start_date} for {scenario.days} day(s), UTC)")
    return start_s


# -- the commands ------------------------------------------------------------------------------

def _meter_node(args) -> int:
    from simulator import SimulatorError, load_scenario

    try:
        scenario = load_scenario(args.scenario)
    except SimulatorError as exc:
        raise ConfigError(str(exc)) from None
    if not 0 < args.speed <= 100_000:
        raise ConfigError(f"--speed {args.speed}: must be in (0, 100000]")
    replay_timing(scenario.interval_s, args.speed)
    start_s = None if args.prepare_only else _check_replay(args, scenario)
    network = network_config(args.host, args.advertise_host, args.dht_port, args.peer_port,
                             args.bootstrap, args.transport)
    house = pick_house(args.house, scenario.meters, args.dir / "claims", socket.gethostname(),
                       args.first_house)
    try:
        config_path = prepare(scenario, house, args.dir, args.issuer_key or args.dir / "issuer.key",
                              network, args.speed)
    except OSError as exc:
        raise ConfigError(f"--dir {args.dir}: cannot write ({exc})") from exc
    if args.prepare_only:
        print(json.dumps({"house": house, "config": str(config_path)}), flush=True)
        return 0
    code = _replay(args, config_path, start_s)
    (config_path.parent / "finished.json").write_text(
        json.dumps({"house": house, "exit": code, "at": time.time()}) + "\n", encoding="utf-8")
    if args.stay and code == 0:
        _stay_until_signalled()
    return code


def _stay_until_signalled() -> None:
    """Idle until SIGTERM/SIGINT; a Python handler, so it works as PID 1 and with threads."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(json.dumps({"staying": True, "until": "SIGTERM"}), flush=True)
    while not stop.wait(1.0):
        pass


def _replay(args, config_path: Path, start_s: float) -> int:
    """Run the prepared node with ``p2pnode run``'s code on the shared replay clock."""
    import asyncio
    import logging
    from models import Predictor
    from p2pnode.commands import run
    from p2pnode.config import load_config
    from p2pnode.meter import CsvReplayMeter

    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(config_path)
    until = replay_until(start_s, config.interval_s, args.intervals)
    epoch = time.time() if args.epoch is None else args.epoch
    if args.epoch_file is not None:
        epoch = shared_epoch(args.epoch_file, args.epoch_delay)
    if until is not None and start_s + (time.time() - epoch) * args.speed >= until:
        print(json.dumps({"finished": True, "reason": "the run's last interval has passed"}),
              flush=True)
        return 0
    Predictor.default()     # warm the model's imports: the node loads it at its first buy
    node_now = start_s + (time.time() - epoch) * args.speed
    meter = ReplayMeter(CsvReplayMeter(config.meter.path, config.interval_s), start_s)
    clock = run.ReplayClock(node_now, args.speed)
    return asyncio.run(run._serve(config, meter, clock, args.speed, until))


MULTISTREAM = b"\x13/multistream/1.0.0\n"   # varint length, protocol id, newline


def _speaks_libp2p(host: str, port: int, timeout_s: float) -> bool:
    """A libp2p listener answers multistream-select's header with its own (an HTTP endpoint
    answers 400); the Noise handshake is not attempted (the node counts the probe as
    ``libp2p_security_refused``)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            conn.sendall(MULTISTREAM)
            got = b""
            while len(got) < len(MULTISTREAM):
                chunk = conn.recv(len(MULTISTREAM) - len(got))
                if not chunk:
                    break
                got += chunk
    except OSError:
        return False
    return got == MULTISTREAM


def _health(args) -> int:
    from p2pnode.transport.address import parse_libp2p_endpoint   # pure: no libp2p import

    peer = args.peer
    if peer.startswith("/"):     # the multiaddr a libp2p node prints as its "peer"
        parsed = parse_libp2p_endpoint(peer)
        if isinstance(parsed, str):
            raise ConfigError(f"--peer: {parsed}")
        peer = f"{parsed.host}:{parsed.port}"
    host, _, port = peer.rpartition(":")     # light on purpose: probes run every few seconds
    if not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(f"--peer {args.peer!r}: must be host:port with a port in 1..65535 "
                          "or a libp2p multiaddr")
    if _speaks_libp2p(host, int(port), args.timeout):
        print(f"healthy: {host}:{port} speaks libp2p (multistream-select)")
        return 0
    url = f"http://{host}:{port}{HEALTH_PATH}"
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # never a proxy
        with opener.open(url, timeout=args.timeout) as reply:
            status, allow = reply.status, reply.headers.get("Allow", "")
    except urllib.error.HTTPError as exc:
        status, allow = exc.code, exc.headers.get("Allow", "")
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 1
    if status == 405 and "POST" in allow:
        print(f"healthy: {url} serves negotiation")
        return 0
    print(f"unhealthy: {url} answered {status} (expected 405, POST only)", file=sys.stderr)
    return 1
