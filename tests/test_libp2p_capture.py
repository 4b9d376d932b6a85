"""Nothing in clear: tcpdump on loopback, restricted to the nodes' peer ports, while two nodes
trade.  Over HTTP every field of the trade is in the capture (the control: the capture works);
over libp2p (Noise) none is.  Needs ``tcpdump`` and root (``.ci/run`` installs it)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess

import msgpack
import pytest

from ledger import BlockBody, BlockType, open_envelope
from tests.dhtkit import run
from tests.nodekit import swarm

TCPDUMP = shutil.which("tcpdump")
SETTLE_S = 0.5


def fields_in_msgpack_form(trade) -> dict[str, bytes]:
    """Each field of the trade as our messages carry it: msgpack key followed by value."""
    def field(name, value):
        return msgpack.packb(name) + msgpack.packb(value, use_bin_type=True)
    return {name: field(name, getattr(trade, name))
            for name in ("trade_id", "energy_wh", "price_micro_per_kwh", "seller", "buyer")}


def the_trade(node):
    for _, _, _, raw in node.ledger.store.raw_blocks():
        block = open_envelope(raw, BlockBody)[0].message
        if block.type is BlockType.TRADE:
            return block.payload
    raise AssertionError("no trade")


async def capture(ports: list[int], path) -> subprocess.Popen:
    expression = " or ".join(f"tcp port {p}" for p in ports)
    proc = subprocess.Popen([TCPDUMP, "-i", "lo", "-U", "-n", "-w", str(path), expression],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    line = await asyncio.to_thread(proc.stderr.readline)   # "listening on lo, ..."
    assert b"listening on" in line, line
    await asyncio.sleep(SETTLE_S)   # "listening" is printed a moment before packets are taken
    return proc


async def stop_capture(proc: subprocess.Popen) -> None:
    await asyncio.sleep(SETTLE_S)   # the last packets reach the capture
    proc.send_signal(signal.SIGINT)
    await asyncio.to_thread(proc.wait, 10)
    proc.stderr.close()


@pytest.mark.parametrize("transport, in_clear", [("http", True), ("libp2p", False)])
def test_no_field_of_a_trade_crosses_the_wire_in_clear(tmp_path, transport, in_clear):
    assert TCPDUMP, "tcpdump is not installed (.ci/run installs it)"
    pcap = tmp_path / "peer.pcap"

    async def main():
        async with swarm([[800], [-300]], tmp_path, transport=transport) as s:
            seller, buyer = s.nodes
            proc = await capture([seller.peer_server.port, buyer.peer_server.port], pcap)
            try:
                await s.interval(0)
            finally:
                await stop_capture(proc)
            assert seller.reports[0].sold_wh == 300
            return the_trade(seller)

    trades = []

    async def record():
        trades.append(await main())

    run(asyncio.wait_for(record(), 120))
    trade = trades[0]
    wire = pcap.read_bytes()
    assert len(wire) > 3000, "the capture holds the REQUEST/CONFIRM/SETTLE exchanges"
    found = {name for name, needle in fields_in_msgpack_form(trade).items() if needle in wire}
    if in_clear:
        assert found == set(fields_in_msgpack_form(trade))    # the control: HTTP shows all
    else:
        assert found == set(), f"in clear over libp2p: {sorted(found)}"
        # nor the raw bytes of the keys and the trade id, whatever their framing
        for raw in (trade.trade_id, trade.seller, trade.buyer):
            assert raw not in wire
