"""Writes to a libp2p connection are never cut by a request's deadline.

py-libp2p 0.8.1 encrypts a Noise frame (taking a nonce) and then waits to send it; a deadline
landing in between (or in the middle of ``send_all``) leaves our session a nonce ahead of the
peer's, which then drops the whole connection and every other request on it.  Under load that
happened hundreds of times per benchmark run (``libp2p_dead_connection``) and the redials made
it worse.  :func:`p2pnode.transport.libp2p_io.write` (and the stream-opening, FIN and RST
writes) therefore run shielded, bounded by their own timeout, after which the connection is
closed.  Stand-in streams make the timing exact here; the real connection is covered by
``tests/test_libp2p_node.py``.
"""

from __future__ import annotations

import pytest
import trio

from p2pnode.transport import libp2p_io


class SlowStream:
    """A stream whose write takes ``write_s`` (forever: None); records what it finished."""

    def __init__(self, write_s: float | None):
        self.write_s = write_s
        self.written: list[bytes] = []
        self.reset_done = self.closed = False
        self.muxed_conn = self

    async def write(self, data: bytes) -> None:
        if self.write_s is None:
            await trio.sleep_forever()
        await trio.sleep(self.write_s)
        self.written.append(data)

    async def reset(self) -> None:
        await trio.sleep(self.write_s or 0)
        self.reset_done = True

    async def close(self) -> None:   # the connection's close (muxed_conn is the stream itself)
        self.closed = True


def test_a_deadline_during_a_write_lets_it_finish_and_then_applies():
    async def main():
        stream = SlowStream(0.2)
        with trio.move_on_after(0.05) as deadline:
            await libp2p_io.write(stream, b"frame")
            await trio.sleep(1)          # the deadline lands at the next checkpoint
        assert stream.written == [b"frame"]     # written whole, not cut
        assert deadline.cancelled_caught and not stream.closed

    trio.run(main)


def test_a_reset_under_a_cancelled_scope_is_still_sent():
    async def main():
        stream = SlowStream(0.1)
        with trio.CancelScope() as scope:
            scope.cancel()
            await libp2p_io.reset(stream)
        assert stream.reset_done

    trio.run(main)


def test_a_write_stuck_past_its_bound_closes_the_connection(monkeypatch):
    monkeypatch.setattr(libp2p_io, "WRITE_TIMEOUT_S", 0.1)

    async def main():
        stream = SlowStream(None)          # the peer stopped reading
        with trio.fail_after(5):
            with pytest.raises(libp2p_io.WriteStuck):
                await libp2p_io.write(stream, b"frame")
        assert stream.closed and stream.written == []

    trio.run(main)
