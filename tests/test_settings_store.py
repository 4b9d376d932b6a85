"""Run-time settings (FR-14) survive a restart: the store, and a daemon PUT then restarted."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import aiohttp
import pytest

from p2pnode.api_schema import API_PREFIX
from p2pnode.config import Constraints, load_config
from p2pnode.errors import ConfigError
from p2pnode.settings_store import MAX_SETTINGS_BYTES, SettingsStore, settings_path
from tests.dhtkit import run
from tests.test_api import ApiClient

SETTINGS = {"min_sell_price_per_kwh": 0.12, "max_buy_price_per_kwh": 0.31, "reserve_wh": 250,
            "max_trade_wh": 4000, "opt_out": "selling"}


def test_saved_constraints_load_back_and_the_file_is_replaced_whole(tmp_path):
    store = SettingsStore(settings_path(tmp_path / "node.db"))
    assert store.path == tmp_path / "node.settings.json"
    assert store.load() is None                         # nothing saved: the config file rules
    store.save(Constraints(**SETTINGS))
    assert store.load() == Constraints(**SETTINGS)
    store.save(Constraints(reserve_wh=7))
    assert store.load() == Constraints(reserve_wh=7)
    assert [p.name for p in tmp_path.iterdir()] == ["node.settings.json"]   # no temporary left
    assert json.loads(store.path.read_text())["version"] == 1


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("\xff", "not valid JSON"),
    ("[]", 'must be an object with "version" and "constraints"'),
    ('{"version": 2, "constraints": {}}', '"version" = 2: this node reads version 1'),
    ('{"version": 1, "constraints": []}', '"constraints" must be an object'),
    ('{"version": 1, "constraints": {"reserve": 5}}', "[constraints] reserve: unknown field"),
    ('{"version": 1, "constraints": {"reserve_wh": -5}}',
     "[constraints] reserve_wh = -5: must be between 0"),
    ('{"version": 1, "constraints": {"opt_out": "sometimes"}}', "[constraints] opt_out = "),
    ('{"version": 1, "constraints": {"max_trade_wh": "lots"}}', 'max_trade_wh = "lots"'),
    (" " * (MAX_SETTINGS_BYTES + 1), "bytes (at most"),
])
def test_a_hand_edited_settings_file_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "node.settings.json"
    path.write_text(text, encoding="latin-1")
    with pytest.raises(ConfigError) as caught:
        SettingsStore(path).load()
    assert message in str(caught.value) and str(path) in str(caught.value)
    assert "delete it" in str(caught.value)


def _node_home(tmp_path):
    from p2pnode.api import create_token_file
    from p2pnode.identity import create_key_file

    create_key_file(tmp_path / "node.key")
    create_token_file(tmp_path / "api.token")
    (tmp_path / "meter.csv").write_text("interval_start_s,generation_wh,consumption_wh\n")
    (tmp_path / "node.toml").write_text(
        'key_file = "node.key"\nledger = "node.db"\n[meter]\npath = "meter.csv"\n'
        '[constraints]\nreserve_wh = 10\n[api]\nenabled = true\ntoken_file = "api.token"\n')
    return tmp_path / "node.toml"


async def _daemon(path, capsys, work):
    """Run ``serve`` for ``path`` until ``work(client, line)`` returns; its result."""
    from p2pnode.api import load_token
    from p2pnode.commands.run import ReplayClock, serve
    from p2pnode.meter import CsvReplayMeter

    config = load_config(path)
    stop, up = asyncio.Event(), asyncio.Event()
    clock = ReplayClock(1_782_907_200, 1.0)
    meter = CsvReplayMeter(config.meter.path, config.interval_s)
    token = load_token(config.api.token_file)
    daemon = asyncio.create_task(serve(config, meter, clock, 1.0, None, token, on_ready=up.set,
                                       stop=stop))
    try:
        ready = asyncio.create_task(up.wait())
        await asyncio.wait({ready, daemon}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():                # the daemon ended (or hangs) before it was up
            ready.cancel()
            await asyncio.gather(ready, return_exceptions=True)
            await asyncio.wait_for(daemon, 1)   # raises what stopped it
            raise AssertionError("the daemon stopped before it was up")
        line = json.loads(capsys.readouterr().out.splitlines()[-1])
        async with aiohttp.ClientSession() as session:
            return await work(ApiClient(session, line["api"], token), line)
    finally:
        stop.set()
        assert await asyncio.wait_for(daemon, 30) == 0


def test_settings_put_through_the_api_survive_a_restart(tmp_path, capsys):
    path = _node_home(tmp_path)
    out = {}

    async def change(client, line):
        assert (await client.get("settings"))["reserve_wh"] == 10       # the config file's
        await client.call("PUT", f"{API_PREFIX}/settings", body={**SETTINGS, "reserve_wh": -1},
                          status=400)
        assert not settings_path(tmp_path / "node.db").exists()        # refused: nothing saved
        out["put"] = (await client.call("PUT", f"{API_PREFIX}/settings", body=SETTINGS))[1]

    async def after_restart(client, line):
        out["got"] = await client.get("settings")

    async def main():
        await _daemon(path, capsys, change)
        await _daemon(path, capsys, after_restart)

    run(main())
    assert out["put"] == out["got"] == SETTINGS
    saved = json.loads(settings_path(tmp_path / "node.db").read_text())
    assert saved == {"version": 1, "constraints": SETTINGS}


def test_a_daemon_refuses_to_start_on_a_broken_settings_file(tmp_path, capsys):
    path = _node_home(tmp_path)
    settings_path(tmp_path / "node.db").write_text(
        json.dumps({"version": 1, "constraints": {**SETTINGS, "max_trade_wh": 0}}))

    async def never(client, line):
        raise AssertionError("the node started")

    with pytest.raises(ConfigError, match=r"node.settings.json: \[constraints\] max_trade_wh = 0"):
        run(_daemon(path, capsys, never))
    assert dataclasses.asdict(load_config(path).constraints)["reserve_wh"] == 10
