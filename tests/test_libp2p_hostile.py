"""Hostile peers against a node on libp2p: each is dropped and counted, the node keeps trading.

A key other than the one the endpoint names, a plaintext or malformed handshake, a stream that
never ends, an oversize body, a flood of streams.
"""

from __future__ import annotations

import asyncio
import hashlib

import trio

from ledger import SigningKey
from p2pnode.identity import peer_id
from p2pnode.transport import libp2p_host
from p2pnode.transport.libp2p_peer import NEGOTIATE_PROTOCOL
from tests.dhtkit import run
from tests.nodekit import swarm

STRANGER = SigningKey.from_seed(hashlib.sha256(b"stranger").digest())


def varint_delimited(text: str) -> bytes:
    data = text.encode() + b"\n"
    return bytes([len(data)]) + data


async def raw_tcp(port: int, payload: bytes) -> bytes:
    """Connect, send ``payload``, read what comes back until the node closes or 2 s pass."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    got = b""
    try:
        async with asyncio.timeout(2):
            while chunk := await reader.read(1024):
                got += chunk
    except (TimeoutError, ConnectionResetError):   # the node hung up, or we stop waiting
        pass
    writer.close()
    try:
        await writer.wait_closed()
    except ConnectionResetError:
        pass
    return got


async def eventually(predicate, timeout_s: float = 5.0) -> bool:
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


async def open_streams(attacker, victim, frames: list[bytes], hold_s: float) -> list[str]:
    """On the attacker's libp2p host: one stream per frame to the victim, each written and held
    open ``hold_s``; what became of each ("answered", "reset" or "open")."""
    host = attacker.peer_server.libp2p
    victim_id = host_peer_id(victim)

    async def attack():
        from libp2p.peer.peerinfo import info_from_p2p_addr
        import multiaddr
        await host._host.connect(info_from_p2p_addr(multiaddr.Multiaddr(victim.endpoint)))
        outcomes = ["open"] * len(frames)

        async def one(i, frame):
            try:
                stream = await host._host.new_stream(victim_id, [NEGOTIATE_PROTOCOL])
                await stream.write(frame)
            except Exception:   # reset before the protocol was even agreed
                outcomes[i] = "reset"
                return
            with trio.move_on_after(hold_s):
                try:
                    data = await stream.read(4)
                    outcomes[i] = "answered" if data else "reset"
                except Exception:
                    outcomes[i] = "reset"
            await libp2p_host._reset(stream)

        async with trio.open_nursery() as nursery:
            for i, frame in enumerate(frames):
                nursery.start_soon(one, i, frame)
        return outcomes

    return await host._thread.run(attack)


def host_peer_id(node):
    from libp2p.peer.id import ID
    return ID.from_base58(peer_id(node.public))


def test_hostile_peers_are_dropped_and_counted_and_the_node_keeps_trading(tmp_path, monkeypatch):
    monkeypatch.setattr(libp2p_host, "READ_TIMEOUT_S", 0.5)
    monkeypatch.setattr(libp2p_host, "MAX_STREAMS_PER_PEER", 4)
    monkeypatch.setattr(libp2p_host, "MAX_IDLE_STREAMS_PER_PEER", 1)

    async def main():
        async with swarm([[800], [-300]], tmp_path, transport="libp2p") as s:
            seller, buyer = s.nodes
            counters = seller.peer_server.counters
            port = seller.peer_server.port

            # a key other than the one the endpoint names: the Noise handshake refuses it
            impostor = seller.endpoint.replace(peer_id(seller.public), peer_id(STRANGER.public))
            assert await buyer.client.send(impostor, b"hello", 2.0) is None
            assert buyer.peer_server.counters["libp2p_dial_failed"] == 1, buyer.peer_server.counters
            assert buyer.peer_server.counters["libp2p_peer_id_mismatch"] == 1, buyer.peer_server.counters

            # a plaintext handshake: multistream-select answers "na" and the connection is dropped
            got = await raw_tcp(port, varint_delimited("/multistream/1.0.0")
                                + varint_delimited("/plaintext/2.0.0"))
            assert b"/plaintext/2.0.0" not in got and b"na\n" in got
            assert await eventually(lambda: counters["libp2p_security_refused"] >= 1)
            # garbage instead of a handshake
            await raw_tcp(port, bytes(range(256)) * 4)
            assert await eventually(
                lambda: counters["libp2p_security_refused"] + counters["libp2p_handshake_failed"] >= 2)

            # a stream that never ends; an oversize body
            never_ends = libp2p_host.LENGTH.pack(100) + b"x" * 10
            oversize = libp2p_host.LENGTH.pack(10**6)
            assert await open_streams(buyer, seller, [never_ends, oversize], 3.0) == ["reset"] * 2
            assert counters["libp2p_in_timeout"] == 1 and counters["libp2p_in_oversize"] == 1

            # a flood of streams: beyond MAX_STREAMS_PER_PEER open at once, reset
            outcomes = await open_streams(buyer, seller, [never_ends] * 10, 2.0)
            assert outcomes.count("reset") == 10   # 4 timed out, 6 refused at once
            assert counters["libp2p_stream_flood"] == 6
            assert counters["libp2p_in_timeout"] == 1 + 4

            # and the node still trades with the honest buyer
            await s.interval(0)
            assert buyer.reports[0].bought_wh == 300 and seller.reports[0].sold_wh == 300

    run(asyncio.wait_for(main(), 90))
