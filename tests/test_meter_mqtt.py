"""The MQTT meter against a real broker (mosquitto, tests/mqttkit.py): readings, a broker restart
in the middle of an interval, a broker that is not there yet, malformed payloads and a flood."""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace

import aiomqtt
import pytest

from p2pnode.api_metrics import NodeCollector
from p2pnode.api_views import RecordingMeter
from p2pnode.config import MeterConfig, config_from_dict
from p2pnode.feeder_report import ReportingMeter
from p2pnode.errors import ConfigError
from p2pnode.meter_feed import MeterNoData, MeterStale
from p2pnode.meter_mqtt import MqttMeter
from tests.dhtkit import Clock, run
from tests.mqttkit import broker  # noqa: F401  (fixture)

T0 = 1_782_907_200
TOPIC = "house/7/meter"
WAIT_S = 15.0


def meter_config(port: int, **extra) -> MeterConfig:
    return MeterConfig(kind="mqtt", host="127.0.0.1", port=port, topic=TOPIC,
                       client_id="node-7", reconnect_max_s=1.0, **extra)


def sample(time_s, gen, cons) -> bytes:
    return json.dumps({"time_s": time_s, "generation_wh": gen, "consumption_wh": cons}).encode()


async def publish(port: int, *payloads: bytes) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="meter-7") as client:
        for payload in payloads:
            await client.publish(TOPIC, payload, qos=1)


async def until(predicate, what: str) -> None:
    async with asyncio.timeout(WAIT_S):
        while not predicate():
            await asyncio.sleep(0.02)


def test_readings_arrive_and_bad_payloads_are_counted(broker):
    clock = Clock(T0 + 1001)

    async def main():
        async with MqttMeter(meter_config(broker.port), clock) as meter:
            await asyncio.wait_for(meter.connected.wait(), WAIT_S)
            await publish(broker.port, sample(T0 - 100, 1000, 5000), b"{garbage",
                          sample(T0 + 450, 1550, 5400), sample(T0 + 450, 1550, 5400),
                          json.dumps({"time_s": T0, "generation_wh": -3,
                                      "consumption_wh": 0}).encode(),
                          sample(T0 + 800, 1900, 5700), sample(T0 + 1000, 2100, 5800))
            await until(lambda: sum(meter.feed.counters.values()) == 7, "7 payloads")
            reading = meter.read(T0, 900)
            stats = meter.stats()
            wrapped = SimpleNamespace(meter=RecordingMeter(ReportingMeter(meter)))
            families = list(NodeCollector(wrapped)._meter())
        return reading, stats, families

    reading, stats, families = _run(main)
    assert [(f.name, {s.labels["event"]: s.value for s in f.samples if s.name.endswith("_total")})
            for f in families] == [("p2p_meter_events", stats)]
    # at T0: 1000 + 100/550 * 550 = 1100 / 5000 + 100/550 * 400; at T0 + 900: 2000 / 5750
    assert (reading.generation_wh, reading.consumption_wh) == (900, 5750 - 5072)
    assert stats == {"mqtt_connects": 1, "samples_accepted": 4, "samples_duplicate": 1,
                     "samples_dropped_malformed": 1, "samples_dropped_bad_field": 1}


def _run(main):
    out = []

    async def wrapped():
        out.append(await main())

    run(wrapped())
    return out[0]


def test_a_broker_restart_mid_interval_loses_and_doubles_nothing(broker, caplog):
    clock = Clock(T0 + 500)
    caplog.set_level(logging.WARNING, "p2pnode.meter_mqtt")

    async def main():
        async with MqttMeter(meter_config(broker.port), clock) as meter:
            await asyncio.wait_for(meter.connected.wait(), WAIT_S)
            await publish(broker.port, sample(T0 - 60, 100, 200), sample(T0 + 300, 460, 380))
            await until(lambda: meter.feed.counters["samples_accepted"] == 2, "2 samples")
            await asyncio.to_thread(broker.stop)                 # in the middle of the interval
            await until(lambda: not meter.connected.is_set(), "the meter sees the broker go")
            with pytest.raises(aiomqtt.MqttError):
                await publish(broker.port, sample(T0 + 500, 660, 480))   # lost with the broker
            await asyncio.to_thread(broker.start)
            await asyncio.wait_for(meter.connected.wait(), WAIT_S)   # reconnected, subscribed
            clock.now = T0 + 1000
            await publish(broker.port, sample(T0 + 840, 1000, 650), sample(T0 + 960, 1120, 710))
            await until(lambda: meter.feed.counters["samples_accepted"] == 4, "4 samples")
            first = meter.read(T0, 900)
            clock.now = T0 + 1810
            await publish(broker.port, sample(T0 + 1800, 1960, 1130))
            await until(lambda: meter.feed.counters["samples_accepted"] == 5, "5 samples")
            return first, meter.read(T0 + 900, 900), meter.stats()

    first, second, stats = _run(main)
    # registers at T0: 160 / 230, at T0 + 900: 1060 / 680, at T0 + 1800: 1960 / 1130
    assert (first.generation_wh, first.consumption_wh) == (900, 450)
    assert (second.generation_wh, second.consumption_wh) == (900, 450)
    assert stats["mqtt_disconnects"] == 1 and stats["mqtt_connects"] == 2
    assert broker.starts == 2
    assert any("lost 127.0.0.1" in r.getMessage() for r in caplog.records)


def test_a_broker_that_is_not_there_yet_is_retried_and_stale_readings_are_errors(tmp_path):
    from tests.mqttkit import Broker

    server = Broker(tmp_path)                  # its port is chosen, nothing listens yet
    clock = Clock(T0 + 905)

    async def main():
        async with MqttMeter(meter_config(server.port, stale_after_s=60), clock) as meter:
            await until(lambda: meter.counters["mqtt_connect_failures"] >= 2, "two failures")
            with pytest.raises(MeterNoData, match="no reading has arrived"):
                meter.read(T0, 900)
            await asyncio.to_thread(server.start)
            try:
                await asyncio.wait_for(meter.connected.wait(), WAIT_S)
                await publish(server.port, sample(T0 - 10, 0, 0), sample(T0 + 700, 70, 7))
                await until(lambda: meter.feed.counters["samples_accepted"] == 2, "2 samples")
                with pytest.raises(MeterStale, match="205 s old"):
                    meter.read(T0, 900)
                clock.now = T0 + 750
                return meter.read(T0, 900)
            finally:
                await asyncio.to_thread(server.stop)

    reading = _run(main)
    assert (reading.generation_wh, reading.consumption_wh) == (70 - 0, 7)   # held at T0 + 700


def test_a_flood_of_samples_and_garbage_is_bounded_and_counted(broker):
    clock = Clock(T0 + 3600)
    count = 3000

    async def main():
        async with MqttMeter(meter_config(broker.port), clock) as meter:
            await asyncio.wait_for(meter.connected.wait(), WAIT_S)
            flood = [sample(T0 + i * 0.25, i, 2 * i) for i in range(count)]
            flood += [b"\x00" * 5000, b"[[[[", b"{}"] * 100
            await publish(broker.port, *flood)
            await until(lambda: sum(meter.feed.counters.values()) == len(flood), "all payloads")
            return meter.read(T0, 600), meter.stats(), len(meter.feed.samples)

    reading, stats, kept = _run(main)
    assert stats["samples_accepted"] == count // 4 and kept <= count // 4
    assert stats["samples_dropped_too_frequent"] == count - count // 4
    assert (stats["samples_dropped_oversize"], stats["samples_dropped_malformed"],
            stats["samples_dropped_bad_field"]) == (100, 100, 100)
    assert (reading.generation_wh, reading.consumption_wh) == (2400, 4800)


def test_mqtt_meter_config_is_checked_and_names_the_key():
    config = config_from_dict({"meter": {"kind": "mqtt", "topic": "a/b", "format": "senml",
                                         "port": 8883, "stale_after_s": 120}})
    assert (config.meter.topic, config.meter.format, config.meter.port) == ("a/b", "senml", 8883)
    for table, message in [
        ({"kind": "mqtt"}, "[meter] topic = \"\": is required"),
        ({"kind": "mqtt", "topic": "a/#"}, "no wildcards"),
        ({"kind": "mqtt", "topic": "a", "format": "xml"}, '[meter] format = "xml": must be one of'),
        ({"kind": "mqtt", "topic": "a", "port": 0}, "[meter] port = 0"),
        ({"kind": "mqtt", "topic": "a", "path": "m.csv"}, '[meter] path = '),
        ({"kind": "modbus"}, '[meter] kind = "modbus": must be one of csv, mqtt'),
        ({"kind": "mqtt", "topic": "a", "stale_after_s": 0}, "[meter] stale_after_s = 0"),
        ({"kind": "mqtt", "topic": "a", "qos": 2}, '[meter] qos = 2: unknown key'),
    ]:
        with pytest.raises(ConfigError) as caught:
            config_from_dict({"meter": table})
        assert message in str(caught.value), (table, str(caught.value))


def test_p2pnode_run_trades_from_a_live_meter(broker, tmp_path):
    """The daemon with ``[meter] kind = "mqtt"``: a meter publishing its registers in node time
    (1 Wh per node second of consumption), two intervals at 60x; a node alone buys nothing, so
    the grid's imports on its ledger are what the meter measured."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    from ledger import BlockBody, BlockType, LedgerStore, open_envelope
    from p2pnode.identity import create_key_file

    create_key_file(tmp_path / "node.key")
    (tmp_path / "node.toml").write_text(
        'key_file = "node.key"\nledger = "node.db"\n[meter]\nkind = "mqtt"\n'
        f'port = {broker.port}\ntopic = "{TOPIC}"\nstale_after_s = 120\n'
        "[timing]\nbuy_delay_s = 30\nwindow_s = 300\nrequest_timeout_s = 0.5\n"
        '[market]\nmode = "ex_post"\n')   # each interval on what the live meter measured
    speed, start = 60.0, T0
    p2pnode = str(Path(sys.executable).with_name("p2pnode"))
    proc = subprocess.Popen([p2pnode, "run", "--config", str(tmp_path / "node.toml"), "--speed",
                             str(speed), "--start", "2026-07-01T12:00Z", "--intervals", "2",
                             "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True)

    async def feed():
        up = json.loads(await asyncio.to_thread(proc.stdout.readline))   # the clock runs now
        wall0 = time.monotonic()
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="meter-7") as client:
            await client.publish(TOPIC, sample(start - 60, 0, 0), qos=1)
            await client.publish(TOPIC, b"not json", qos=1)
            while proc.poll() is None:
                node_now = start + (time.monotonic() - wall0) * speed - 20   # never ahead
                await client.publish(TOPIC, sample(node_now, 0, node_now - (start - 60)), qos=1)
                await asyncio.sleep(0.25)
        await asyncio.sleep(0.1)        # the client's own task ends after the disconnect
        return up

    try:
        up = _run(lambda: feed())
        stopped = json.loads(proc.stdout.read().strip().splitlines()[-1])
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert up["ledger"].endswith("node.db")
    meter = stopped["meter"]
    assert meter["mqtt_connects"] == 1 and meter["samples_dropped_malformed"] == 1
    # samples stamped before a boundary that was already held at an earlier one come too late
    # to change it: dropped, counted (their energy is in the next interval all the same)
    assert meter["samples_accepted"] >= 30 and set(meter) <= {
        "mqtt_connects", "samples_accepted", "samples_dropped_malformed", "samples_dropped_late"}
    with LedgerStore(tmp_path / "node.db") as store:
        grid = {}
        for _, _, _, raw in store.raw_blocks():
            block = open_envelope(raw, BlockBody)[0].message
            if block.type is BlockType.GRID:
                grid[block.payload.interval_start_s] = block.payload.import_wh
    assert sorted(grid) == [start, start + 900]
    # the first boundary is interpolated exactly (60 Wh before it); each later one is held at
    # the latest sample (published 20 node seconds late, every 15): within 60 Wh of 900
    assert all(840 <= wh <= 960 for wh in grid.values()), grid

