"""The dashboard page in a real browser (headless Chromium) against a trading node's API.

Chromium only ever reaches 127.0.0.1: every other address goes to a dead proxy on loopback.
``DASHBOARD_SCREENSHOT=path`` keeps a copy of the screenshot (docs/dashboard.png is made so),
``DASHBOARD_FEEDER_SCREENSHOT=path`` the one of a feeder node (docs/dashboard_feeder.png).
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from ledger import seal
from p2pnode.api import ApiServer
from p2pnode.config import FeederRoleConfig, NodeConfig
from p2pnode.feeder_role import FeederRole
from p2pnode.feeder_report import FeederReport
from tests.dhtkit import run as strict_run
from p2pnode.config import MarketConfig
from tests.nodekit import INTERVAL_S, START, key, swarm

EX_POST = MarketConfig(mode="ex_post")   # the API shows state: one interval after another
from tests.test_api import TOKEN, serving, step

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (apt-get install chromium) to load the page")

WINDOW = (1280, 2000)
BUDGET_MS = 4000
GENERATION_RGB = (0x2e, 0x9d, 0x4f)
SOLD_RGB = (0x2f, 0x6f, 0xd6)
TRANSFORMER_RGB = (0xd4, 0xa0, 0x17)
LOSS_RGB = (0xd1, 0x3f, 0x8f)
ALERT_RGB = (0xc9, 0x35, 0x35)
FEEDER_WINDOW = (1280, 2300)
# Nets per interval (+ surplus, - deficit).  Node 0 is shown: it sells and buys on turns; the
# last interval is only opened, so the page has an open offer.
NETS = [[900, 700, -400, 600, -300, 800, -250, 500, 650],
        [-400, -300, 500, -350, 400, -500, 300, -200, -300],
        [-300, 200, -200, -250, -150, 300, -100, -250, 200]]


def run(coro):
    return strict_run(coro, timeout_s=240)


async def chromium(tmp_path, url: str, *args: str) -> str:
    """Run headless Chromium on ``url`` for a virtual-time budget; its stdout."""
    command = [CHROMIUM, "--headless", "--disable-gpu", "--no-first-run",
               f"--user-data-dir={tmp_path / 'chromium-profile'}",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-default-apps", "--disable-extensions",
               "--proxy-server=127.0.0.1:9",          # anything not on loopback goes nowhere
               f"--virtual-time-budget={BUDGET_MS}", *args, url]
    if os.geteuid() == 0:
        command.insert(1, "--no-sandbox")            # Chromium refuses root otherwise
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()[-2000:]
    return out.decode()


def element(dom: str, element_id: str) -> str:
    """The opening tag of the element with ``element_id``."""
    match = re.search(rf'<[a-z]+[^>]*\bid="{element_id}"[^>]*>', dom)
    assert match, f"no element #{element_id}"
    return match.group(0)


def text_of(dom: str, element_id: str) -> str:
    match = re.search(rf'\bid="{element_id}"[^>]*>(.*?)</', dom, re.S)
    assert match, f"no element #{element_id}"
    return html.unescape(match.group(1))


def test_the_page_shows_the_node_with_the_token_from_the_fragment(tmp_path):
    async def main():
        async with swarm(NETS, tmp_path, market=EX_POST) as s:
            node = s.nodes[0]
            async with serving([node]) as (apis, _):
                for index in range(len(NETS[0]) - 1):
                    await step(s, index)
                await step(s, len(NETS[0]) - 1, ("open",))
                await asyncio.sleep(0.1)
                url = apis[0].url
                dom = await chromium(tmp_path, f"{url}#token={TOKEN}", "--dump-dom")
                check_dom(dom, node)
                png = tmp_path / "dashboard.png"
                await chromium(tmp_path, f"{url}#token={TOKEN}", "--hide-scrollbars",
                               f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={png}")
                check_screenshot(png)
                if os.environ.get("DASHBOARD_SCREENSHOT"):
                    shutil.copy(png, os.environ["DASHBOARD_SCREENSHOT"])

    run(main())


def check_dom(dom: str, node) -> None:
    assert "hidden" not in element(dom, "main") and "hidden" in element(dom, "login")
    assert text_of(dom, "public-key") == node.public.hex()
    assert text_of(dom, "balance-state") == "surplus"
    assert text_of(dom, "health") == "DHT and peer endpoint up"
    trades = node.ledger.state.trades
    rows = re.findall(r'<tr class="trade-row" data-trade-id="([0-9a-f]+)">', dom)
    assert rows and set(rows) <= {t.hex() for t in trades}
    assert len(rows) == min(len(trades), 20)
    assert re.search(r'<td class="status-settled">settled</td>', dom)
    assert ">bought<" in dom and ">sold<" in dom
    (offer,) = node.own_offers()
    offer_rows = re.findall(r'<tr class="offer-row">(.*?)</tr>', dom, re.S)
    assert len(offer_rows) == 1 and f"{offer.energy_wh:,}" in offer_rows[0]
    assert re.findall(r'<tr class="market-row">', dom)          # the last discovery's offers
    assert text_of(dom, "ledger-hash") == node.ledger.state.head.hex()
    assert text_of(dom, "ledger-audit").startswith("ok: ")
    assert text_of(dom, "ledger-head") == f"{node.ledger.state.seq} blocks"
    bars = re.search(r'<svg id="flows".*?</svg>', dom, re.S).group(0)
    assert bars.count("<rect") >= 2 * len(node.reports)       # generation and consumption
    assert "This node has no feeder role" in dom
    assert TOKEN not in dom                                     # the fragment was taken away


def check_screenshot(png) -> None:
    image = Image.open(png)
    assert image.format == "PNG" and image.size == WINDOW
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    colours, counts = np.unique(pixels[::97], axis=0, return_counts=True)
    background = colours[counts.argmax()]
    assert np.any(pixels != background, axis=1).mean() > 0.2     # not an empty page

    def share(rgb) -> int:
        return int(np.all(np.abs(pixels - rgb) <= 6, axis=1).sum())

    assert share(GENERATION_RGB) > 2000                           # the chart is drawn
    assert share(SOLD_RGB) > 500


def test_the_page_asks_for_the_token_and_refuses_a_wrong_one(tmp_path):
    async def main():
        async with swarm([[100]], tmp_path, market=EX_POST) as s:
            async with serving(s.nodes) as (apis, _):
                url = apis[0].url
                dom = await chromium(tmp_path, url, "--dump-dom")
                assert "hidden" in element(dom, "main") and "hidden" not in element(dom, "login")
                assert text_of(dom, "public-key") == ""             # no data without a token
                dom = await chromium(tmp_path, f"{url}#token=wrong-token-0123456789", "--dump-dom")
                assert "hidden" not in element(dom, "login")
                assert text_of(dom, "login-error") == "the node refused the token"
                assert s.nodes[0].public.hex() not in dom

    run(main())


# -- a feeder node ---------------------------------------------------------------------------------

# Six members over twelve intervals (generation, consumption Wh): two PV houses, four others;
# member 5 misses interval 4.  The transformer reads the net load plus LOSS_WH: the loss grows
# at the end and stays above 300 Wh for the last three intervals (alert after two).
PV = [1800, 2100, 2300, 2400, 2500, 2400, 2300, 2100, 1900, 1600, 1300, 1000]
MEMBERS = [[(pv, 300) for pv in PV], [(pv // 2, 500) for pv in PV]] + \
    [[(0, 400 + 60 * ((k * (m + 3)) % 7)) for k in range(12)] for m in range(4)]
LOSS_WH = [90, 110, 95, 120, 100, 130, 150, 170, 260, 340, 420, 480]


async def feeder_role(tmp_path, node, clock) -> FeederRole:
    """A started feeder role beside ``node`` whose transformer CSV fits :func:`feed`."""
    rows = []
    for k in range(12):
        present = [m for m in range(6) if (m, k) != (5, 4)]
        g = sum(MEMBERS[m][k][0] for m in present)
        c = sum(MEMBERS[m][k][1] for m in present)
        rows.append(f"{START + k * INTERVAL_S},{c - g + LOSS_WH[k]}\n")
    (tmp_path / "transformer.csv").write_text("interval_start_s,transformer_wh\n" + "".join(rows))
    config = NodeConfig(feeder=node.config.feeder, interval_s=INTERVAL_S,
                        ledger=tmp_path / "feeder.db", feeder_role=FeederRoleConfig(
        enabled=True, transformer_meter=tmp_path / "transformer.csv", loss_threshold_kwh=0.3,
        persistence=2, grace_s=60, network="kerber_dorfnetz",
        members=tuple(key(100 + m).public.hex() for m in range(6))))
    role = FeederRole(config, node.key, clock)
    await role.start()
    return role


def feed(role: FeederRole, clock) -> None:
    """Twelve intervals of signed member reports, each interval closed after its grace."""
    members = [key(100 + m) for m in range(6)]
    for k in range(12):
        start = START + k * INTERVAL_S
        clock.now_s = start + INTERVAL_S
        for m in range(6):
            if (m, k) == (5, 4):
                continue
            g, c = MEMBERS[m][k]
            raw = seal(FeederReport(members[m].public, role.settings.feeder, start, INTERVAL_S,
                                    g, c), members[m]).raw
            assert role.on_report(raw)[0] == 200
        clock.now_s = start + INTERVAL_S + 60
        assert [b.interval_start_s for b in role.close_due()] == [start]


def test_the_feeder_panel_shows_the_books_of_a_feeder_node(tmp_path):
    async def main():
        async with swarm(NETS, tmp_path, market=EX_POST) as s:
            node = s.nodes[0]
            s.clock.now_s = START
            role = await feeder_role(tmp_path, node, s.clock)
            api = ApiServer(node, TOKEN, feeder=role)    # from the start: it records readings
            await api.start("127.0.0.1", 0)
            try:
                for index in range(4):
                    await step(s, index)
                feed(role, s.clock)
                dom = await chromium(tmp_path, f"{api.url}#token={TOKEN}", "--dump-dom")
                check_feeder_dom(dom, role)
                png = tmp_path / "dashboard_feeder.png"
                await chromium(tmp_path, f"{api.url}#token={TOKEN}", "--hide-scrollbars",
                               f"--window-size={FEEDER_WINDOW[0]},{FEEDER_WINDOW[1]}",
                               f"--screenshot={png}")
            finally:
                await api.stop()
            check_feeder_screenshot(png)
            if os.environ.get("DASHBOARD_FEEDER_SCREENSHOT"):
                shutil.copy(png, os.environ["DASHBOARD_FEEDER_SCREENSHOT"])

    run(main())


def check_feeder_dom(dom: str, role) -> None:
    assert "hidden" in element(dom, "feeder-role") and "hidden" not in element(dom, "feeder-books")
    assert "wide" in element(dom, "feeder-card")
    assert text_of(dom, "feeder-alert") == "loss alert (3 intervals)"
    assert "alert" in element(dom, "feeder-alert")
    last = role.book.history[-1]
    assert last.loss_wh == LOSS_WH[-1] and last.alert
    assert text_of(dom, "feeder-latest") == (
        f"14:45: G {last.generation_wh / 1000:.2f} kWh, C {last.consumption_wh / 1000:.2f} kWh, "
        f"T {last.transformer_wh / 1000:.2f} kWh, loss 0.48 kWh")
    assert text_of(dom, "feeder-members") == "6 reporting, 1 missing of 7 configured"   # the node itself: not wired here
    net = last.network
    assert text_of(dom, "feeder-loading").startswith(f"{net.max_trafo_loading_percent:.1f} % loaded")
    assert text_of(dom, "feeder-voltage").startswith(f"{net.vm_min_pu:.3f} (bus {net.vm_min_bus})")
    rows = re.findall(r'<tr class="feeder-row">(.*?)</tr>', dom, re.S)
    assert len(rows) == 8 and ">ALERT<" in rows[0] and ">480<" in rows[0]
    assert ">ALERT<" not in rows[-1] and ">100<" in rows[-1]       # interval 4: loss 100 Wh
    assert ">5 / 7<" in rows[-1] and ">6 / 7<" in rows[0]
    chart = re.search(r'<svg id="feeder-chart".*?</svg>', dom, re.S).group(0)
    assert chart.count("<rect") == 3 * 12 and chart.count("<circle") == 12
    assert "<polyline" in chart


def check_feeder_screenshot(png) -> None:
    image = Image.open(png)
    assert image.format == "PNG" and image.size == FEEDER_WINDOW
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)

    def share(rgb) -> int:
        return int(np.all(np.abs(pixels - rgb) <= 6, axis=1).sum())

    assert share(TRANSFORMER_RGB) > 2000                          # T bars are drawn
    assert share(LOSS_RGB) > 1000                                 # the loss line and dots
    assert share(ALERT_RGB) > 300                                 # the alert badge
