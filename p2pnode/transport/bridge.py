"""A Trio event loop on its own thread, callable from asyncio, calling back into asyncio.

py-libp2p is Trio-native and our node is asyncio.  :class:`TrioThread` runs one Trio loop on a
daemon thread; any number of libp2p hosts (one per node of a swarm) live on it as tasks.

From asyncio, ``await thread.run(async_fn, *args)`` runs ``async_fn(*args)`` as a Trio task and
returns its result or raises its exception; cancelling the awaiting asyncio task cancels the
Trio task.  From Trio, ``await run_on_loop(loop, fn, *args)`` runs the plain function ``fn`` on
the asyncio ``loop`` (our sync peer handlers touch the ledger, which belongs to the loop) and
returns its result.

:func:`acquire` / :func:`release` share one thread per process (counted references): the
first node to start a libp2p host starts it, the last to stop ends it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from p2pnode.errors import NodeError

__all__ = ["BridgeClosed", "TrioThread", "acquire", "release", "run_on_loop"]

START_TIMEOUT_S = 10.0
JOIN_TIMEOUT_S = 10.0


class BridgeClosed(NodeError):
    """The Trio thread is not running (never started, stopped, or its loop ended)."""


class _Call:
    """The asyncio side's handle on one Trio task: cancel it from either thread."""

    __slots__ = ("scope", "cancelled")

    def __init__(self):
        self.scope: trio.CancelScope | None = None
        self.cancelled = False

    def cancel(self) -> None:   # runs on the Trio thread
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()


class TrioThread:
    """One Trio loop on a daemon thread; :meth:`run` submits Trio coroutines from asyncio."""

    def __init__(self, name: str = "libp2p-trio"):
        self.name = name
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._token is not None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the Trio thread is already started")
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or self._token is None:
            raise BridgeClosed(f"the Trio thread did not start: {self.error!r}")

    def stop(self) -> None:
        """Cancel every Trio task still running and join the thread."""
        if self._thread is None:
            return
        token, self._token = self._token, None
        if token is not None:
            try:
                token.run_sync_soon(self._stop.set)
            except trio.RunFinishedError:
                pass
        self._thread.join(JOIN_TIMEOUT_S)
        self._thread = None

    def _main(self) -> None:
        try:
            trio.run(self._root)
        except BaseException as exc:  # recorded for start(); the thread ends either way
            self.error = exc
        finally:
            self._token = None
            self._ready.set()

    async def _root(self) -> None:
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    async def run(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run ``async_fn(*args)`` on the Trio thread; its result, or its exception raised here."""
        token = self._token
        if token is None:
            raise BridgeClosed("the Trio thread is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        call = _Call()

        def spawn() -> None:
            if self._stop.is_set():
                _deliver(loop, future, BridgeClosed("the Trio thread is stopping"))
                return
            self._nursery.start_soon(self._task, async_fn, args, loop, future, call)

        try:
            token.run_sync_soon(spawn)
        except trio.RunFinishedError:
            raise BridgeClosed("the Trio thread has stopped") from None
        try:
            return await future
        except asyncio.CancelledError:
            try:
                token.run_sync_soon(call.cancel)
            except trio.RunFinishedError:
                pass
            raise

    @staticmethod
    async def _task(async_fn, args, loop, future, call: _Call) -> None:
        try:
            with trio.CancelScope() as scope:
                call.scope = scope
                if call.cancelled:
                    scope.cancel()
                result = await async_fn(*args)
        except Exception as exc:
            _deliver(loop, future, exc)
            return
        except BaseException:   # the whole thread is stopping: Trio's Cancelled goes on up
            _deliver(loop, future, BridgeClosed("the Trio thread stopped during the call"))
            raise
        if scope.cancelled_caught:
            _deliver(loop, future, asyncio.CancelledError())
        else:
            _deliver(loop, future, None, result)


def _deliver(loop: asyncio.AbstractEventLoop, future: asyncio.Future,
             exc: BaseException | None, result: Any = None) -> None:
    """Complete ``future`` on its own loop (from the Trio thread); a closed loop gets nothing."""
    def complete() -> None:
        if future.done():
            return
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        elif exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    try:
        loop.call_soon_threadsafe(complete)
    except RuntimeError:   # the loop is closed: nobody is waiting any more
        pass


async def run_on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> Any:
    """From a Trio task: ``fn(*args)`` on the asyncio ``loop``; its result or its exception.

    Raises :class:`BridgeClosed` when the loop is closed.  If the Trio task is cancelled while
    waiting, ``fn`` still runs (or has run) on the loop; only its result is not waited for.
    """
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    box: dict[str, Any] = {}

    def on_loop() -> None:
        try:
            box["result"] = fn(*args)
        except Exception as exc:
            box["error"] = exc
        try:
            token.run_sync_soon(done.set)
        except trio.RunFinishedError:
            pass

    try:
        loop.call_soon_threadsafe(on_loop)
    except RuntimeError as exc:
        raise BridgeClosed("the asyncio loop is closed") from exc
    await done.wait()
    if "error" in box:
        raise box["error"]
    return box["result"]


# -- one thread per process -----------------------------------------------------------------
_lock = threading.Lock()
_shared: TrioThread | None = None
_users = 0


def acquire() -> TrioThread:
    """The process's shared Trio thread, started on first use; pair with :func:`release`."""
    global _shared, _users
    with _lock:
        if _shared is None or not _shared.running:
            _shared = TrioThread()
            _shared.start()
            _users = 0
        _users += 1
        return _shared


def release(thread: TrioThread) -> None:
    """One user fewer; the last one stops the thread."""
    global _shared, _users
    with _lock:
        if thread is not _shared:
            thread.stop()
            return
        _users -= 1
        if _users <= 0:
            _shared.stop()
            _shared, _users = None, 0
