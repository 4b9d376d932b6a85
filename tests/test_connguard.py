"""Idle and slow connections are closed and cannot crowd out requests (pure guard + loopback)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from p2pnode.connguard import ConnectionGuard, ConnectionLimits
from p2pnode.peer import PATH, PeerServer
from tests.dhtkit import run

LIMITS = ConnectionLimits(max_connections=3, idle_s=10, request_s=30)


def test_the_guard_closes_by_deadline_and_evicts_the_longest_idle():
    guard = ConnectionGuard(LIMITS)
    assert guard.opened(1, 0) == [] and guard.opened(2, 1) == [] and guard.opened(3, 2) == []
    guard.request_started(2, 3)
    assert guard.opened(4, 4) == [1]            # full: the longest idle (1) makes room
    guard.request_started(3, 5)
    guard.request_started(4, 5)
    assert guard.opened(5, 6) == [5]            # all busy: the newcomer is refused
    guard.request_done(2, 7)
    assert guard.overdue(16) == []
    assert guard.overdue(17.5) == [2]           # idle 10.5 s since its response
    assert guard.overdue(40) == [3, 4]          # requests unfinished after 30 s
    assert len(guard) == 0
    assert dict(guard.closed) == {"evicted_idle": 1, "refused": 1, "idle_timeout": 1,
                                  "request_timeout": 2}
    with pytest.raises(ValueError):
        ConnectionLimits(idle_s=0)


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server has closed: end of stream, or a reset (the kernel answers with RST
    when the server drops a connection whose trickled bytes it had not read yet)."""
    try:
        return await reader.read() == b""
    except ConnectionResetError:
        return True


def test_idle_and_trickling_connections_do_not_lock_out_a_peer():
    """The attack of the report (1,030 idle connections) at a bounded scale: 200 connections
    that send nothing or trickle a header, against a limit of 64; requests still get through."""
    limits = ConnectionLimits(max_connections=64, idle_s=0.5, request_s=1.0)

    async def main():
        server = PeerServer(lambda body: b"pong:" + body, limits)
        await server.start("127.0.0.1", 0)
        held = []
        try:
            for i in range(200):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                if i % 2:
                    writer.write(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n")
                held.append((reader, writer))
            async with aiohttp.ClientSession() as session:
                async with asyncio.timeout(5):
                    async with session.post(f"http://127.0.0.1:{server.port}{PATH}",
                                            data=b"hello") as resp:
                        assert resp.status == 200 and await resp.read() == b"pong:hello"
            assert len(server.site.guard) <= 64
            await asyncio.sleep(1.5)                 # past idle_s: every attacker is closed
            closed = 0
            for reader, _ in held:
                async with asyncio.timeout(2):
                    closed += await _closed_by_server(reader)
            assert closed == 200
            assert len(server.site.guard) == 0
            assert server.site.guard.closed["evicted_idle"] >= 136
        finally:
            for _, writer in held:
                writer.close()
            await server.stop()

    run(main())
