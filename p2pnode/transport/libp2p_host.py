"""A py-libp2p host on the shared Trio thread: Noise over TCP, yamux, request/reply protocols.

:class:`Libp2pHost` is the asyncio face of one host (one per node).  Its identity is the node's
Ed25519 key, so its peer id is the one ``p2pnode id`` prints.  Security is Noise only (a peer
offering plaintext, secio or TLS is refused at negotiation); streams are multiplexed with yamux.

Wire format of our protocols (``/p2p-energy/...``): requests and replies in turn on a stream;
the dialler writes a 4-byte big-endian length and the request, the listener answers with a
length and the reply (an empty reply: the request was dropped) and waits for the next request.
Limits, each a named constant below:

- every request has a deadline (the caller's timeout), the listener a read deadline once a
  request has begun (:data:`READ_TIMEOUT_S`: a stream that never ends is reset) and an idle
  deadline between requests (:data:`IDLE_TIMEOUT_S`: closed);
- bodies are at most ``max_bytes`` (a bigger length prefix: the stream is reset);
- at most :data:`MAX_STREAMS_PER_PEER` of our streams per remote peer: inbound ones beyond it
  are reset (a flood), outbound requests beyond it wait for a slot within their deadline; one
  dial at a time per peer and :data:`MAX_CONNECTIONS_PER_PEER` connection;
- connections and streams are reused, like HTTP keep-alive: a peer is dialled once and its
  connection kept; a stream that carried a request is parked (at most
  :data:`MAX_IDLE_STREAMS_PER_PEER`, for :data:`CLIENT_IDLE_S`) for the next one -- opening a
  stream costs two multistream-select round trips, about 9 ms in py-libp2p 0.8.1 against about
  1 ms for a request on an open stream.

Writes to a connection (a request, a reply, opening a stream, FIN, RST) are never cut by a
deadline (:mod:`.libp2p_io`): py-libp2p encrypts a Noise frame and then waits to send it, so a
cancelled write leaves the peer a nonce behind and it drops the connection with every other
request on it; deadlines apply before and after the write, and a write stuck for
:data:`~.libp2p_io.WRITE_TIMEOUT_S` closes the connection.

Everything dropped is counted in :attr:`Libp2pHost.counters` by reason (``libp2p_*``): failed
inbound/outbound upgrades (``libp2p_security_refused``: plaintext or another protocol than
Noise; ``libp2p_handshake_failed``; ``libp2p_peer_id_mismatch``: the key behind an address was
not the one its multiaddr named), streams reset for timeout, oversize or flood.  Counters are
written on the Trio thread only.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
from collections.abc import Callable

import multiaddr
import trio

from ledger import SigningKey
from p2pnode.transport import bridge
from p2pnode.transport.address import parse_libp2p_endpoint
from p2pnode.transport.libp2p_io import (
    CLOSE_TIMEOUT_S, WriteStuck, close, open_stream, read_exactly, reset, write,
)
from p2pnode.transport.libp2p_setup import build_host

from libp2p.host.ping import PingService  # after libp2p_setup, which imports libp2p tolerantly
from libp2p.peer.peerinfo import info_from_p2p_addr

__all__ = ["Libp2pHost", "READ_TIMEOUT_S", "MAX_STREAMS_PER_PEER", "MAX_CONNECTIONS_PER_PEER"]

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 5.0            # a request must arrive whole within this
IDLE_TIMEOUT_S = 30.0           # a stream with no request for this long is closed
CLIENT_IDLE_S = 10.0            # a dialler reuses a stream idle for less than this
MAX_IDLE_STREAMS_PER_PEER = 4   # streams a dialler keeps open for reuse, per peer
MAX_STREAMS_PER_PEER = 16       # our protocol streams open at once with one peer, each way
MAX_CONNECTIONS_PER_PEER = 1     # yamux multiplexes; and py-libp2p 0.8.1 ends a dial at once only
                                 # when it reaches this (else it waits its 250 ms happy-eyeballs delay)
MAX_CONNECTIONS = 300          # py-libp2p wants >= its high watermark (200)
UPGRADE_TIMEOUT_S = 5.0         # Noise + yamux negotiation of one connection
LENGTH = struct.Struct(">I")

Handler = Callable[[bytes], bytes | None]


class _PeerSlots:
    """Requests under way to one peer: at most MAX_STREAMS_PER_PEER streams with our idle ones
    (the peer's own bound), further requests wait for a slot; one dial at a time."""

    def __init__(self):
        self.requests = trio.Semaphore(MAX_STREAMS_PER_PEER - MAX_IDLE_STREAMS_PER_PEER)
        self.dialling = trio.Lock()
        self.users = 0


class Libp2pHost:
    """One libp2p host for one node: serves request/reply protocols, sends requests."""

    def __init__(self, key: SigningKey, max_bytes: int):
        self.key, self.max_bytes = key, max_bytes
        self.counters: collections.Counter[str] = collections.Counter()
        self.port = 0
        self.handlers: dict[str, Handler] = {}
        self._thread: bridge.TrioThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._host = None
        self._scope: trio.CancelScope | None = None
        self._finished: trio.Event | None = None
        self._stopping: trio.Event | None = None
        self._streams: collections.Counter = collections.Counter()   # (direction, peer) -> open
        self._idle: dict = {}   # (peer, protocol) -> [(stream, parked at)]: reused
        self._peers: dict = {}  # peer id -> _PeerSlots, while requests to it are under way

    @property
    def peer_id(self) -> str:
        from p2pnode.identity import peer_id
        return peer_id(self.key.public)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._host is not None and self._thread.running

    def add_protocol(self, protocol: str, handler: Handler) -> None:
        if self._host is not None:
            raise RuntimeError(f"cannot add {protocol}: the libp2p host is already started")
        self.handlers[protocol] = handler

    # -- life cycle (asyncio side) -----------------------------------------------------------
    async def start(self, host: str, port: int) -> int:
        self._loop = asyncio.get_running_loop()
        self._thread = bridge.acquire()
        try:
            self.port = await self._thread.run(self._start, host, port)
        except BaseException:
            bridge.release(self._thread)
            self._thread = None
            raise
        return self.port

    async def stop(self) -> None:
        if self._thread is None:
            return
        try:
            await self._thread.run(self._stop)
        except bridge.BridgeClosed:
            pass
        finally:
            bridge.release(self._thread)
            self._thread, self._host = None, None

    async def request(self, endpoint: str, protocol: str, body: bytes,
                      timeout_s: float) -> bytes | None:
        """Send ``body`` on ``protocol`` to ``endpoint``; the reply, or None (none in time)."""
        if self._thread is None:
            raise RuntimeError("the libp2p host is not started")
        parsed = parse_libp2p_endpoint(endpoint)
        if isinstance(parsed, str):
            self.counters["libp2p_bad_endpoint"] += 1
            return None
        try:
            return await self._thread.run(self._request, str(parsed), protocol, body, timeout_s)
        except bridge.BridgeClosed:
            return None

    async def ping(self, endpoint: str, timeout_s: float) -> float | None:
        """Round-trip time in seconds of a libp2p ping (``/ipfs/ping/1.0.0``), or None."""
        if self._thread is None:
            raise RuntimeError("the libp2p host is not started")
        if isinstance(parse_libp2p_endpoint(endpoint), str):
            return None
        try:
            return await self._thread.run(self._ping, endpoint, timeout_s)
        except bridge.BridgeClosed:
            return None

    # -- Trio side ---------------------------------------------------------------------------
    async def _ping(self, endpoint: str, timeout_s: float) -> float | None:
        info = info_from_p2p_addr(multiaddr.Multiaddr(endpoint))
        with trio.move_on_after(timeout_s):
            try:
                await self._host.connect(info)
                rtts_ms = await PingService(self._host).ping(info.peer_id)
            except Exception as exc:
                log.debug("libp2p ping of %s failed: %s", info.peer_id, exc)
                return None
            return rtts_ms[0] / 1000
        return None

    async def _start(self, host: str, port: int) -> int:
        self._finished, self._stopping = trio.Event(), trio.Event()
        return await self._thread._nursery.start(self._serve, host, port)

    async def _stop(self) -> None:
        """Close the host (its connections and listener) cleanly; cancel it if that hangs."""
        self._stopping.set()
        with trio.move_on_after(CLOSE_TIMEOUT_S):
            await self._finished.wait()
            return
        self._scope.cancel()
        await self._finished.wait()

    async def _serve(self, host: str, port: int, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            with trio.CancelScope() as self._scope:
                self._host = build_host(
                    self.key, self.counters, max_connections=MAX_CONNECTIONS,
                    max_connections_per_peer=MAX_CONNECTIONS_PER_PEER,
                    upgrade_timeout_s=UPGRADE_TIMEOUT_S)
                listen = multiaddr.Multiaddr(f"/{_ip(host)}/{host}/tcp/{port}")
                async with self._host.run(listen_addrs=[listen]):
                    for protocol, handler in self.handlers.items():
                        self._host.set_stream_handler(protocol, self._stream_handler(handler))
                    bound = int(self._host.get_addrs()[0].value_for_protocol("tcp"))
                    task_status.started(bound)
                    await self._stopping.wait()
                    self._idle.clear()
                    # Swarm.close: connections, then the listener.  Leaving host.run() alone
                    # leaks both in py-libp2p 0.8.1 (its shutdown path is cancelled before it
                    # closes them): the socket kept listening, so a host restarted on the port
                    # (SO_REUSEPORT) shared it with a dead listener that took half the dials.
                    await self._host.get_network().close()
        finally:
            self._finished.set()

    def _stream_handler(self, handler: Handler):
        async def on_stream(stream) -> None:
            peer = stream.muxed_conn.peer_id
            slot = ("in", peer)
            if self._streams[slot] >= MAX_STREAMS_PER_PEER:
                self.counters["libp2p_stream_flood"] += 1
                await reset(stream)
                return
            self._streams[slot] += 1
            try:
                await self._answer(stream, handler)
            finally:
                self._streams[slot] -= 1
                if not self._streams[slot]:
                    del self._streams[slot]
        return on_stream

    async def _answer(self, stream, handler: Handler) -> None:
        """Requests on one stream, one after another, until the dialler ends it or it idles."""
        while True:
            header = None
            with trio.move_on_after(IDLE_TIMEOUT_S):
                try:
                    header = await read_exactly(stream, LENGTH.size)
                except Exception:   # ended or reset between requests: the dialler is done
                    header = b""
            if not header:          # ended, or idle for IDLE_TIMEOUT_S: close quietly
                await close(stream)
                return
            body = None
            with trio.move_on_after(READ_TIMEOUT_S):
                body = await self._read_body(stream, header, "in")
            if body is None:   # counted by _read_body: timeout, oversize, malformed
                await reset(stream)
                return
            try:
                reply = await bridge.run_on_loop(self._loop, handler, body) or b""
            except bridge.BridgeClosed:
                await reset(stream)
                return
            try:
                await write(stream, LENGTH.pack(len(reply)) + reply)
                self.counters["libp2p_requests_served"] += 1
                continue
            except WriteStuck:
                self.counters["libp2p_reply_timeout"] += 1
            except Exception:
                self.counters["libp2p_reply_failed"] += 1
            await reset(stream)
            return

    async def _read_body(self, stream, header: bytes, direction: str) -> bytes | None:
        """The body announced by ``header``; None (counted) when oversize, short or broken."""
        try:
            (size,) = LENGTH.unpack(header)
            if size > self.max_bytes:
                self.counters[f"libp2p_{direction}_oversize"] += 1
                return None
            return await read_exactly(stream, size)
        except trio.Cancelled:
            self.counters[f"libp2p_{direction}_timeout"] += 1
            raise
        except Exception:
            self.counters[f"libp2p_{direction}_malformed"] += 1
            return None

    async def _request(self, endpoint: str, protocol: str, body: bytes,
                       timeout_s: float) -> bytes | None:
        info = info_from_p2p_addr(multiaddr.Multiaddr(endpoint))
        peer = self._peers.setdefault(info.peer_id, _PeerSlots())
        peer.users += 1
        try:
            with trio.move_on_after(timeout_s):
                async with peer.requests:   # queued beyond the bound, within the deadline
                    return await self._exchange(info, protocol, body, peer)
            self.counters["libp2p_out_timeout"] += 1
            return None
        finally:
            peer.users -= 1
            if not peer.users:
                del self._peers[info.peer_id]

    async def _exchange(self, info, protocol: str, body: bytes, peer) -> bytes | None:
        """One request on an idle stream to the peer if there is one, else on a new stream; a
        reused stream the peer had closed meanwhile costs one more try on a new one."""
        for _ in range(2):
            stream = await self._idle_stream(info.peer_id, protocol)
            reused = stream is not None
            if stream is None:
                stream = await self._new_stream(info, protocol, peer)
                if stream is None:
                    return None
            reply = await self._round_trip(stream, body, "out" if not reused else "reused")
            if reply is not None:
                await self._park(info.peer_id, protocol, stream)
                return reply or None   # empty: the peer dropped the request
            if not reused:
                return None
        return None

    async def _new_stream(self, info, protocol: str, peer):
        """A stream to the peer, dialling it if not connected.  A connection that can no longer
        open streams (py-libp2p keeps some dead ones registered) is closed and redialled once."""
        network = self._host.get_network()
        for attempt in range(2):
            try:
                async with peer.dialling:   # one dial per peer at a time; the others reuse it
                    fresh = not network.get_connections(info.peer_id)
                    await self._host.connect(info)   # reuses the connection when there is one
                    if fresh:
                        self.counters["libp2p_dials"] += 1
            except Exception as exc:   # the upgrader counted why, when it got that far
                self.counters["libp2p_dial_failed"] += 1
                log.debug("libp2p dial to %s failed: %s", info.peer_id, exc)
                return None
            try:
                stream = await open_stream(self._host, info.peer_id, protocol)
            except Exception as exc:
                self.counters["libp2p_stream_refused"] += 1
                log.debug("libp2p stream to %s refused: %s", info.peer_id, exc)
                if attempt:
                    return None
                async with peer.dialling:
                    await network.close_peer(info.peer_id)
                self.counters["libp2p_dead_connection"] += 1
                continue
            self.counters["libp2p_streams_opened"] += 1
            return stream
        return None

    async def _round_trip(self, stream, body: bytes, direction: str) -> bytes | None:
        """The reply (b"" when the peer dropped the request), or None: the stream is broken."""
        reply = None
        try:
            await write(stream, LENGTH.pack(len(body)) + body)
            header = await read_exactly(stream, LENGTH.size)
            reply = await self._read_body(stream, header, "out")
        except Exception:
            self.counters[f"libp2p_{direction}_broken"] += 1
        finally:
            if reply is None:   # also when the deadline cancelled us mid-request
                with trio.CancelScope(shield=True):
                    await reset(stream)
        return reply

    async def _idle_stream(self, peer, protocol: str):
        """The most recently parked stream to ``peer`` that is not too old to trust, or None."""
        idle = self._idle.get((peer, protocol))
        now = trio.current_time()
        while idle:
            stream, since = idle.pop()
            if now - since < CLIENT_IDLE_S:
                return stream
            self.counters["libp2p_idle_expired"] += 1
            await close(stream)
        return None

    async def _park(self, peer, protocol: str, stream) -> None:
        idle = self._idle.setdefault((peer, protocol), [])
        if len(idle) >= MAX_IDLE_STREAMS_PER_PEER:
            await close(stream)
        else:
            idle.append((stream, trio.current_time()))


def _ip(host: str) -> str:
    return "ip6" if ":" in host else "ip4"
