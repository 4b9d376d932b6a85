"""The DHT's task registry: every background task has this owner and is cancelled on stop.

A task that fails is reported to the event loop's exception handler (so a test that installs
one fails on it) and counted; it never disappears silently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine

__all__ = ["TaskRegistry"]


class TaskRegistry:
    def __init__(self, name: str):
        self.name = name
        self.failed = 0
        self._tasks: set[asyncio.Task] = set()
        self._closed = False

    def spawn(self, coro: Coroutine, name: str | None = None) -> asyncio.Task:
        if self._closed:
            coro.close()
            raise RuntimeError(f"{self.name}: task registry is closed")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        self.failed += 1
        task.get_loop().call_exception_handler({
            "message": f"{self.name}: task {task.get_name()} failed",
            "exception": task.exception(),
            "task": task,
        })

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Cancel every task and wait until they have all finished."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
