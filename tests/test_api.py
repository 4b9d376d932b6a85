"""The node's local API on real nodes over loopback: content, auth, settings, metrics, daemon.

Every JSON response a test receives is validated against the API's own OpenAPI document, and the
main test checks that every documented GET was exercised.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import sys

import aiohttp
import jsonschema
import openapi_spec_validator
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ledger import BlockBody, cost_micro, open_envelope, seal
from p2pnode.api import ApiError, ApiServer, create_token_file, load_token
from p2pnode.api_metrics import histogram_buckets
from p2pnode.api_schema import API_PREFIX, openapi_document
from p2pnode.api_views import RecordingMeter, drop_counters
from p2pnode.config import ApiConfig, Constraints, config_from_dict
from p2pnode.errors import ConfigError
from p2pnode.identity import create_key_file
from p2pnode.meter import ProfileMeter
from p2pnode.negotiation import Kind, PeerRequest
from tests.dhtkit import run as strict_run
from p2pnode.config import MarketConfig
from simulator.hostile import deposit_block
from tests.nodekit import CREDIT_MICRO, INTERVAL_S, ISSUER, START, key, swarm

EX_POST = MarketConfig(mode="ex_post")   # the API shows state: one interval after another

TOKEN = "t0ken-for-tests-0123456789abcdef"
DOC = openapi_document()
SETTINGS = {"min_sell_price_per_kwh": 0.0, "max_buy_price_per_kwh": 100.0, "reserve_wh": 0,
            "max_trade_wh": 1_000_000, "opt_out": "none"}
_DEFAULT = object()


def run(coro):
    return strict_run(coro, timeout_s=240)


def schema_for(route: str, method: str, status: int) -> dict:
    """The documented JSON schema of a response (errors of undocumented routes: Error)."""
    operation = DOC["paths"].get(route, {}).get(method.lower())
    if operation is not None and str(status) in operation["responses"]:
        schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    else:
        assert status >= 400, f"{method} {route} answered {status}, which is not documented"
        schema = {"$ref": "#/components/schemas/Error"}
    return {**schema, "components": DOC["components"]}


class ApiClient:
    """Calls one node's API and validates every JSON answer against the OpenAPI document."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str | None = TOKEN):
        self.session, self.url, self.token = session, url, token
        self.seen: set[tuple[str, str, int]] = set()

    async def call(self, method: str, path: str, *, status: int = 200, token=_DEFAULT,
                   body=None, data: str | None = None):
        token = self.token if token is _DEFAULT else token
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if body is not None:
            data = json.dumps(body)
        async with self.session.request(method, self.url + path.lstrip("/"), headers=headers,
                                        data=data) as response:
            text = await response.text()
            assert response.status == status, f"{method} {path}: {response.status} {text}"
            route = path.split("?")[0]
            if response.content_type != "application/json":
                return response, text
            payload = json.loads(text)
            jsonschema.Draft202012Validator(schema_for(route, method, status)).validate(payload)
            self.seen.add((route, method.lower(), status))
            return response, payload

    async def get(self, path: str, **kwargs):
        return (await self.call("GET", f"{API_PREFIX}/{path}", **kwargs))[1]


@contextlib.asynccontextmanager
async def serving(nodes, token: str = TOKEN):
    """An API on port 0 for each node and one client each."""
    apis = [ApiServer(node, token) for node in nodes]
    async with aiohttp.ClientSession() as session:
        try:
            for api in apis:
                await api.start("127.0.0.1", 0)
            yield apis, [ApiClient(session, api.url, token) for api in apis]
        finally:
            for api in apis:
                await api.stop()


async def step(s, index: int, steps=("open", "buy", "settle", "close")) -> None:
    """Some of the four steps of interval ``index`` on every node (nodekit runs all four)."""
    start = START + index * INTERVAL_S
    end = start + INTERVAL_S
    timing = s.nodes[0].config.timing
    moments = {"open": (0, "open_interval"), "buy": (timing.buy_delay_s, "buy"),
               "settle": (timing.window_s, "settle"), "close": (timing.window_s + 1, "close_interval")}
    for name in steps:
        offset, method = moments[name]
        s.clock.now_s = end + offset
        await asyncio.gather(*(getattr(node, method)(start) for node in s.nodes))


def metric(text: str, name: str, **labels) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


# -- the main walk through every endpoint ------------------------------------------------------------

def test_every_endpoint_shows_the_real_state_of_a_trading_pair(tmp_path):
    async def main():
        async with swarm([[800, 600], [-300, -200]], tmp_path, market=EX_POST) as s:
            seller, buyer = s.nodes
            async with serving(s.nodes) as (apis, (sell, buy)):
                await step(s, 0)                       # a whole interval: traded and settled
                await step(s, 1, ("open", "buy"))      # the next: offer open, trade agreed
                await asyncio.sleep(0.2)               # the seller's offer refresh (seq 2)
                await check_status_and_health(s, sell, buy)
                await check_readings_and_flows(sell)
                await check_offers_and_market(s, sell, buy)
                await check_trades_and_balance(s, sell, buy)
                await check_blocks_and_ledger(s, buy)
                await check_metrics(s, sell, buy)
                assert await buy.get("settings") == SETTINGS
                error = await buy.get("feeder", status=404)     # 200: tests/test_feeder_role.py
                assert "does not run the feeder role" in error["error"]
                await buy.call("GET", f"{API_PREFIX}/openapi.json")
                documented_gets = {route for route, item in DOC["paths"].items()
                                   if "get" in item and route.startswith(API_PREFIX)}
                seen = {route for route, method, _ in sell.seen | buy.seen if method == "get"}
                assert documented_gets <= seen, documented_gets - seen
                await check_an_unconfirmed_sale(s, sell)
                # the buyer's peer endpoint goes down: health says so, the delivery waits
                await buyer.peer_server.stop()
                health = await buy.get("health", token=None, status=503)
                assert health == {"ok": False, "dht": True, "peer": False, "mode": "trading",
                                  "peers_reachable": None, "intervals_without_peers": 0,
                                  "trades_settled": True, "overdue_settlements": 0}
                await step(s, 1, ("settle",))
                sold = [t for t in (await sell.get("trades"))["trades"] if t["energy_wh"] == 200]
                assert [(t["status"], t["delivered_wh"]) for t in sold] == [("settling", 200)]

    run(main())


async def check_status_and_health(s, sell: ApiClient, buy: ApiClient) -> None:
    seller, buyer = s.nodes
    status = await buy.get("status")
    host, port = buyer.dht.address
    assert status["public_key"] == buyer.public.hex()
    assert status["peer_id"].startswith("12D3KooW")
    assert status["node_id"] == buyer.dht.node_id.hex()
    assert status["peer_endpoint"] == buyer.endpoint == f"127.0.0.1:{buyer.peer_server.port}"
    assert status["dht_address"] == f"{host}:{port}"
    assert status["balance_state"] == "deficit" and status["interval_s"] == INTERVAL_S
    assert status["node_time_s"] == s.clock.now_s
    assert status["current_interval_start_s"] == START + 2 * INTERVAL_S
    assert status["ledger_head_seq"] == buyer.ledger.state.seq > 0
    assert 0 <= status["uptime_s"] < 240
    assert (await sell.get("status"))["balance_state"] == "surplus"
    health = await sell.get("health", token=None)
    assert (health["ok"], health["dht"], health["peer"], health["mode"]) == (True, True, True,
                                                                            "trading")


async def check_readings_and_flows(sell: ApiClient) -> None:
    assert (await sell.get("reading"))["reading"] == {
        "interval_start_s": START + INTERVAL_S, "interval_s": INTERVAL_S, "generation_wh": 600,
        "consumption_wh": 0, "net_wh": 600, "soc": None}
    flows = (await sell.get("intervals"))["intervals"]
    assert flows == [{"interval_start_s": START, "balance_state": "surplus",
                      "generation_wh": 800, "consumption_wh": 0, "surplus_wh": 800,
                      "deficit_wh": 0, "sold_wh": 300, "bought_wh": 0, "grid_import_wh": 0,
                      "grid_export_wh": 500}]
    error = await sell.get("intervals?limit=0", status=400)
    assert error["field"] == "limit" and "between 1 and 500" in error["error"]


async def check_offers_and_market(s, sell: ApiClient, buy: ApiClient) -> None:
    seller, buyer = s.nodes
    offers = (await sell.get("offers"))["offers"]
    assert len(offers) == 1
    offer = offers[0]
    assert (offer["seller"], offer["interval_start_s"]) == (seller.public.hex(), START + INTERVAL_S)
    assert (offer["energy_wh"], offer["seq"]) == (600 - 200, 2)   # republished after the sale
    assert offer["offered_wh"] == 600                              # stating what it put up
    assert offer["endpoint"] == seller.endpoint and offer["feeder"] == "default"
    assert (await buy.get("offers"))["offers"] == []
    market = await buy.get("market")
    assert market["tariffs"] == {"frame": "normal", "retail_micro_per_kwh": 300_000,
                                 "feed_in_micro_per_kwh": 80_000}
    found = market["discovery"]
    assert [o["seller"] for o in found["offers"]] == [seller.public.hex()]
    assert found["offers"][0]["energy_wh"] == 600       # as discovered, before the sale
    assert found["offers"][0]["interval_start_s"] == START + INTERVAL_S
    price = found["offers"][0]["price_micro_per_kwh"]
    assert found["min_price_micro_per_kwh"] == found["max_price_micro_per_kwh"] == price
    assert found["keys"] >= 1 and found["responses"] >= 1 and found["energy_wh"] == 600
    assert market["dht_stored_offers"] == len(buyer.dht.storage)
    assert (await sell.get("market"))["discovery"] is None      # the seller never looked


async def check_trades_and_balance(s, sell: ApiClient, buy: ApiClient) -> None:
    seller, buyer = s.nodes
    bought = (await buy.get("trades"))
    assert bought["total"] == 2
    newest, oldest = bought["trades"]
    assert (newest["role"], newest["status"], newest["energy_wh"]) == ("buyer", "agreed", 200)
    assert newest["delivered_wh"] is None and newest["counterparty"] == seller.public.hex()
    assert (oldest["status"], oldest["delivered_wh"], oldest["energy_wh"]) == ("settled", 300, 300)
    for trade in bought["trades"]:
        assert trade["trade_id"] in {t.hex() for t in buyer.bought}
        assert trade["decision_ms"] > 0 and trade["messages"] >= 2
        assert trade["cost_micro"] == cost_micro(trade["energy_wh"], trade["price_micro_per_kwh"])
    sold = (await sell.get("trades"))["trades"]
    assert [(t["role"], t["status"]) for t in sold] == [("seller", "agreed"), ("seller", "settled")]
    assert [t["trade_id"] for t in sold] == [t["trade_id"] for t in bought["trades"]]
    assert all(t["decision_ms"] is None for t in sold)
    assert [t["trade_id"] for t in (await buy.get("trades?limit=1"))["trades"]] == \
        [newest["trade_id"]]
    spent = sum(t["cost_micro"] for t in bought["trades"])
    balance = await buy.get("balance")
    assert balance["credit_micro"] == CREDIT_MICRO - spent == buyer.ledger.credit_micro
    assert balance["credit"] == pytest.approx(balance["credit_micro"] / 1e6)
    assert balance["tokens"] == [] and balance["balance_state"] == "deficit"
    tokens = (await sell.get("balance"))["tokens"]
    assert tokens == [{"interval_start_s": START + INTERVAL_S, "tokens_wh": 400},
                      {"interval_start_s": START, "tokens_wh": 500}]


async def check_blocks_and_ledger(s, buy: ApiClient) -> None:
    seller, buyer = s.nodes
    head = buyer.ledger.state.seq
    pages, after = [], 0
    while after is not None:
        page = await buy.get(f"blocks?after={after}&limit=2")
        assert page["author"] == buyer.public.hex() and page["head_seq"] == head
        assert len(page["blocks"]) <= 2
        pages += page["blocks"]
        after = page["next_after"]
    assert [b["seq"] for b in pages] == list(range(1, head + 1))
    own = [open_envelope(raw, BlockBody)[0] for raw in buyer.ledger.store.chain(buyer.public)]
    assert [b["hash"] for b in pages] == [b.hash.hex() for b in own]
    assert [b["type"] for b in pages] == [b.message.type.name for b in own]
    assert all(b["signature_valid"] for b in pages)
    halves = (await buy.get(f"blocks?author={seller.public.hex()}"))["blocks"]
    assert halves and all(b["author"] == seller.public.hex() for b in halves)
    assert {b["type"] for b in halves} <= {"TRADE", "SETTLEMENT"}
    assert (await buy.get("blocks?after=999"))["blocks"] == []
    for query, field in (("author=zz", "author"), ("author=" + "ab" * 31, "author"),
                         ("after=-1", "after"), ("limit=501", "limit"), ("limit=x", "limit"),
                         ("page=2", "page")):
        error = await buy.get(f"blocks?{query}", status=400)
        assert error["field"] == field, error
    ledger = await buy.get("ledger")
    store = buyer.ledger.store
    assert ledger["blocks"] == store.count() > head      # own chain and the seller's halves
    assert (ledger["head_seq"], ledger["head_hash"]) == (head, buyer.ledger.state.head.hex())
    assert ledger["authors"] == 2 and ledger["forks"] == 0
    assert ledger["audit"] == {"ok": True, "blocks_checked": store.count(), "problem_count": 0,
                               "problems": [], "pending_proposals": ledger["audit"]["pending_proposals"]}


async def check_metrics(s, sell: ApiClient, buy: ApiClient) -> None:
    seller, buyer = s.nodes
    # an invalid message to the seller's peer endpoint is dropped and counted
    async with buy.session.post(f"http://{seller.endpoint}/p2p/v1/negotiate",
                                data=b"not a sealed request") as response:
        assert response.status == 400
    reasons = {k: v for k, v in seller.counters.items() if k.startswith("peer_dropped_")}
    assert sum(reasons.values()) == 1
    response, text = await sell.call("GET", "/metrics")
    assert response.headers["Content-Type"].startswith("text/plain")
    reason = next(iter(reasons))[len("peer_dropped_"):]
    assert metric(text, "p2p_dropped_messages_total", source="peer", reason=reason) == 1
    assert metric(text, "p2p_ledger_trades_total", side="seller") == 2
    assert metric(text, "p2p_energy_kwh_total", flow="sold") == pytest.approx(0.3)
    assert metric(text, "p2p_energy_kwh_total", flow="grid_export") == pytest.approx(0.5)
    assert metric(text, "p2p_own_offers") == 1
    assert metric(text, "p2p_intervals_total") == 1
    _, text = await buy.call("GET", "/metrics")
    assert metric(text, "p2p_ledger_trades_total", side="buyer") == 2
    assert metric(text, "p2p_ledger_settlements_total", side="buyer") == 1
    assert metric(text, "p2p_energy_kwh_total", flow="bought") == pytest.approx(0.3)
    assert metric(text, "p2p_discoveries_total") == buyer.counters["discoveries"] == 2
    assert metric(text, "p2p_negotiation_seconds_count") == 2
    latencies = sorted(t.decision_ms / 1000 for t in buyer.bought.values())
    assert metric(text, "p2p_negotiation_seconds_sum") == pytest.approx(sum(latencies))
    assert metric(text, "p2p_negotiation_seconds_bucket", le="+Inf") == 2
    assert metric(text, "p2p_dht_stored_offers") == len(buyer.dht.storage)
    assert metric(text, "p2p_credit_micro") == buyer.ledger.credit_micro
    assert metric(text, "p2p_node_events_total", event="trades_bought") == 2


async def check_an_unconfirmed_sale(s, sell: ApiClient) -> None:
    """A buyer that never confirms leaves the seller's trade "proposed"."""
    seller = s.nodes[0]
    (offer,) = seller.own_offers()
    stranger = key(7)
    request = seal(PeerRequest(
        sender=stranger.public, recipient=seller.public, kind=Kind.REQUEST,
        trade_id=os.urandom(16), nonce=os.urandom(16), sent_at_ms=int(s.clock() * 1000),
        offer_id=offer.offer_id, interval_start_s=offer.interval_start_s, energy_wh=50,
        price_micro_per_kwh=offer.price_micro_per_kwh,
        blocks=(deposit_block(stranger, ISSUER, CREDIT_MICRO, b"s" * 16),)), stranger)
    async with sell.session.post(f"http://{seller.endpoint}/p2p/v1/negotiate",
                                 data=request.raw) as response:
        assert response.status == 200
    trades = await sell.get("trades")
    newest = trades["trades"][0]
    assert trades["total"] == 3
    assert (newest["trade_id"], newest["status"]) == (request.message.trade_id.hex(), "proposed")
    assert (newest["counterparty"], newest["energy_wh"]) == (stranger.public.hex(), 50)


# -- authentication ----------------------------------------------------------------------------------

def test_only_the_right_bearer_token_opens_the_api(tmp_path):
    async def main():
        async with swarm([[100]], tmp_path, market=EX_POST) as s:
            async with serving(s.nodes) as (apis, (client,)):
                for token in (None, "", "wrong-token-0123456789", TOKEN + "x", TOKEN[:-1],
                              TOKEN.upper()):
                    for path in ("status", "trades", "settings", "does-not-exist"):
                        response, error = await client.call(
                            "GET", f"{API_PREFIX}/{path}", token=token, status=401)
                        assert "bearer token" in error["error"] and error["field"] is None
                        assert response.headers["WWW-Authenticate"].startswith("Bearer")
                    await client.call("GET", "/metrics", token=token, status=401)
                    await client.call("PUT", f"{API_PREFIX}/settings", token=token,
                                      body={**SETTINGS, "opt_out": "all"}, status=401)
                assert s.nodes[0].config.constraints.opt_out == "none"
                async with client.session.get(client.url + "api/v1/status",
                                              headers={"Authorization": f"Basic {TOKEN}"}) as r:
                    assert r.status == 401
                # public: health, the API description and the page's files (no data in them)
                assert (await client.get("health", token=None))["ok"] is True
                _, doc = await client.call("GET", f"{API_PREFIX}/openapi.json", token=None)
                assert doc["servers"] == [{"url": client.url.rstrip("/")}]
                response, html = await client.call("GET", "/", token=None)
                assert response.content_type == "text/html" and "app.js" in html
                assert "default-src 'none'" in response.headers["Content-Security-Policy"]
                response, script = await client.call("GET", "/dashboard/app.js", token=None)
                assert "Authorization" in script
                await client.call("GET", "/dashboard/../api.py", token=None, status=404)
                # with the token: unknown routes and methods are JSON errors too
                error = await client.get("does-not-exist", status=404)
                assert error["error"] == "Not Found"
                await client.call("POST", f"{API_PREFIX}/status", body={}, status=405)
                assert (await client.get("status"))["public_key"] == s.nodes[0].public.hex()

    run(main())


def test_the_token_file_must_exist_hold_a_token_and_be_private(tmp_path):
    missing = tmp_path / "missing.token"
    with pytest.raises(ApiError, match=f"{missing} does not exist"):
        load_token(missing)
    path = tmp_path / "api.token"
    token = create_token_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(token) >= 32
    assert load_token(path) == token
    with pytest.raises(ApiError, match="already exists"):
        create_token_file(path)
    path.chmod(0o640)
    with pytest.raises(ApiError, match=rf"{path} is accessible by others \(mode 0640\)"):
        load_token(path)
    for content, problem in (("", "is empty"), ("  \n", "is empty"),
                             ("short", "at least 16"), ("two words-0123456789", "one word")):
        bad = tmp_path / f"bad-{len(content)}.token"
        bad.write_text(content)
        bad.chmod(0o600)
        with pytest.raises(ApiError, match=problem) as info:
            load_token(bad)
        assert str(bad) in str(info.value)


def test_the_api_names_a_port_it_cannot_bind(tmp_path):
    async def main():
        async with swarm([[100]], tmp_path, market=EX_POST) as s:
            async with serving(s.nodes) as (apis, _):
                second = ApiServer(s.nodes[0], TOKEN)
                with pytest.raises(ApiError, match=f"cannot bind the local API to 127.0.0.1:{apis[0].port}"):
                    await second.start("127.0.0.1", apis[0].port)

    run(main())


# -- settings ------------------------------------------------------------------------------------------

BAD_SETTINGS = [
    ({**SETTINGS, "reserve_wh": -5}, "reserve_wh", "[constraints] reserve_wh = -5: must be"),
    ({**SETTINGS, "max_trade_wh": 0}, "max_trade_wh", "max_trade_wh = 0"),
    ({**SETTINGS, "max_trade_wh": 1.5}, "max_trade_wh", "must be an integer"),
    ({**SETTINGS, "reserve_wh": True}, "reserve_wh", "must be an integer"),
    ({**SETTINGS, "min_sell_price_per_kwh": 101}, "min_sell_price_per_kwh", "between 0"),
    ({**SETTINGS, "max_buy_price_per_kwh": "0.3"}, "max_buy_price_per_kwh", "must be a number"),
    ({**SETTINGS, "max_buy_price_per_kwh": None}, "max_buy_price_per_kwh", "must be a number"),
    ({**SETTINGS, "opt_out": "sometimes"}, "opt_out", "must be one of none, selling"),
    ({**SETTINGS, "reserve": 5}, "reserve", "unknown field 'reserve'"),
    ({k: v for k, v in SETTINGS.items() if k != "opt_out"}, "opt_out", "'opt_out' is missing"),
]


def test_settings_are_replaced_whole_or_not_at_all(tmp_path):
    async def main():
        async with swarm([[700], [-300]], tmp_path, market=EX_POST) as s:
            node = s.nodes[0]
            async with serving(s.nodes[:1]) as (_, (client,)):
                before = node.config
                for body, field, message in BAD_SETTINGS:
                    _, error = await client.call("PUT", f"{API_PREFIX}/settings", body=body,
                                                 status=400)
                    assert error["field"] == field and message in error["error"], error
                    assert node.config is before
                for data, message in (("{", "not valid JSON"), ("", "not valid JSON"),
                                      ("[1, 2]", "must be a JSON object"),
                                      ('"none"', "must be a JSON object"),
                                      ('{"reserve_wh": %s}' % ("9" * 5000), "5000 characters"),
                                      ("[" * 5_000 + "]" * 5_000, "nested too deeply"),
                                      ('{"reserve_wh": NaN}', "NaN is not a number")):
                    _, error = await client.call("PUT", f"{API_PREFIX}/settings", data=data,
                                                 status=400)
                    assert message in error["error"] and error["field"] is None
                    assert node.config is before
                _, error = await client.call("GET", f"{API_PREFIX}/trades?limit={'9' * 5000}",
                                             status=400)
                assert error["field"] == "limit"
                _, error = await client.call("PUT", f"{API_PREFIX}/settings?x=1", body=SETTINGS,
                                             status=400)
                assert error["field"] == "x" and node.config is before
                wanted = {**SETTINGS, "min_sell_price_per_kwh": 0.12, "reserve_wh": 250,
                          "max_trade_wh": 100, "opt_out": "buying"}
                _, answer = await client.call("PUT", f"{API_PREFIX}/settings", body=wanted)
                assert answer == wanted == await client.get("settings")
                assert node.config.constraints == Constraints(**wanted)
                assert dict(vars(node.config), constraints=None) == \
                    dict(vars(before), constraints=None)        # nothing else changed
                await step(s, 0, ("open",))                      # the node obeys the new limits
                (offered,) = (await client.get("offers"))["offers"]
                assert offered["energy_wh"] == 700 - 250
                assert offered["price_micro_per_kwh"] >= 120_000
                await step(s, 0, ("buy", "settle", "close"))
                sold = [t["energy_wh"] for t in (await client.get("trades"))["trades"]]
                assert sold and max(sold) <= 100

    run(main())


# -- the pure parts --------------------------------------------------------------------------------------

def test_the_openapi_document_is_valid_and_closed():
    openapi_spec_validator.validate(DOC)
    for name, schema in DOC["components"]["schemas"].items():
        if schema.get("type") == "object" and name != "Block":
            assert schema["additionalProperties"] is False, name
            assert set(schema["required"]) == set(schema["properties"]), name


def test_recording_meter_keeps_the_latest_readings():
    meter = RecordingMeter(ProfileMeter(0, 900, [1, 2, 3, 4, 5], [0, 0, 0, 0, 9]), keep=3)
    assert meter.latest() is None
    for index in (0, 1, 2, 3, 4):
        reading = meter.read(index * 900, 900)
    assert list(meter.recent) == [1800, 2700, 3600]
    assert meter.latest() is reading and reading.net_wh == -4
    meter.read(1800, 900)                                # re-reading moves it to the end
    assert list(meter.recent) == [2700, 3600, 1800]


def test_drops_are_sorted_out_by_source_and_reason():
    node = {"peer_dropped_bad_signature": 2, "reply_dropped_wrong_nonce": 1, "dropped_wrong_sig": 3,
            "denied_sold_out": 4, "trades_bought": 5}
    dht = {"bad_datagram": 6, "rpc_timeout": 7, "stored_expired": 8, "found_wrong_key": 9}
    assert drop_counters(node, dht) == [
        ("proposal", "wrong_sig", 3), ("peer", "bad_signature", 2), ("reply", "wrong_nonce", 1),
        ("dht", "bad_datagram", 6), ("dht_lookup", "wrong_key", 9), ("dht_store", "expired", 8)]


def test_histogram_buckets_are_cumulative():
    assert histogram_buckets([0.04, 0.3, 3.0, 60.0], (0.05, 0.5, 5.0)) == [
        ("0.05", 1.0), ("0.5", 2.0), ("5.0", 3.0), ("+Inf", 4.0)]
    assert histogram_buckets([], (1.0,)) == [("1.0", 0.0), ("+Inf", 0.0)]


# -- configuration and the daemon --------------------------------------------------------------------

def test_the_api_section_of_the_config_is_checked(tmp_path):
    config = config_from_dict({"api": {"enabled": True, "port": 8080, "token_file": "api.token"}},
                              base=tmp_path)
    assert config.api == ApiConfig(True, "127.0.0.1", 8080, tmp_path / "api.token")
    assert config_from_dict({}).api == ApiConfig(enabled=False, host="127.0.0.1", port=0)
    for table, message in (
            ({"prot": 1}, '[api] prot = 1: unknown key; did you mean "port"?'),
            ({"enabled": True}, "[api] token_file: is required when the API is enabled"),
            ({"port": 70000}, "[api] port = 70000: must be between 0 and 65535"),
            ({"enabled": "yes"}, '[api] enabled = "yes": must be true or false'),
            ({"host": 5}, "[api] host = 5: must be a string"),
            ({"token_file": ""}, '[api] token_file = "": must be a path (a non-empty string)')):
        with pytest.raises(ConfigError) as info:
            config_from_dict({"api": table})
        assert str(info.value) == message


def _daemon_files(tmp_path, token_mode=0o600):
    create_key_file(tmp_path / "node.key")
    token_file = tmp_path / "api.token"
    create_token_file(token_file)
    token_file.chmod(token_mode)
    rows = "\n".join(f"{START + i * INTERVAL_S},{500 + i},{100}" for i in range(8))
    (tmp_path / "meter.csv").write_text("interval_start_s,generation_wh,consumption_wh\n" + rows)
    (tmp_path / "node.toml").write_text(
        'key_file = "node.key"\nledger = "node.db"\n[meter]\npath = "meter.csv"\n'
        '[api]\nenabled = true\ntoken_file = "api.token"\n')
    return tmp_path / "node.toml", token_file


def test_the_daemon_serves_the_api_and_logs_json(tmp_path):
    config, token_file = _daemon_files(tmp_path)

    async def main():
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "p2pnode.cli", "run", "--config", str(config),
            "--start", "2026-07-01T12:00:00Z", "--log-format", "json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            line = json.loads(await asyncio.wait_for(process.stdout.readline(), 60))
            assert line["api"].startswith("http://127.0.0.1:")
            async with aiohttp.ClientSession() as session:
                client = ApiClient(session, line["api"], load_token(token_file))
                status = await client.get("status")
                assert status["public_key"] == line["public_key"]
                assert status["dht_address"] == line["dht"]
                assert status["peer_endpoint"] == line["peer"]
                assert (await client.get("health", token=None))["ok"] is True
                await client.get("status", token="not-the-token-0000", status=401)
        finally:
            process.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        assert json.loads(out.decode().splitlines()[-1])["stopped"] is True
        logs = [json.loads(text) for text in err.decode().splitlines()]   # every line is JSON
        refused = [entry for entry in logs if "refused GET /api/v1/status" in entry["message"]]
        assert refused and refused[0]["level"] == "INFO" and refused[0]["logger"] == "p2pnode.api"
        assert all(set(entry) >= {"time", "level", "logger", "message"} for entry in logs)

    run(main())


def test_the_daemon_refuses_a_token_file_others_can_read(tmp_path, capsys):
    from p2pnode.cli import main
    config, token_file = _daemon_files(tmp_path, token_mode=0o644)
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"API token file {token_file} is accessible by others (mode 0644)" in err
    assert not (tmp_path / "node.db").exists()           # refused before anything started
    os.chmod(token_file, 0o600)
    token_file.write_text("")
    assert main(["run", "--config", str(config)]) == 2
    assert f"API token file {token_file} is empty" in capsys.readouterr().err


def test_a_fast_replay_trades_its_first_interval_too(tmp_path):
    """``--speed 900 --intervals 2``: node time starts when the node is up (DHT, peer endpoint,
    predictor), so the first interval it can trade (the next one: traded ahead of delivery) is
    not already past when trading begins, and both intervals close before the daemon stops."""
    create_key_file(tmp_path / "node.key")
    rows = "\n".join(f"{START + i * INTERVAL_S},{600 + i},{100}" for i in range(4))
    (tmp_path / "meter.csv").write_text("interval_start_s,generation_wh,consumption_wh\n" + rows)
    (tmp_path / "node.toml").write_text(
        'key_file = "node.key"\nledger = "node.db"\n[meter]\npath = "meter.csv"\n')

    async def main():
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "p2pnode.cli", "run", "--config", str(tmp_path / "node.toml"),
            "--speed", "900", "--start", "2026-07-01T12:00:00Z", "--intervals", "2",
            "--log-level", "WARNING",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, err.decode()
        assert json.loads(out.decode().splitlines()[-1])["stopped"] is True

    run(main())
    from ledger import BlockType, LedgerStore
    store = LedgerStore(tmp_path / "node.db")
    try:
        bodies = [open_envelope(raw, BlockBody)[0].message for *_, raw in store.raw_blocks()]
    finally:
        store.close()
    minted = [b.payload.reading.interval_start_s for b in bodies if b.type is BlockType.MINT]
    grid = [b.payload.interval_start_s for b in bodies if b.type is BlockType.GRID]
    assert minted == grid == [START + INTERVAL_S, START + 2 * INTERVAL_S]
    exported = [b.payload.export_wh for b in bodies if b.type is BlockType.GRID]
    assert exported == [501, 502]                 # no buyer: each interval's surplus to the grid
