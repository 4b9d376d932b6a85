"""Real nodes trading over libp2p (Noise over TCP, yamux) on loopback, and hostile peers."""

from __future__ import annotations

import asyncio

from ledger import BlockType, open_envelope, BlockBody
from p2pnode.identity import peer_id
from p2pnode.transport.address import parse_libp2p_endpoint
from p2pnode.transport import libp2p_host
from p2pnode.transport.libp2p_peer import NEGOTIATE_PROTOCOL
from simulator.swarm import audit_ledgers
from tests.dhtkit import run as strict_run
from tests.nodekit import START, swarm


def run(coro):
    strict_run(asyncio.wait_for(coro, timeout=120))


def trades(node):
    out = []
    for _, _, _, raw in node.ledger.store.raw_blocks():
        block = open_envelope(raw, BlockBody)[0].message
        if block.type is BlockType.TRADE and block.author == node.public:
            out.append(block.payload)
    return out


def test_two_nodes_trade_and_settle_over_libp2p(tmp_path):
    async def main():
        async with swarm([[800], [-300]], tmp_path, transport="libp2p") as s:
            seller, buyer = s.nodes
            endpoint = parse_libp2p_endpoint(seller.endpoint)
            assert endpoint.peer_id == peer_id(seller.public)   # the key `p2pnode id` prints
            assert (endpoint.host, endpoint.port) == ("127.0.0.1", seller.peer_server.port)
            await s.interval(0)
            trade = trades(seller)[0]
            assert (trade.seller, trade.buyer, trade.energy_wh) == (seller.public, buyer.public, 300)
            assert trade.interval_start_s == START
            assert buyer.reports[0].bought_wh == 300 and seller.reports[0].sold_wh == 300
            # RECORD (the seller's track record), REQUEST and CONFIRM went over one connection
            # the buyer dialled once, on one stream; the seller's DELIVER the other way, to the
            # endpoint the REQUEST named
            assert buyer.peer_server.counters["libp2p_dials"] == 1
            # a stream is replaced only for a counted reason (on a loaded machine a request can
            # time out, or the gap between two outlive CLIENT_IDLE_S); three requests reuse one
            c = buyer.peer_server.counters
            replaced = (c["libp2p_out_timeout"] + c["libp2p_out_broken"]
                        + c["libp2p_reused_broken"] + c["libp2p_idle_expired"])
            assert c["libp2p_streams_opened"] == 1 + replaced < 3
            assert seller.counters["records_served"] == 1
            assert seller.peer_server.counters["libp2p_requests_served"] == 3
            assert buyer.peer_server.counters["libp2p_requests_served"] == 1
            assert seller.peer_server.counters["libp2p_dials"] <= 1
            assert audit_ledgers([n.config.ledger for n in s.nodes]) == ([], 0)

    run(main())


def test_a_parked_stream_the_peer_closed_meanwhile_costs_one_more_try_not_the_request(
        tmp_path, monkeypatch):
    monkeypatch.setattr(libp2p_host, "IDLE_TIMEOUT_S", 0.2)   # the listener closes idle streams

    async def main():
        async with swarm([[0], [0]], tmp_path, transport="libp2p") as s:
            a, b = s.nodes
            host = a.peer_server.libp2p
            for _ in range(3):
                # the node drops garbage with an empty reply (None here), but it did answer
                assert await host.request(b.endpoint, NEGOTIATE_PROTOCOL, b"garbage", 5.0) is None
                await asyncio.sleep(0.5)   # the listener closes the parked stream
            assert b.peer_server.counters["libp2p_requests_served"] == 3
            assert host.counters["libp2p_streams_opened"] == 3
            assert host.counters["libp2p_reused_broken"] == 2
            assert host.counters["libp2p_out_timeout"] == 0
            # the node itself dropped and counted the garbage, each time
            assert sum(v for k, v in b.counters.items() if k.startswith("peer_dropped_")) == 3

    run(main())


def test_a_stream_parked_longer_than_client_idle_is_closed_and_counted_not_reused(
        tmp_path, monkeypatch):
    monkeypatch.setattr(libp2p_host, "CLIENT_IDLE_S", 0.2)

    async def main():
        async with swarm([[0], [0]], tmp_path, transport="libp2p") as s:
            a, b = s.nodes
            host = a.peer_server.libp2p
            assert await host.request(b.endpoint, NEGOTIATE_PROTOCOL, b"garbage", 5.0) is None
            assert await host.request(b.endpoint, NEGOTIATE_PROTOCOL, b"garbage", 5.0) is None
            await asyncio.sleep(0.5)   # older than CLIENT_IDLE_S: not trusted
            assert await host.request(b.endpoint, NEGOTIATE_PROTOCOL, b"garbage", 5.0) is None
            assert host.counters["libp2p_streams_opened"] == 2
            assert host.counters["libp2p_idle_expired"] == 1
            assert host.counters["libp2p_reused_broken"] == 0
            assert b.peer_server.counters["libp2p_requests_served"] == 3

    run(main())


def test_the_health_probe_recognises_a_libp2p_peer_endpoint(tmp_path):
    from p2pnode.cli import main as cli

    async def main():
        async with swarm([[0]], tmp_path, transport="libp2p") as s:
            node = s.nodes[0]
            loop = asyncio.get_running_loop()
            alive = await loop.run_in_executor(
                None, cli, ["health", "--peer", f"127.0.0.1:{node.peer_server.port}"])
            assert alive == 0
            # the probe stops after multistream-select: the node counted it, nothing more
            assert node.peer_server.counters["libp2p_security_refused"] <= 1
            return node.peer_server.port

    port = []
    run(_collect(main(), port))
    assert cli(["health", "--peer", f"127.0.0.1:{port[0]}", "--timeout", "1"]) == 1   # stopped


async def _collect(coro, into: list):
    into.append(await coro)



ECHO = "/p2p-energy/echo/1.0.0"
RESTARTS = 3
FRESH_DIALLERS = 4


def test_a_host_restarted_on_its_port_is_redialled_at_once():
    """A stopped host closes its listening socket (py-libp2p 0.8.1 leaked it when its host.run()
    context was left: the port kept listening, a host restarted on it shared it through
    SO_REUSEPORT, and the dials the kernel gave the dead socket hung for the 5 s upgrade
    timeout).  After each restart on the same port, the old dialler and new ones get the new
    host's answer within a deadline far below that."""
    import socket
    import time

    from p2pnode.transport.address import libp2p_endpoint
    from p2pnode.transport.libp2p_host import Libp2pHost
    from tests.dhtkit import key

    server_key = key("restarted host")

    def host(name: str, tag: bytes) -> Libp2pHost:
        made = Libp2pHost(key(name) if name != "server" else server_key, 4096)
        made.add_protocol(ECHO, lambda body: tag + body)
        return made

    def listening(port: int) -> bool:
        probe = socket.socket()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # TIME_WAIT is no listener
        try:
            probe.bind(("127.0.0.1", port))
            return False
        except OSError:
            return True
        finally:
            probe.close()

    async def main():
        client = host("client", b"c")
        server = host("server", b"0")
        await client.start("127.0.0.1", 0)
        port = await server.start("127.0.0.1", 0)
        endpoint = libp2p_endpoint("127.0.0.1", port, server_key.public)
        try:
            assert await client.request(endpoint, ECHO, b"x", 5) == b"0x"
            for restart in range(1, RESTARTS + 1):
                await server.stop()
                assert not listening(port)
                server = host("server", str(restart).encode())
                assert await server.start("127.0.0.1", port) == port
                began = time.monotonic()
                assert await client.request(endpoint, ECHO, b"x", 2) == b"%dx" % restart
                for i in range(FRESH_DIALLERS):   # new connections: each a new TCP dial
                    fresh = host(f"fresh {restart} {i}", b"f")
                    await fresh.start("127.0.0.1", 0)
                    try:
                        assert await fresh.request(endpoint, ECHO, b"y", 2) == b"%dy" % restart
                    finally:
                        await fresh.stop()
                assert time.monotonic() - began < 2 * (1 + FRESH_DIALLERS)
        finally:
            await client.stop()
            await server.stop()
        assert not listening(port)

    run(main())
