"""Interop with js-libp2p: a js peer (tests/interop/peer.mjs: TCP, Noise, yamux, identify, ping)
dials our node on loopback, completes Noise and yamux, identifies it and pings it; our node dials
the js peer and pings it.  Needs Node.js and ``npm ci`` in tests/interop (``.ci/run`` does it)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

from p2pnode.identity import peer_id
from tests.dhtkit import run
from tests.nodekit import swarm

INTEROP = Path(__file__).parent / "interop"
NODE = shutil.which("node")


async def next_event(proc, name: str, timeout_s: float = 20.0) -> dict:
    async with asyncio.timeout(timeout_s):
        while line := await proc.stdout.readline():
            event = json.loads(line)
            if event["event"] == name:
                return event
    raise AssertionError(f"the js peer ended before {name!r}")


async def wait_until_disconnected(node, remote: str, timeout_s: float = 10.0) -> None:
    from libp2p.peer.id import ID
    network = node.peer_server.libp2p._host.get_network()
    async with asyncio.timeout(timeout_s):
        while network.get_connections(ID.from_base58(remote)):
            await asyncio.sleep(0.05)


def test_a_js_libp2p_peer_and_our_node_dial_identify_and_ping_each_other(tmp_path):
    assert NODE, "Node.js is not installed"
    assert (INTEROP / "node_modules" / "libp2p").is_dir(), "run `npm ci` in tests/interop"

    async def main():
        async with swarm([[0]], tmp_path, transport="libp2p") as s:
            ours = s.nodes[0]
            proc = await asyncio.create_subprocess_exec(
                NODE, str(INTEROP / "peer.mjs"), ours.endpoint, cwd=INTEROP,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            try:
                listening = await next_event(proc, "listening")
                connected = await next_event(proc, "connected")
                assert connected["remote"] == peer_id(ours.public)    # authenticated as our key
                assert connected["encryption"] == "/noise"
                assert connected["multiplexer"] == "/yamux/1.0.0"
                identified = await next_event(proc, "identified")
                assert identified["remote"] == peer_id(ours.public)
                assert "/ipfs/ping/1.0.0" in identified["protocols"]
                assert "/p2p-energy/negotiate/1.0.0" in identified["protocols"]
                pinged = await next_event(proc, "pinged")
                assert 0 <= pinged["rtt_ms"] < 5000

                await next_event(proc, "hung_up")
                # and our node dials the js peer: a connection of its own, inbound for the js peer
                await wait_until_disconnected(ours, listening["peer_id"])
                js = listening["addrs"][0]
                if "/p2p/" not in js:
                    js += f"/p2p/{listening['peer_id']}"
                rtt_s = await ours.peer_server.libp2p.ping(js, 10.0)
                assert rtt_s is not None and rtt_s < 5.0
                inbound = await next_event(proc, "inbound")
                assert inbound["remote"] == peer_id(ours.public)
                assert (inbound["encryption"], inbound["multiplexer"]) == ("/noise", "/yamux/1.0.0")
            finally:
                proc.stdin.close()
                try:
                    async with asyncio.timeout(10):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            assert proc.returncode == 0
            assert ours.peer_server.counters["libp2p_handshake_failed"] == 0

    run(asyncio.wait_for(main(), 90))
