"""Flow control for reconnect storms: how fast handshakes are admitted, and how many wait.

:class:`TokenBucket` is pure arithmetic (time is passed in). :class:`Admission` is the node's gate
built on it: a handshake takes a token or waits for one in a bounded queue; when the queue is full
it is refused with a jittered retry hint, so the refused clients spread their retries out.
"""

from __future__ import annotations

import asyncio
import random
import time


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up.

    :meth:`reserve` takes a token now or books the next free one: the bucket may go negative, each
    negative token being one booked handshake.
    """

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def reserve(self, now: float) -> float:
        """Take a token: 0.0 if one was there, else how many seconds until the booked one is."""
        self._refill(now)
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def booked(self, now: float) -> int:
        """How many handshakes are waiting for a token."""
        self._refill(now)
        return max(0, int(-self._tokens + 0.999999))


class Refused(Exception):
    """The handshake queue is full; ``retry_after`` (seconds, jittered) says when to come back."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"try again in {retry_after:.0f} s")
        self.retry_after = retry_after


class Admission:
    """The node's handshake gate: ``rate`` per second, ``burst`` at once, ``queue`` waiting."""

    def __init__(self, rate: float, burst: float, queue: int) -> None:
        self.bucket = TokenBucket(rate, burst, time.monotonic())
        self.queue = queue
        self.admitted = 0
        self.deferred = 0
        self.refused = 0

    @property
    def waiting(self) -> int:
        return self.bucket.booked(time.monotonic())

    def full(self) -> bool:
        return self.waiting >= self.queue

    def retry_after(self) -> float:
        """Seconds a refused client should wait: the time to drain the queue, spread ±50 %."""
        drain = (self.queue + 1) / self.bucket.rate
        return max(1.0, drain * random.uniform(0.5, 1.5))

    def refuse(self) -> Refused:
        self.refused += 1
        return Refused(self.retry_after())

    async def admit(self) -> None:
        """Wait for this handshake's turn, or raise :class:`Refused` when too many wait already."""
        if self.full():
            raise self.refuse()
        delay = self.bucket.reserve(time.monotonic())
        if delay > 0:
            self.deferred += 1
            await asyncio.sleep(delay)
        self.admitted += 1
