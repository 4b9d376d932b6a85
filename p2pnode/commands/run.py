"""``p2pnode run --config FILE``: run one meter node as a daemon until stopped."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
import math
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from p2pnode.errors import ConfigError
from p2pnode.trading.schedule import first_interval, step_times


def register(sub) -> None:
    parser = sub.add_parser(
        "run", help="run a meter node (DHT, peer endpoint, ledger) until stopped",
        description="Start a node from a TOML configuration (see p2pnode/config.py for every "
                    "key): join the offer DHT through [network] bootstrap, serve the peer "
                    "endpoint, and trade every interval with the readings of the [meter] (a CSV "
                    "replay, or a live meter over MQTT). "
                    "With [feeder_role] report_to the node also reports every interval's "
                    "reading to its feeder node; with [feeder_role] enabled it is the feeder "
                    "node, booking generation, consumption, transformer supply and losses "
                    "(GET /api/v1/feeder). "
                    "Stops cleanly on SIGINT/SIGTERM. Prints one JSON line with the node's "
                    "addresses when it is up (with the local API's URL when [api] enabled). "
                    "Node time is the wall clock; with --start/--speed a replay, which starts "
                    "at --start once the node is up, or at wall time --epoch (daemons given "
                    "the same --start, --speed and --epoch agree on node time).",
    )
    parser.add_argument("--config", type=Path, required=True, help="node configuration (TOML)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="clock speed for replays: node seconds per wall second (default 1)")
    parser.add_argument("--start", default=None,
                        help="node time to start at, ISO 8601 (default: now); with --speed, "
                             "replays a recorded day")
    parser.add_argument("--epoch", default=None,
                        help="wall-clock time (ISO 8601 or unix seconds) at which node time is "
                             "--start: daemons given the same --start, --speed and --epoch "
                             "agree on node time however far apart they start (default: a "
                             "replay starts when the node is up; without --start and --speed "
                             "node time is the wall clock)")
    parser.add_argument("--intervals", type=int, default=None,
                        help="stop after this many intervals (default: run until stopped)")
    parser.add_argument("--log-level", default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="default INFO")
    parser.add_argument("--log-format", default="text", choices=("text", "json"),
                        help="log lines on stderr: text (default) or json (one object per "
                             "line: time, level, logger, message, exception)")
    parser.set_defaults(func=_run)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log record, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, timezone.utc)
                .isoformat(timespec="milliseconds"),
                "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


class ReplayClock:
    """Node time: ``start_s`` at wall-clock time ``epoch``, running ``speed`` times faster than
    the wall, plus ``offset_s`` (``[timing] clock_offset_s``: a clock known to be off).

    ``p2pnode run`` with neither ``--start`` nor ``--speed`` runs on the wall clock itself (the
    epoch is now and node time is wall time), so interval boundaries fall on wall-clock
    multiples of the interval and daemons started at different times agree.  A replay
    (``--start``/``--speed``) given ``--epoch`` is a pure function of the wall clock: daemons
    given the same ``--start``, ``--speed`` and ``--epoch`` agree on node time however far apart
    they start (one started before the epoch waits for it, one started after joins the replay
    in progress).  Without ``--epoch`` a replay is one daemon's own: ``running=False`` holds the
    clock at ``start_s`` until :meth:`start`, which ``p2pnode run`` calls once the node is up
    (DHT joined, peer endpoint bound, predictor loaded), so a fast replay does not lose its first
    intervals to the start-up time.
    """

    def __init__(self, start_s: float, speed: float, *, running: bool = True,
                 epoch: float | None = None, offset_s: float = 0.0):
        self.start_s, self.speed, self.offset_s = start_s, speed, offset_s
        self.epoch = epoch if epoch is not None else time.time() if running else None

    def start(self) -> None:
        """Let node time run from ``start_s`` (from now on); no-op when it already runs."""
        if self.epoch is None:
            self.epoch = time.time()

    async def wait_for_epoch(self) -> None:
        """Sleep until the wall-clock epoch (a daemon up before a shared replay starts)."""
        self.start()
        await asyncio.sleep(max(0.0, self.epoch - time.time()))

    def __call__(self) -> float:
        if self.epoch is None:
            return self.start_s + self.offset_s
        return self.start_s + (time.time() - self.epoch) * self.speed + self.offset_s


def daemon_clock(args, config) -> ReplayClock:
    """The clock of ``p2pnode run`` from ``--start``/``--speed``/``--epoch`` (see
    :class:`ReplayClock`)."""
    offset = config.timing.clock_offset_s
    epoch = parse_time(args.epoch, "--epoch") if args.epoch is not None else None
    if args.start is None and args.speed == 1.0 and epoch is None:
        now = time.time()
        return ReplayClock(now, 1.0, epoch=now, offset_s=offset)     # the wall clock
    start = parse_time(args.start) if args.start is not None else epoch
    return ReplayClock(start, args.speed, running=False, epoch=epoch, offset_s=offset)


def _run(args) -> int:
    from p2pnode.config import load_config

    configure_logging(args.log_level, args.log_format)
    config = load_config(args.config)
    if config.meter is None or config.meter.kind not in ("csv", "mqtt"):
        raise ConfigError(f'{args.config}: [meter] kind = "csv" (with a path) or "mqtt" is '
                          "required to run a node")
    if config.key_file is None:
        raise ConfigError(f"{args.config}: key_file is required to run a node")
    if not 0 < args.speed <= 100_000:
        raise ConfigError(f"--speed {args.speed}: must be in (0, 100000]")
    if args.intervals is not None and args.intervals < 1:
        raise ConfigError(f"--intervals {args.intervals}: must be at least 1")
    token = None
    if config.api.enabled:
        from p2pnode.api import load_token
        token = load_token(config.api.token_file)   # refuse to start on a bad token file
    clock = daemon_clock(args, config)
    # trading starts once the node is up: a shared replay at its epoch, one's own from now
    ready = clock.wait_for_epoch if clock.epoch is not None else clock.start
    until = None
    if args.intervals is not None:
        first = first_interval(config, clock.start_s if args.start or args.epoch else clock())
        last = first + (args.intervals - 1) * config.interval_s
        until = step_times(config, last)["close"] + 1   # the last interval closed
    if config.meter.kind == "mqtt":
        return asyncio.run(_serve_live(config, clock, args.speed, until, token, ready))
    meter = replay_meter(config)
    return asyncio.run(_serve(config, meter, clock, args.speed, until, token, on_ready=ready))


def replay_meter(config):
    """The daemon's meter: the ``[meter] path`` CSV replay, signing its readings with ``[meter]
    key_file`` when set (it then stands in for a smart meter with its own key)."""
    from p2pnode.meter import CsvReplayMeter

    meter = CsvReplayMeter(config.meter.path, config.interval_s)
    if config.meter.key_file is not None:
        from p2pnode.identity import load_key_file
        from p2pnode.meter import SigningMeter
        meter = SigningMeter(meter, load_key_file(config.meter.key_file))
    return meter


async def _serve_live(config, clock, speed: float, until: float | None, token: str | None,
                      on_ready) -> int:
    """:func:`_serve` with a live MQTT meter, subscribed for as long as the node runs."""
    from p2pnode.meter_mqtt import MqttMeter

    async with MqttMeter(config.meter, clock) as meter:
        return await _serve(config, meter, clock, speed, until, token, on_ready=on_ready)


def parse_time(text: str | None, option: str = "--start") -> float:
    """``--start``/``--epoch``: ISO 8601 (UTC unless it says otherwise) or, for ``--epoch``,
    unix seconds -> unix seconds; None is now."""
    if text is None:
        return time.time()
    if option == "--epoch":
        try:
            value = float(text)
        except ValueError:
            pass
        else:
            if math.isfinite(value):
                return value
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{option} {text!r}: not an ISO 8601 time like 2026-07-01T00:00Z"
                          ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


async def _serve(config, meter, clock, speed: float, until: float | None,
                 token: str | None = None, on_ready=None) -> int:
    """Run the node until ``until`` (node time) or SIGINT/SIGTERM; see :func:`serve`."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await serve(config, meter, clock, speed, until, token, on_ready=on_ready, stop=stop)


async def serve(config, meter, clock, speed: float, until: float | None,
                token: str | None = None, *, on_ready=None, stop: asyncio.Event) -> int:
    """The daemon's body: the node, its local API and its feeder role until ``until`` or ``stop``.

    ``on_ready()`` is called once everything is up, just before trading starts (and awaited if
    it returns an awaitable: a host that starts several nodes on one clock holds each here until
    all are up).  The feeder role runs beside the node, not inside it (:func:`_feeder_role`).
    """
    from p2pnode.api import ApiServer
    from p2pnode.feeder_report import ReportingMeter
    from p2pnode.node import Node
    from p2pnode.settings_store import SettingsStore, settings_path

    settings = SettingsStore(settings_path(config.ledger))
    saved = settings.load()               # what the owner last set through the API
    if saved is not None and saved != config.constraints:
        logging.getLogger(__name__).warning(
            "constraints from %s (set through the local API) replace the configuration "
            "file's [constraints]", settings.path)
        config = dataclasses.replace(config, constraints=saved)
    tee = ReportingMeter(meter)
    node = Node(config, tee, clock=clock)
    role, reporter = _feeder_role(config, node, tee, clock)
    async with node:
        api = ApiServer(node, token, feeder=role, settings=settings) if token is not None else None
        try:
            if role is not None:
                await role.start()
            if reporter is not None:
                await reporter.start()
            if api is not None:
                await api.start(config.api.host, config.api.port)
            host, port = node.dht.address
            print(json.dumps({"public_key": node.public.hex(), "dht": f"{host}:{port}",
                              "peer": node.endpoint, "ledger": str(config.ledger),
                              "api": api.url if api else None,
                              "feeder_role": "feeder" if role else "member" if reporter else None}),
                  flush=True)
            if on_ready is not None and inspect.isawaitable(waiting := on_ready()):
                await waiting
            await _trade(node, role, reporter, until, speed, stop)
        finally:
            if role is not None and role.book is not None:
                role.close_due()
            if role is not None:
                role.close()
            if reporter is not None:
                await reporter.stop()      # one bounded last attempt at what is pending
            if api is not None:
                await api.stop()
        await node.settle()
        counts = {k: v for k, v in sorted(node.counters.items())}
        stopped = {"stopped": True, "counters": counts}
        if hasattr(meter, "stats"):          # a live meter's connection and sample counters
            stopped["meter"] = meter.stats()
        if role is not None and role.book is not None:
            stopped["feeder"] = dict(sorted(role.book.counters.items()))
        print(json.dumps(stopped), flush=True)
    return 0


def _feeder_role(config, node, tee, clock):
    """``(role, reporter)`` of ``node``, hooked to its meter ``tee`` (at most one is not None).

    ``[feeder_role] enabled``: the feeder node's role (:mod:`p2pnode.feeder_role`: the report
    route on the peer endpoint, added before the node starts; the node's own reading; closing
    intervals).  ``report_to``: the member's reporter (:mod:`p2pnode.feeder_report`).
    """
    if config.feeder_role.enabled:
        from p2pnode.feeder_role import FeederRole      # imported only by nodes that have a role
        role = FeederRole(config, node.key, clock)
        role.attach(node.peer_server)
        tee.listener = role.own_reading
        return role, None
    if config.feeder_role.report_to:
        from p2pnode.feeder_report import FEEDER_REPORT_PATH, FeederReporter
        report_to, send = config.feeder_role.report_to, None
        if config.network.transport == "libp2p":      # the node's own host: Noise, its key
            async def send(raw: bytes, timeout_s: float):
                return await node.client.post_route(report_to, FEEDER_REPORT_PATH, raw, timeout_s)
        reporter = FeederReporter(node.key, config.feeder, report_to, node.counters,
                                  minted=lambda start: node.ledger.state.minted_wh.get(start, 0),
                                  send=send)
        tee.listener = reporter.reading
        return None, reporter
    return None, None


async def _trade(node, role, reporter, until: float | None, speed: float,
                 stop: asyncio.Event) -> None:
    """Trading and the feeder role's task until ``until`` or ``stop``.

    A task that fails stops the others and its exception is raised; a lost feeder report is
    not a failure (the reporter counts it and goes on).
    """
    tasks = {asyncio.create_task(node.run(until_s=until, speed=speed), name="trading"),
             asyncio.create_task(stop.wait(), name="stopping")}
    if role is not None:
        tasks.add(asyncio.create_task(role.run(speed), name="feeder role"))
    if reporter is not None:
        tasks.add(asyncio.create_task(reporter.run(), name="feeder reports"))
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    failed = [t for t in tasks if not t.cancelled() and t.exception() is not None]
    if failed:
        raise failed[0].exception()
