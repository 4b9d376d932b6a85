"""Connection limits for the node's HTTP servers: idle and slow connections do not pile up.

aiohttp's server keeps a connection open until the client closes it (75 s after a response,
and forever while a request's headers are still arriving), with no limit on their number: 1,030
connections that sent nothing exhausted a node's file descriptors and made its local API
unreachable.  :class:`ConnectionGuard` (pure: the time is passed in) decides, and
:class:`GuardedSite` (a ``web.TCPSite``) applies it to every connection:

* a connection must start its next request within ``idle_s`` of opening or of its previous
  response, and finish reading it within ``request_s`` -- a slow sender is closed at that
  deadline however it trickles its bytes;
* at most ``max_connections`` at once: a new connection past the limit closes the connection
  that has been idle longest (idle ones hold nothing), or is refused when all are busy.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools

from aiohttp import web

__all__ = ["ConnectionGuard", "ConnectionLimits", "GuardedSite", "SiteRef"]

SWEEP_INTERVAL_S = 0.5


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 256
    idle_s: float = 10.0        # to start a request after opening or after the last response
    request_s: float = 30.0     # to read and answer one request

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.idle_s <= 0 or self.request_s <= 0:
            raise ValueError("ConnectionLimits need max_connections >= 1, idle_s and request_s > 0")


class ConnectionGuard:
    """Which connections to close: by deadline, and to make room for a new one (pure)."""

    def __init__(self, limits: ConnectionLimits):
        self.limits = limits
        self.closed: collections.Counter[str] = collections.Counter()
        self._idle_since: dict[int, float] = {}     # connection -> idle since (ordered)
        self._busy_since: dict[int, float] = {}     # connection -> request started

    def __len__(self) -> int:
        return len(self._idle_since) + len(self._busy_since)

    def opened(self, conn: int, now: float) -> list[int]:
        """Admit ``conn``; the connections to close for it (``conn`` itself when all are busy)."""
        close = []
        if len(self) >= self.limits.max_connections:
            if not self._idle_since:
                self.closed["refused"] += 1
                return [conn]
            oldest = next(iter(self._idle_since))
            self.closed["evicted_idle"] += 1
            self.gone(oldest)
            close.append(oldest)
        self._idle_since[conn] = now
        return close

    def request_started(self, conn: int, now: float) -> None:
        if self._idle_since.pop(conn, None) is not None:
            self._busy_since[conn] = now

    def request_done(self, conn: int, now: float) -> None:
        if self._busy_since.pop(conn, None) is not None:
            self._idle_since[conn] = now

    def gone(self, conn: int) -> None:
        self._idle_since.pop(conn, None)
        self._busy_since.pop(conn, None)

    def overdue(self, now: float) -> list[int]:
        """Connections past their deadline (forgotten here; the caller closes them)."""
        late = [c for c, t in self._idle_since.items() if now - t > self.limits.idle_s]
        self.closed["idle_timeout"] += len(late)
        slow = [c for c, t in self._busy_since.items() if now - t > self.limits.request_s]
        self.closed["request_timeout"] += len(slow)
        for conn in late + slow:
            self.gone(conn)
        return late + slow


class _Tracked(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection, telling the guard when it opens and ends."""

    def __init__(self, site: GuardedSite, inner):
        self._site, self._inner, self.conn = site, inner, next(site.ids)

    def connection_made(self, transport) -> None:
        self._inner.connection_made(transport)
        self._site.opened(self, transport)

    def connection_lost(self, exc) -> None:
        self._site.lost(self)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self):
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class SiteRef:
    """Ties an application's middleware to the :class:`GuardedSite` that serves it.

    ``app = web.Application(middlewares=[ref.middleware])``, then
    ``GuardedSite(runner, host, port, ref=ref)``: requests mark their connection busy.
    """

    def __init__(self):
        self.site: GuardedSite | None = None

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        site = self.site
        conn = site.request_started(request.protocol) if site is not None else None
        try:
            return await handler(request)
        finally:
            if site is not None:
                site.request_done(conn)


class GuardedSite(web.TCPSite):
    """A ``web.TCPSite`` whose connections a :class:`ConnectionGuard` limits (see SiteRef)."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, *, ref: SiteRef,
                 limits: ConnectionLimits = ConnectionLimits(), **kwargs):
        super().__init__(runner, host, port, **kwargs)
        self.guard = ConnectionGuard(limits)
        self.ids = itertools.count(1)
        self._transports: dict[int, asyncio.Transport] = {}
        self._by_handler: dict[int, int] = {}    # id(aiohttp handler) -> connection
        self._sweeper: asyncio.Task | None = None
        ref.site = self

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        self._server = await loop.create_server(
            lambda: _Tracked(self, server()), self._host, self._port,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port)
        self._bound_port = self._server.sockets[0].getsockname()[1]
        self._sweeper = asyncio.create_task(self._sweep(), name="connection guard")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await super().stop()

    def opened(self, tracked: _Tracked, transport) -> None:
        self._transports[tracked.conn] = transport
        self._by_handler[id(tracked._inner)] = tracked.conn
        for conn in self.guard.opened(tracked.conn, asyncio.get_running_loop().time()):
            self._close(conn)

    def lost(self, tracked: _Tracked) -> None:
        self.guard.gone(tracked.conn)
        self._transports.pop(tracked.conn, None)
        self._by_handler.pop(id(tracked._inner), None)

    def request_started(self, handler) -> int | None:
        conn = self._by_handler.get(id(handler))
        if conn is not None:
            self.guard.request_started(conn, asyncio.get_running_loop().time())
        return conn

    def request_done(self, conn: int | None) -> None:
        if conn is not None:
            self.guard.request_done(conn, asyncio.get_running_loop().time())

    def _close(self, conn: int) -> None:
        transport = self._transports.pop(conn, None)
        if transport is not None:
            transport.abort()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            for conn in self.guard.overdue(asyncio.get_running_loop().time()):
                self._close(conn)
