"""Stream I/O of our libp2p protocols that no deadline can cut (used by :mod:`.libp2p_host`).

py-libp2p 0.8.1 encrypts a Noise frame (taking the session's next nonce) and then waits to send
it; a Trio cancellation landing in between, or in the middle of ``send_all``, leaves our session
a nonce ahead of the peer's (or half a frame sent), and the peer drops the whole connection with
every other request on it.  Under load, with requests missing their deadlines, that happened
hundreds of times per ``benchmarks/trade_path.py`` run.  So every write to a connection -- a
request or reply (:func:`write`), opening a stream (:func:`open_stream`: yamux SYN and
multistream-select), FIN (:func:`close`) and RST (:func:`reset`) -- runs shielded, bounded by
its own timeout; deadlines apply before and after.  A write stuck past its bound (a peer that
stopped reading) closes the connection.  Reads are cut freely: yamux buffers them per stream.
"""

from __future__ import annotations

import trio

__all__ = ["CLOSE_TIMEOUT_S", "STREAM_OPEN_TIMEOUT_S", "WRITE_TIMEOUT_S", "WriteStuck", "close",
           "open_stream", "read_exactly", "reset", "write"]

WRITE_TIMEOUT_S = 10.0          # a write to a connection (never cut by a deadline): else stuck
STREAM_OPEN_TIMEOUT_S = 5.0     # opening a stream (SYN, multistream-select), likewise
CLOSE_TIMEOUT_S = 5.0           # closing a connection or a host


async def read_exactly(stream, size: int) -> bytes:
    chunks, need = [], size
    while need:
        chunk = await stream.read(need)
        if not chunk:
            raise EOFError("stream ended early")
        chunks.append(chunk)
        need -= len(chunk)
    return b"".join(chunks)


class WriteStuck(Exception):
    """A write to a connection took longer than WRITE_TIMEOUT_S; the connection was closed."""


async def write(stream, data: bytes) -> None:
    """Write ``data`` on ``stream`` out of reach of any deadline: a write cut short would leave
    the connection's Noise session a nonce ahead of the peer's (py-libp2p encrypts a frame, then
    waits to send it) or half a frame sent, and the peer then drops the whole connection with
    every other request on it.  Deadlines apply before and after; a write stuck for
    WRITE_TIMEOUT_S (a peer that stopped reading) closes the connection."""
    with trio.CancelScope(shield=True):
        with trio.move_on_after(WRITE_TIMEOUT_S):
            await stream.write(data)
            return
        await _close_connection(stream)
    raise WriteStuck(f"a write took over {WRITE_TIMEOUT_S} s")


async def open_stream(host, peer_id, protocol: str):
    """``host.new_stream`` (a yamux SYN and multistream-select: writes) shielded like
    :func:`write`, within STREAM_OPEN_TIMEOUT_S."""
    with trio.CancelScope(shield=True):
        with trio.fail_after(STREAM_OPEN_TIMEOUT_S):
            return await host.new_stream(peer_id, [protocol])


async def _close_connection(stream) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
        try:
            await stream.muxed_conn.close()
        except Exception:
            pass


async def close(stream) -> None:
    """End our side of ``stream`` (a FIN frame: a write, shielded like :func:`write`)."""
    with trio.CancelScope(shield=True), trio.move_on_after(WRITE_TIMEOUT_S):
        try:
            await stream.close()
        except Exception:
            pass


async def reset(stream) -> None:
    """Reset ``stream`` (an RST frame: a write, shielded like :func:`write`)."""
    with trio.CancelScope(shield=True), trio.move_on_after(WRITE_TIMEOUT_S):
        try:
            await stream.reset()
        except Exception:
            pass
