"""The peer endpoint: negotiation messages over HTTP (aiohttp), with optional injected faults.

Connections are limited (:mod:`p2pnode.connguard`, :data:`PEER_CONNECTIONS`): one that sends
no request for 10 s or takes longer than 10 s over one is closed, and past 512 connections the
longest idle one makes room.  The client keeps idle connections 5 s, below that limit.

One route, ``POST /p2p/v1/negotiate``: the body is a sealed :class:`~p2pnode.negotiation.PeerRequest`,
the response body the sealed :class:`~p2pnode.negotiation.PeerReply` (status 200), or an empty
400 when the request was dropped (malformed, forged, replayed, not for this node; the node
counts why).  This endpoint is for peers and is separate from the local API of the node owner.

:class:`PeerClient` sends one request and returns the reply bytes or ``None`` (timeout, refused,
lost).  With a :class:`~p2pnode.dht.faults.FaultPlan` it loses the request or the reply, sends
duplicates and delays them, seeded: a lost request or reply costs the full timeout, exactly as on
a real network, and a duplicate really reaches the server twice.  Retrying is the caller's job.

Other peer-to-peer routes (the feeder role's reports, :mod:`p2pnode.feeder_role`) are added with
:meth:`PeerServer.add_post` before the server starts: the same socket, the same size ceiling.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import aiohttp
from aiohttp import web

from p2pnode.connguard import ConnectionLimits, GuardedSite, SiteRef
from p2pnode.dht.faults import FaultPlan
from p2pnode.errors import NodeError
from p2pnode.negotiation import MAX_PEER_MESSAGE_BYTES

__all__ = ["PATH", "PeerClient", "PeerServer", "PeerError"]

PATH = "/p2p/v1/negotiate"
CONTENT_TYPE = "application/x-p2p-energy"
PEER_CONNECTIONS = ConnectionLimits(max_connections=512, idle_s=10.0, request_s=10.0)
CLIENT_KEEPALIVE_S = 5.0    # below the server's idle limit: a pooled connection is never stale


class PeerError(NodeError):
    """The peer endpoint cannot run (its socket cannot be bound)."""


class PeerServer:
    """Serves ``handler(body) -> reply bytes | None`` on ``host:port`` (0: the OS picks)."""

    def __init__(self, handler: Callable[[bytes], bytes | None],
                 limits: ConnectionLimits = PEER_CONNECTIONS):
        self.handler = handler
        self.limits = limits
        self._site_ref = SiteRef()
        self.site: GuardedSite | None = None
        self.app = web.Application(client_max_size=MAX_PEER_MESSAGE_BYTES,
                                   middlewares=[self._site_ref.middleware])
        self.app.router.add_post(PATH, self._negotiate)
        self.runner: web.AppRunner | None = None
        self.port = 0

    def add_post(self, path: str, handler: Callable[[bytes], tuple[int, bytes]],
                 content_type: str = "application/json") -> None:
        """Serve ``POST path`` with ``handler(body) -> (status, reply bytes)``; before start.

        A body over the server's ceiling (:data:`MAX_PEER_MESSAGE_BYTES`) reaches the handler as
        that many bytes plus one, so it counts the oversize like any other.
        """
        if self.runner is not None:
            raise RuntimeError(f"cannot add {path}: the peer endpoint is already started")
        if not path.startswith("/p2p/") or path == PATH:
            raise ValueError(f"{path}: peer routes live under /p2p/ and {PATH} is taken")

        async def route(request: web.Request) -> web.Response:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                body = b"\0" * (MAX_PEER_MESSAGE_BYTES + 1)
            status, reply = handler(body)
            return web.Response(status=status, body=reply, content_type=content_type)

        self.app.router.add_post(path, route)

    async def start(self, host: str, port: int) -> None:
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = self.site = GuardedSite(self.runner, host, port, ref=self._site_ref,
                                       limits=self.limits, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            raise PeerError(f"cannot bind the peer endpoint to {host}:{port}: {exc.strerror}") from exc
        self.port = self.runner.addresses[0][1]

    def endpoint(self, hostport: str) -> str:
        """The endpoint written into offers for ``host:port``: that, for HTTP."""
        return hostport

    @property
    def serving(self) -> bool:
        """Started and bound (the local API's health)."""
        return self.runner is not None and self.port > 0

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _negotiate(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            body = b"\0" * (MAX_PEER_MESSAGE_BYTES + 1)  # the handler counts it as oversize
        reply = self.handler(body)
        if reply is None:
            return web.Response(status=400)
        return web.Response(body=reply, content_type=CONTENT_TYPE)


class PeerClient:
    """Sends requests to peer endpoints ``host:port``; one connection pool per node."""

    def __init__(self, faults: FaultPlan | None = None, stream: str = ""):
        self.faults = faults
        self.random = random.Random(f"{faults.seed if faults else 0}/{stream}")
        self.session: aiohttp.ClientSession | None = None
        self.sent = 0
        self._background: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, limit_per_host=4,
                                           keepalive_timeout=CLIENT_KEEPALIVE_S),
            headers={"Content-Type": CONTENT_TYPE})

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def send(self, endpoint: str, body: bytes, timeout_s: float) -> bytes | None:
        """POST ``body`` to ``endpoint``; the reply bytes, or None if none came in time."""
        plan = self.faults
        if plan is None:
            return await self._post(endpoint, body, timeout_s)
        started = asyncio.get_running_loop().time()
        if plan.duplicate and self.random.random() < plan.duplicate:
            self._spawn(self._delayed_post(endpoint, body, timeout_s, plan))
        if self.random.random() < plan.loss:  # the request is lost on the way
            await asyncio.sleep(timeout_s)
            return None
        reply = await self._delayed_post(endpoint, body, timeout_s, plan)
        if reply is not None and self.random.random() < plan.loss:  # the reply is lost
            await asyncio.sleep(max(0.0, timeout_s - (asyncio.get_running_loop().time() - started)))
            return None
        return reply

    async def _delayed_post(self, endpoint: str, body: bytes, timeout_s: float,
                            plan: FaultPlan) -> bytes | None:
        if plan.delay_max_s:
            await asyncio.sleep(self.random.uniform(plan.delay_min_s, plan.delay_max_s))
        return await self._post(endpoint, body, timeout_s)

    async def _post(self, endpoint: str, body: bytes, timeout_s: float) -> bytes | None:
        if self.session is None:
            raise RuntimeError("PeerClient is not started")
        self.sent += 1
        try:
            async with self.session.post(f"http://{endpoint}{PATH}", data=body,
                                         timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                if resp.status != 200:
                    return None
                reply = await resp.content.read(MAX_PEER_MESSAGE_BYTES + 1)
                return reply if len(reply) <= MAX_PEER_MESSAGE_BYTES else None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
            return None

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
