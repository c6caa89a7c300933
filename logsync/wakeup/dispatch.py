"""A bounded queue worked by a bounded number of tasks: where wake-ups wait to be sent, beside
the log and never in its way — :meth:`Dispatcher.offer` never waits (False when full: the
caller drops and counts), at most ``concurrency`` sends run at once.

``Dispatcher(send, size, concurrency)``; :meth:`start` in a running loop, :meth:`stop` at the
end; :meth:`idle` for tests and shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

logger = logging.getLogger("logsync.wakeup")
J = TypeVar("J")


class Dispatcher(Generic[J]):
    """Runs ``send(job)`` for each offered job, ``concurrency`` at a time, ``size`` waiting."""

    def __init__(self, send: Callable[[J], Awaitable[None]], size: int, concurrency: int) -> None:
        self._send = send
        self._queue: asyncio.Queue[J] = asyncio.Queue(maxsize=size)
        self._concurrency = concurrency
        self._workers: list[asyncio.Task[None]] = []

    @property
    def waiting(self) -> int:
        """Jobs offered and not yet started."""
        return self._queue.qsize()

    def offer(self, job: J) -> bool:
        """Queue ``job``; False (nothing queued) when the queue is full."""
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            return False
        return True

    def start(self) -> None:
        """Start the workers (in the running loop)."""
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._work()) for _ in range(self._concurrency)]

    async def idle(self) -> None:
        """Return once every offered job has been sent."""
        await self._queue.join()

    async def stop(self) -> None:
        """Cancel the workers; queued jobs are dropped."""
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    async def _work(self) -> None:
        queue = self._queue
        while True:
            job = await queue.get()
            try:
                await self._send(job)
            except Exception:
                logger.exception("wake-up send failed with an error")
            finally:
                queue.task_done()
