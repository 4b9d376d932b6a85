"""Schemathesis against the running local API: every documented operation, generated requests.

A real node (two, trading on loopback) serves its API on 127.0.0.1, port 0, in an event-loop
thread run by the strict runner; schemathesis reads the node's own OpenAPI document
(``GET /api/v1/openapi.json``), generates a bounded number of requests per operation from it
(valid and invalid bodies, query strings, headers) and checks every answer: no 5xx, a documented
status code, the documented content type and a body that validates against the documented
schema.
"""

from __future__ import annotations

import asyncio
import threading

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck

from p2pnode.api import ApiServer
from tests.dhtkit import run
from tests.nodekit import swarm

TOKEN = "t0ken-for-schemathesis-0123456789"
EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def api_url(tmp_path_factory):
    """The URL of a running node's API (the loop runs in its own thread until the tests end)."""
    tmp_path = tmp_path_factory.mktemp("schemathesis")
    ready, done = threading.Event(), threading.Event()
    where: dict = {}

    async def serve():
        async with swarm([[1500, -800], [-1200, 900]], tmp_path) as s:
            await s.interval(0)                       # something to show: trades, blocks
            api = ApiServer(s.nodes[0], TOKEN)
            await api.start("127.0.0.1", 0)
            try:
                where["url"] = api.url
                ready.set()
                while not done.is_set():
                    await asyncio.sleep(0.05)
            finally:
                await api.stop()

    def thread_main():
        try:
            run(serve())
        except BaseException as exc:   # reported to the test below
            where["error"] = exc
            ready.set()

    thread = threading.Thread(target=thread_main, name="api under schemathesis")
    thread.start()
    assert ready.wait(120), "the node did not start"
    try:
        assert "error" not in where, where.get("error")
        yield where["url"].rstrip("/")
    finally:
        done.set()
        thread.join(60)
    assert "error" not in where, where.get("error")


def _operations(url: str):
    document = requests.get(f"{url}/api/v1/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    return [result.ok() for result in schema.get_all_operations()]


def test_every_documented_operation_against_the_running_api(api_url):
    operations = _operations(api_url)
    assert len(operations) >= 10
    session = requests.Session()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    calls: dict[str, int] = {}

    for operation in operations:
        @hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
                             derandomize=True, database=None,
                             suppress_health_check=list(HealthCheck))
        @hypothesis.given(case=operation.as_strategy())
        def check(case):
            case.call_and_validate(base_url=api_url, session=session, headers=headers,
                                   timeout=10)
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1

        check()
    assert len(calls) == len(operations)
    assert sum(calls.values()) >= 2 * len(operations)


def test_integral_float_for_an_integer_setting_is_accepted():
    # found by schemathesis: JSON Schema's "integer" includes 672.0, the API answered 400
    from p2pnode.api_views import BadRequest, parse_settings_body
    body = (b'{"reserve_wh": 672.0, "max_buy_price_per_kwh": 0.3, "max_trade_wh": 2848747, '
            b'"opt_out": "none", "min_sell_price_per_kwh": 0.1}')
    assert parse_settings_body(body).reserve_wh == 672
    with pytest.raises(BadRequest, match="reserve_wh"):
        parse_settings_body(body.replace(b"672.0", b"672.5"))
