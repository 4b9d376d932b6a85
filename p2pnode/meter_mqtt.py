"""A live meter over MQTT (``aiomqtt``): the node subscribes to its meter's register samples.

::

    async with MqttMeter(config.meter, clock) as meter:     # connects, subscribes, keeps at it
        async with Node(config, meter, clock=clock) as node:
            await node.run()

The meter publishes its cumulative registers to ``[meter] topic`` (payload formats in
:mod:`p2pnode.meter_feed`, which turns samples into interval readings).  This shell owns one
task: connect to the broker, subscribe (QoS 1), feed every message to the
:class:`~p2pnode.meter_feed.RegisterFeed` with the node's time; when the connection drops
(broker restart, network) it logs, counts ``mqtt_disconnects`` and reconnects after a back-off
that doubles from :data:`RECONNECT_MIN_S` up to ``reconnect_max_s``.  Samples lost while the
broker was away lose no energy (the registers are cumulative); a reading whose boundary has no
fresh sample raises :class:`~p2pnode.meter_feed.MeterStale` and the node trades nothing that
interval (the grid covers it).  Malformed payloads are dropped and counted by reason; the
first :data:`LOGGED_DROPS` of each reason are logged with what was wrong.  The incoming queue
is bounded (:data:`MAX_QUEUED`): a flooding publisher cannot grow the node's memory.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from pathlib import Path

import aiomqtt

from p2pnode.errors import ConfigError
from p2pnode.meter import Meter, Reading
from p2pnode.meter_feed import RegisterFeed

__all__ = ["MqttMeter", "RECONNECT_MIN_S", "MAX_QUEUED", "read_password"]

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.5
MAX_QUEUED = 10_000          # messages the client queues before the feed takes them
LOGGED_DROPS = 5             # per reason; the rest are only counted
CONNECT_TIMEOUT_S = 10.0


def read_password(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"[meter] password_file = {str(path)!r}: cannot read ({exc})") from exc


class MqttMeter(Meter):
    """The :class:`~p2pnode.meter.Meter` of a live meter publishing over MQTT (module doc).

    ``config``: the ``[meter]`` table (:class:`~p2pnode.config.MeterConfig`, ``kind = "mqtt"``);
    ``clock``: the node's clock (unix seconds).
    """

    def __init__(self, config, clock: Callable[[], float]):
        if config.kind != "mqtt":
            raise ConfigError(f"[meter] kind = {config.kind!r}: MqttMeter needs kind = \"mqtt\"")
        self.config, self.clock = config, clock
        self.password = read_password(config.password_file)
        self.feed = RegisterFeed(config.format, config.stale_after_s)
        self.counters: collections.Counter[str] = collections.Counter()
        self.connected = asyncio.Event()
        self._task: asyncio.Task | None = None

    # -- the Meter interface -----------------------------------------------------------------
    def read(self, interval_start_s: int, interval_s: int) -> Reading:
        return self.feed.reading(interval_start_s, interval_s, self.clock())

    # -- life cycle --------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the MQTT meter is already started")
        self._task = asyncio.create_task(self._keep_subscribed(), name="mqtt meter")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():
                raise
        self._task = None
        self.connected.clear()

    async def __aenter__(self) -> MqttMeter:
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    def stats(self) -> dict[str, int]:
        """Connection and sample counters (``mqtt_*`` and ``samples_*``)."""
        return dict(sorted((self.counters + self.feed.counters).items()))

    # -- the task ----------------------------------------------------------------------------
    async def _keep_subscribed(self) -> None:
        delay = RECONNECT_MIN_S
        while True:
            try:
                await self._session()
            except aiomqtt.MqttError as exc:
                was_connected = self.connected.is_set()
                self.connected.clear()
                self.counters["mqtt_disconnects" if was_connected else "mqtt_connect_failures"] += 1
                if was_connected:
                    delay = RECONNECT_MIN_S
                log.warning("MQTT meter: %s %s:%d: %s; retrying in %.1f s",
                            "lost" if was_connected else "cannot reach", self.config.host,
                            self.config.port, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.reconnect_max_s)

    async def _session(self) -> None:
        config = self.config
        client = aiomqtt.Client(
            config.host, config.port, identifier=config.client_id or None,
            username=config.username or None, password=self.password,
            keepalive=config.keepalive_s, timeout=CONNECT_TIMEOUT_S,
            max_queued_incoming_messages=MAX_QUEUED)
        async with client:
            await client.subscribe(config.topic, qos=1)
            self.counters["mqtt_connects"] += 1
            self.connected.set()
            log.info("MQTT meter: subscribed to %r on %s:%d", config.topic, config.host,
                     config.port)
            async for message in client.messages:
                self._take(message.payload)

    def _take(self, payload) -> None:
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        elif not isinstance(payload, (bytes, bytearray)):
            payload = b""                 # aiomqtt decodes nothing else from the wire
        outcome = self.feed.offer(bytes(payload), self.clock())
        if outcome in ("accepted", "duplicate"):
            return
        if self.feed.counters[f"samples_dropped_{outcome}"] <= LOGGED_DROPS:
            detail = self.feed.last_error if outcome in ("malformed", "bad_field", "oversize") \
                else outcome
            log.warning("MQTT meter: dropped a sample on %r (%s): %s", self.config.topic,
                        outcome, detail)
