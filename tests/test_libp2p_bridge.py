"""The Trio thread called from asyncio (p2pnode.transport.bridge), without libp2p."""

from __future__ import annotations

import asyncio
import threading

import pytest
import trio

from p2pnode.transport import bridge
from tests.dhtkit import run


@pytest.fixture
def thread():
    t = bridge.TrioThread(name="test-trio")
    t.start()
    yield t
    t.stop()
    assert not t.running


def test_a_trio_coroutine_runs_on_the_trio_thread_and_returns_its_result(thread):
    async def where(x):
        await trio.sleep(0.01)
        return x * 2, threading.current_thread().name

    async def main():
        assert await thread.run(where, 21) == (42, "test-trio")
        # many at once, interleaved on the one thread
        got = await asyncio.gather(*(thread.run(where, i) for i in range(50)))
        assert [g[0] for g in got] == [2 * i for i in range(50)]

    run(main())


def test_an_exception_in_trio_is_raised_in_asyncio(thread):
    async def fails():
        await trio.sleep(0)
        raise KeyError("from trio")

    async def main():
        with pytest.raises(KeyError, match="from trio"):
            await thread.run(fails)

    run(main())


def test_cancelling_the_asyncio_caller_cancels_the_trio_task(thread):
    events = []

    async def slow():
        try:
            await trio.sleep(30)
        finally:
            events.append("trio task ended")

    async def main():
        task = asyncio.create_task(thread.run(slow))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):   # the Trio side sees the cancellation promptly
            if events:
                break
            await asyncio.sleep(0.01)
        assert events == ["trio task ended"]

    run(asyncio.wait_for(main(), 5))


def test_trio_calls_a_sync_function_on_the_asyncio_loop(thread):
    async def main():
        loop = asyncio.get_running_loop()
        loop_thread = threading.current_thread().name

        def on_loop(x):
            assert asyncio.get_running_loop() is loop   # really on the loop, in its thread
            return x + 1, threading.current_thread().name

        def fails():
            raise ValueError("from asyncio")

        async def in_trio():
            value = await bridge.run_on_loop(loop, on_loop, 1)
            with pytest.raises(ValueError, match="from asyncio"):
                await bridge.run_on_loop(loop, fails)
            return value

        assert await thread.run(in_trio) == (2, loop_thread)

    run(main())


def test_a_stopped_thread_refuses_calls_and_pending_calls_end(thread):
    async def forever():
        await trio.sleep_forever()

    async def main():
        pending = asyncio.create_task(thread.run(forever))
        await asyncio.sleep(0.05)
        await asyncio.get_running_loop().run_in_executor(None, thread.stop)
        with pytest.raises(bridge.BridgeClosed):
            await asyncio.wait_for(pending, 5)
        with pytest.raises(bridge.BridgeClosed):
            await thread.run(forever)

    run(main())


def test_one_shared_thread_per_process_until_the_last_user_releases_it():
    first = bridge.acquire()
    second = bridge.acquire()
    try:
        assert first is second and first.running
    finally:
        bridge.release(first)
    assert second.running        # one user left
    bridge.release(second)
    assert not second.running
    third = bridge.acquire()     # a new one on next use
    try:
        assert third is not first and third.running
    finally:
        bridge.release(third)
