"""The dashboard page in a real browser (headless Chromium) against a trading node's API.

Chromium only ever reaches 127.0.0.1: every other address goes to a dead proxy on loopback.
``DASHBOARD_SCREENSHOT=path`` keeps a copy of the screenshot (docs/dashboard.png is made so).
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

from tests.nodekit import swarm
from tests.test_api import TOKEN, serving, step

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (apt-get install chromium) to load the page")

WINDOW = (1280, 2000)
BUDGET_MS = 4000
GENERATION_RGB = (0x2e, 0x9d, 0x4f)
SOLD_RGB = (0x2f, 0x6f, 0xd6)
# Nets per interval (+ surplus, - deficit).  Node 0 is shown: it sells and buys on turns; the
# last interval is only opened, so the page has an open offer.
NETS = [[900, 700, -400, 600, -300, 800, -250, 500, 650],
        [-400, -300, 500, -350, 400, -500, 300, -200, -300],
        [-300, 200, -200, -250, -150, 300, -100, -250, 200]]


def run(coro):
    asyncio.run(asyncio.wait_for(coro, timeout=240))


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
        async with swarm(NETS, tmp_path) as s:
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
        async with swarm([[100]], tmp_path) as s:
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
