"""A py-libp2p host on the shared Trio thread: Noise over TCP, yamux, request/reply protocols.

:class:`Libp2pHost` is the asyncio face of one host (one per node).  Its identity is the node's
Ed25519 key, so its peer id is the one ``p2pnode id`` prints.  Security is Noise only (a peer
offering plaintext, secio or TLS is refused at negotiation); streams are multiplexed with yamux.

Wire format of our protocols (``/p2p-energy/...``): one stream per request; the dialler writes a
4-byte big-endian length and the request, the listener answers with a length and the reply (an
empty reply: the request was dropped).  Limits, each a named constant below:

- every request has a deadline (the caller's timeout), the listener a read deadline
  (:data:`READ_TIMEOUT_S`: a stream that never ends is reset);
- bodies are at most ``max_bytes`` (a bigger length prefix: the stream is reset);
- at most :data:`MAX_STREAMS_PER_PEER` of our streams per remote peer, in and out (a flood of
  streams beyond it is reset), and :data:`MAX_CONNECTIONS_PER_PEER` connections per peer;
- connections are reused: a peer is dialled once and its connection kept.

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
from cryptography.hazmat.primitives import serialization
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from ledger import SigningKey
from p2pnode.transport import bridge
from p2pnode.transport.address import parse_libp2p_endpoint

__all__ = ["Libp2pHost", "READ_TIMEOUT_S", "MAX_STREAMS_PER_PEER", "MAX_CONNECTIONS_PER_PEER"]

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 5.0            # a request must arrive whole within this
MAX_STREAMS_PER_PEER = 16       # our protocol streams open at once with one peer, each way
MAX_CONNECTIONS_PER_PEER = 2
MAX_CONNECTIONS = 300          # py-libp2p wants >= its high watermark (200)
CLOSE_TIMEOUT_S = 5.0
UPGRADE_TIMEOUT_S = 5.0         # Noise + yamux negotiation of one connection
LENGTH = struct.Struct(">I")

Handler = Callable[[bytes], bytes | None]


def libp2p_key_pair(key: SigningKey):
    """The libp2p key pair of the node key (same Ed25519 key, so the same peer id)."""
    private = serialization.load_pem_private_key(key.to_pem(), password=None)
    return create_new_key_pair(private.private_bytes_raw())


class _CountingUpgrader:
    """Wraps the swarm's upgrader: every failed upgrade is counted by reason, then re-raised."""

    def __init__(self, inner, counters: collections.Counter):
        self._inner, self._counters = inner, counters

    def __getattr__(self, name):
        return getattr(self._inner, name)

    async def upgrade_security(self, raw_conn, is_initiator: bool, peer_id=None):
        try:
            return await self._inner.upgrade_security(raw_conn, is_initiator, peer_id)
        except Exception as exc:
            self._counters[f"libp2p_{_failure_reason(exc)}"] += 1
            raise

    async def upgrade_connection(self, conn, peer_id):
        try:
            return await self._inner.upgrade_connection(conn, peer_id)
        except Exception:
            self._counters["libp2p_muxer_refused"] += 1
            raise


def _failure_reason(exc: BaseException) -> str:
    chain, seen = [], exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    names = " ".join(type(e).__name__ + " " + str(e) for e in chain)
    if "PeerIDMismatch" in names or "Peer ID mismatch" in names:
        return "peer_id_mismatch"
    if "Multiselect" in names or "negotiate the secure protocol" in names:
        return "security_refused"
    return "handshake_failed"


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
        self._dialling: dict = {}

    @property
    def peer_id(self) -> str:
        from p2pnode.identity import peer_id
        return peer_id(self.key.public)

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

    # -- Trio side ---------------------------------------------------------------------------
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
                key_pair = libp2p_key_pair(self.key)
                noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
                self._host = new_host(
                    key_pair=key_pair, sec_opt={NOISE_PROTOCOL_ID: noise},
                    muxer_opt={YAMUX_PROTOCOL_ID: Yamux},
                    connection_config=ConnectionConfig(
                        max_connections=MAX_CONNECTIONS,
                        max_connections_per_peer=MAX_CONNECTIONS_PER_PEER,
                        inbound_upgrade_timeout=UPGRADE_TIMEOUT_S,
                        outbound_upgrade_timeout=UPGRADE_TIMEOUT_S))
                network = self._host.get_network()
                network.upgrader = _CountingUpgrader(network.upgrader, self.counters)
                listen = multiaddr.Multiaddr(f"/{_ip(host)}/{host}/tcp/{port}")
                async with self._host.run(listen_addrs=[listen]):
                    for protocol, handler in self.handlers.items():
                        self._host.set_stream_handler(protocol, self._stream_handler(handler))
                    bound = int(self._host.get_addrs()[0].value_for_protocol("tcp"))
                    task_status.started(bound)
                    await self._stopping.wait()
        finally:
            self._finished.set()

    def _stream_handler(self, handler: Handler):
        async def on_stream(stream) -> None:
            peer = stream.muxed_conn.peer_id
            slot = ("in", peer)
            if self._streams[slot] >= MAX_STREAMS_PER_PEER:
                self.counters["libp2p_stream_flood"] += 1
                await _reset(stream)
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
        body = None
        with trio.move_on_after(READ_TIMEOUT_S):
            body = await self._read_frame(stream, "in")
        if body is None:   # counted by _read_frame: timeout, oversize, malformed
            await _reset(stream)
            return
        try:
            reply = await bridge.run_on_loop(self._loop, handler, body)
        except bridge.BridgeClosed:
            await _reset(stream)
            return
        try:
            with trio.move_on_after(READ_TIMEOUT_S):
                await stream.write(LENGTH.pack(len(reply or b"")) + (reply or b""))
                await stream.close()
                self.counters["libp2p_requests_served"] += 1
                return
            self.counters["libp2p_reply_timeout"] += 1
        except Exception:
            self.counters["libp2p_reply_failed"] += 1
        await _reset(stream)

    async def _read_frame(self, stream, direction: str) -> bytes | None:
        """One length-prefixed body; None (counted) when short, oversize or broken."""
        try:
            header = await _read_exactly(stream, LENGTH.size)
            (size,) = LENGTH.unpack(header)
            if size > self.max_bytes:
                self.counters[f"libp2p_{direction}_oversize"] += 1
                return None
            return await _read_exactly(stream, size)
        except trio.Cancelled:
            self.counters[f"libp2p_{direction}_timeout"] += 1
            raise
        except Exception:
            self.counters[f"libp2p_{direction}_malformed"] += 1
            return None

    async def _request(self, endpoint: str, protocol: str, body: bytes,
                       timeout_s: float) -> bytes | None:
        address = multiaddr.Multiaddr(endpoint)
        info = info_from_p2p_addr(address)
        slot = ("out", info.peer_id)
        if self._streams[slot] >= MAX_STREAMS_PER_PEER:
            self.counters["libp2p_out_busy"] += 1
            return None
        self._streams[slot] += 1
        try:
            with trio.move_on_after(timeout_s):
                return await self._exchange(info, protocol, body)
            self.counters["libp2p_out_timeout"] += 1
            return None
        finally:
            self._streams[slot] -= 1
            if not self._streams[slot]:
                del self._streams[slot]

    async def _exchange(self, info, protocol: str, body: bytes) -> bytes | None:
        try:
            fresh = not self._host.get_network().get_connections(info.peer_id)
            await self._host.connect(info)   # reuses the connection when there is one
            if fresh:
                self.counters["libp2p_dials"] += 1
            stream = await self._host.new_stream(info.peer_id, [protocol])
        except Exception as exc:
            reason = _failure_reason(exc)
            self.counters[f"libp2p_dial_{'peer_id_mismatch' if reason == 'peer_id_mismatch' else 'failed'}"] += 1
            log.debug("libp2p dial to %s failed: %s", info.peer_id, exc)
            return None
        try:
            await stream.write(LENGTH.pack(len(body)) + body)
            reply = await self._read_frame(stream, "out")
            await stream.close()
        except Exception:
            self.counters["libp2p_out_broken"] += 1
            await _reset(stream)
            return None
        return reply or None


async def _read_exactly(stream, size: int) -> bytes:
    chunks, need = [], size
    while need:
        chunk = await stream.read(need)
        if not chunk:
            raise EOFError("stream ended early")
        chunks.append(chunk)
        need -= len(chunk)
    return b"".join(chunks)


async def _reset(stream) -> None:
    try:
        await stream.reset()
    except Exception:
        pass


def _ip(host: str) -> str:
    return "ip6" if ":" in host else "ip4"
