"""Two nodes trade on loopback, one interval each way, with only the base install.

Run by the python of the slim venv (``tests/test_slim_install.py``) from outside the source
tree, so what it imports is the installed wheel.  Prints one JSON line: per interval the energy
each node bought and sold, both ledgers' trade counts, the predictor in use and the top-level
modules the process loaded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import tempfile
from pathlib import Path

from ledger import CreditVoucher, SigningKey, seal
from p2pnode.config import CreditConfig, MarketConfig, NodeConfig, Timing
from p2pnode.dht.server import DHTSettings
from p2pnode.meter import ProfileMeter
from p2pnode.node import Node
from p2pnode.trading.schedule import events

from dhtkit import run   # the strict runner (this script runs from tests/, outside the package)

START = 1_782_907_200            # 2026-07-01 12:00 UTC
INTERVAL_S = 900
TIMING = Timing(buy_delay_s=1, window_s=60, request_timeout_s=0.5, attempts=4, max_rounds=4)
DHT = DHTSettings(ksize=10, rpc_timeout_s=0.5, lookup_timeout_s=3.0, publish_timeout_s=3.0)
NETS_WH = ([800, -300], [-300, 600])      # node 0 sells then buys; node 1 the other way round
MARKET = MarketConfig(mode="ex_post")     # on the metered energy: no forecaster history needed


class Clock:
    def __init__(self, now_s: float):
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def signing_key(name: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(name.encode()).digest())


async def trade(workdir: Path) -> dict:
    clock, issuer, nodes = Clock(START), signing_key("issuer"), []
    try:
        for i, nets in enumerate(NETS_WH):
            meter = ProfileMeter(START, INTERVAL_S, [max(n, 0) for n in nets],
                                 [max(-n, 0) for n in nets])
            config = NodeConfig(ledger=workdir / f"node-{i}.db", timing=TIMING,
                                location=f"0/{10 * i}/0", market=MARKET,
                                credit=CreditConfig(trusted_issuers=(issuer.public.hex(),)))
            node = Node(config, meter, key=signing_key(f"node {i}"), clock=clock, dht_settings=DHT)
            await node.start()
            node.deposit(seal(CreditVoucher(issuer.public, node.public, bytes([i]) * 16,
                                            50_000_000), issuer))
            nodes.append(node)
        await nodes[1].dht.bootstrap([nodes[0].dht.address])
        await nodes[0].dht.bootstrap([nodes[1].dht.address])
        starts = [START + index * INTERVAL_S for index in range(len(NETS_WH[0]))]
        for at, step, start in events(nodes[0].config, starts):
            clock.now_s = at
            await asyncio.gather(*(node.step(step, start) for node in nodes))
        intervals = [[{"bought_wh": n.reports[index].bought_wh,
                       "sold_wh": n.reports[index].sold_wh} for n in nodes]
                     for index in range(len(starts))]
        return {"intervals": intervals,
                "predictor": type(nodes[0].predictor).__module__,
                "counters": [dict(n.counters) for n in nodes]}
    finally:
        for node in nodes:
            await node.stop()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = run(trade(Path(tmp)), timeout_s=120)
    result["modules"] = sorted({name.partition(".")[0] for name in sys.modules})
    result["p2pnode_file"] = sys.modules["p2pnode"].__file__
    print(json.dumps(result))


if __name__ == "__main__":
    main()
