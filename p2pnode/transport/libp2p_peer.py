"""The peer endpoint over libp2p: :class:`Libp2pPeerServer` and :class:`Libp2pPeerClient`.

The same interface as :mod:`p2pnode.peer` (HTTP): the server calls the node's sync handler
``bytes -> bytes | None`` for each request on :data:`NEGOTIATE_PROTOCOL`; the client's
``send(endpoint, raw, timeout_s)`` returns the reply bytes or None.  Both share one
:class:`~p2pnode.transport.libp2p_host.Libp2pHost` (a node listens and dials on one identity,
and a connection opened either way is reused both ways).  The client inherits the seeded
fault injection of :class:`p2pnode.peer.PeerClient`; only the last hop differs.

Routes added with :meth:`Libp2pPeerServer.add_post` (``/p2p/v1/<name>``) are served on the
protocol ``/p2p-energy/<name>/1.0.0`` with the reply ``status (2 bytes) + body``.
"""

from __future__ import annotations

import collections
import socket
import struct
from collections.abc import Callable

from p2pnode.dht.faults import FaultPlan
from p2pnode.negotiation import MAX_PEER_MESSAGE_BYTES
from p2pnode.peer import PATH, PeerClient, PeerError
from p2pnode.transport.address import libp2p_endpoint, parse_libp2p_endpoint
from p2pnode.transport.libp2p_host import Libp2pHost

__all__ = ["NEGOTIATE_PROTOCOL", "Libp2pPeerClient", "Libp2pPeerServer", "route_protocol"]

NEGOTIATE_PROTOCOL = "/p2p-energy/negotiate/1.0.0"
STATUS = struct.Struct(">H")


def route_protocol(path: str) -> str:
    """The libp2p protocol id of a peer route ``/p2p/v1/<name>``."""
    return f"/p2p-energy/{path.removeprefix('/p2p/v1/').strip('/')}/1.0.0"


class Libp2pPeerServer:
    """Serves ``handler(body) -> reply | None`` on :data:`NEGOTIATE_PROTOCOL` over libp2p."""

    def __init__(self, host: Libp2pHost, handler: Callable[[bytes], bytes | None]):
        self.libp2p = host
        self.handler = handler
        host.add_protocol(NEGOTIATE_PROTOCOL, lambda body: self.handler(body))
        self.port = 0

    @property
    def counters(self) -> collections.Counter:
        return self.libp2p.counters

    def add_post(self, path: str, handler: Callable[[bytes], tuple[int, bytes]],
                 content_type: str = "application/json") -> None:
        """Serve ``handler(body) -> (status, reply)`` on :func:`route_protocol` of ``path``."""
        if not path.startswith("/p2p/") or path == PATH:
            raise ValueError(f"{path}: peer routes live under /p2p/ and {PATH} is taken")

        def route(body: bytes) -> bytes:
            status, reply = handler(body)
            return STATUS.pack(status) + reply

        try:
            self.libp2p.add_protocol(route_protocol(path), route)
        except RuntimeError as exc:
            raise RuntimeError(f"cannot add {path}: the peer endpoint is already started") from exc

    async def start(self, host: str, port: int) -> None:
        if port:
            _check_port_free(host, port)
        try:
            self.port = await self.libp2p.start(host, port)
        except OSError as exc:
            raise PeerError(f"cannot bind the libp2p peer endpoint to {host}:{port}: "
                            f"{exc.strerror or exc}") from exc

    async def stop(self) -> None:
        await self.libp2p.stop()

    @property
    def serving(self) -> bool:
        """Started and bound (the local API's health)."""
        return self.libp2p.running and self.port > 0

    def endpoint(self, hostport: str) -> str:
        """The multiaddr others dial for ``host:port`` (the advertised or the bound address)."""
        host, _, port = hostport.rpartition(":")
        return libp2p_endpoint(host, int(port), self.libp2p.key.public)


def _check_port_free(host: str, port: int) -> None:
    """py-libp2p listens with SO_REUSEPORT, so a second node on a taken port would bind too and
    share its connections; refuse that as HTTP does (a plain bind fails when the port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # TIME_WAIT is no listener
    try:
        probe.bind((host, port))
    except OSError as exc:
        raise PeerError(f"cannot bind the libp2p peer endpoint to {host}:{port}: "
                        f"{exc.strerror or exc}") from exc
    finally:
        probe.close()


class Libp2pPeerClient(PeerClient):
    """Sends requests to libp2p endpoints; :class:`PeerClient`'s fault injection applies."""

    def __init__(self, host: Libp2pHost, faults: FaultPlan | None = None, stream: str = ""):
        super().__init__(faults, stream)
        self.libp2p = host

    async def start(self) -> None:
        """Nothing to open: the host is started by the server (it listens and dials)."""

    async def _post(self, endpoint: str, body: bytes, timeout_s: float) -> bytes | None:
        self.sent += 1
        if isinstance(parse_libp2p_endpoint(endpoint), str):
            self.libp2p.counters["libp2p_not_a_libp2p_endpoint"] += 1
            return None
        reply = await self.libp2p.request(endpoint, NEGOTIATE_PROTOCOL, body, timeout_s)
        return reply if reply and len(reply) <= MAX_PEER_MESSAGE_BYTES else None
