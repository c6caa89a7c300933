"""Flow control for reconnect storms: how fast handshakes are admitted, and how many wait.

:class:`TokenBucket` is pure arithmetic (time is passed in). :class:`Admission` is the node's gate
built on it: a handshake takes a token or waits in a bounded queue for one; waiters are let in,
oldest first, as tokens come at the *current* rate (which the node's
:class:`~logsync.engine.load.Controller` moves between a floor and ``handshake_rate``); past the
queue a handshake is refused with a retry hint computed from the backlog and that rate.

How long the queue takes to drain is estimated with the controller's recovery: from the current
rate the rate climbs by ``increase`` per second up to ``ceiling`` (:func:`admitted_within`,
:func:`drain_time`). A cut therefore does not empty the queue at once: a handshake waits while
the estimate is under ``wait_max``, and only the rest are refused (with 0 ``increase`` the rate
is taken as constant).

Call :meth:`Admission.admit`, then :meth:`Admission.done` once the handshake ended (accepted or
not): the handshakes in progress are counted (``handshake_concurrency`` caps them when set).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import deque
from collections.abc import Callable

# A retry hint is spread ±this fraction (the clients add their own jitter on top).
RETRY_JITTER = 0.2
# The node's waiters are let in at most this often, all whose tokens came meanwhile at once: at
# 500 handshakes/s the loop wakes once for about 5 of them, and they go through their
# handshakes together, instead of once for each (server CPU per paced handshake ~610 -> ~320-435 us
# on the bench; unpaced it is ~200 us; see BENCHMARKS.md). It delays a waiter by at most this.
NODE_TICK_S = 0.01


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up — or the tokens of one ``tick`` when
    that is more (whoever takes them once per tick still gets the whole rate).

    :meth:`take` takes a token if one is there. :meth:`reserve` takes one now or books the next
    free one: the bucket may go negative, each negative token being one booked handshake.
    """

    def __init__(self, rate: float, burst: float, now: float, tick: float = 0.0) -> None:
        self.rate = rate
        self.burst = burst
        self.tick = tick
        self._tokens = burst
        self._last = now

    def _refill(self, now: float) -> None:
        most = max(self.burst, self.rate * self.tick)
        self._tokens = min(most, self._tokens + max(0.0, now - self._last) * self.rate)
        self._last = now

    def set_rate(self, rate: float, now: float) -> None:
        """Tokens come at ``rate`` from ``now`` on (those up to ``now`` at the old rate)."""
        self._refill(now)
        self.rate = rate

    def take(self, now: float) -> bool:
        """Take a whole token if one is there."""
        self._refill(now)
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def until_next(self, now: float) -> float:
        """Seconds until a whole token is there (0.0 if one is)."""
        self._refill(now)
        return max(0.0, (1 - self._tokens) / self.rate)

    def reserve(self, now: float) -> float:
        """Take a token: 0.0 if one was there, else how many seconds until the booked one is."""
        self._refill(now)
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def booked(self, now: float) -> int:
        """How many handshakes are waiting for a token."""
        self._refill(now)
        return max(0, int(-self._tokens + 0.999999))


def admitted_within(seconds: float, rate: float, increase: float, ceiling: float) -> float:
    """Handshakes admitted in ``seconds`` from ``rate`` (per second) climbing by ``increase``
    per second up to ``ceiling`` (``rate`` throughout when ``increase`` is 0)."""
    top = max(rate, ceiling)
    if increase <= 0 or rate >= top:
        return rate * seconds
    climb = min(seconds, (top - rate) / increase)  # seconds until the ceiling
    return rate * climb + increase * climb * climb / 2 + top * (seconds - climb)


def drain_time(turns: float, rate: float, increase: float, ceiling: float) -> float:
    """Seconds until ``turns`` handshakes are admitted (the inverse of
    :func:`admitted_within`)."""
    top = max(rate, ceiling)
    if increase <= 0 or rate >= top:
        return turns / rate
    climb = (top - rate) / increase
    during = rate * climb + increase * climb * climb / 2
    if turns >= during:
        return climb + (turns - during) / top
    # rate * t + increase * t² / 2 = turns
    return (math.sqrt(rate * rate + 2 * increase * turns) - rate) / increase


class Refused(Exception):
    """The handshake queue is full; ``retry_after`` (seconds, jittered) says when to come back."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"try again in {retry_after:.0f} s")
        self.retry_after = retry_after


class Admission:
    """The node's handshake gate: ``rate`` per second (:meth:`set_rate` moves it), ``burst`` at
    once, at most ``queue`` waiting — and no more than are admitted in ``wait_max`` seconds from
    the current rate climbing by ``increase`` per second to ``ceiling`` (the controller's
    recovery; 0: the current rate throughout), so none is expected to wait longer than that (it
    is told to come back instead).

    ``concurrency`` (0: no cap) caps the handshakes admitted and not :meth:`done` yet.
    ``retry_min``/``retry_max`` clamp the retry hints. ``tick``: waiters are let in at most
    this often (0: each as its token comes). ``clock`` is the monotonic time.
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        queue: int,
        *,
        wait_max: float = math.inf,
        increase: float = 0.0,
        ceiling: float = 0.0,
        concurrency: int = 0,
        retry_min: float = 1.0,
        retry_max: float = 60.0,
        tick: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.bucket = TokenBucket(rate, burst, clock(), tick)
        self.queue = queue
        self.wait_max = wait_max
        self.increase = increase
        self.ceiling = ceiling
        self.concurrency = concurrency
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.admitted = 0
        self.deferred = 0
        self.refused = 0
        self.in_progress = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        # turns owed to refused clients (the queue beyond the queue: each refused client is told
        # one turn later than the previous), paid off at the current rate as time passes
        self._owed = 0.0
        self._owed_at = clock()

    @property
    def rate(self) -> float:
        return self.bucket.rate

    @property
    def waiting(self) -> int:
        """Handshakes waiting for their turn."""
        return len(self._waiters)

    @property
    def bound(self) -> int:
        """How many may wait now: ``queue``, or fewer when the rate (recovering as the
        controller does) would keep them past ``wait_max``."""
        if self.queue <= 1 or math.isinf(self.wait_max):
            return max(1, self.queue)
        within = admitted_within(self.wait_max, self.rate, self.increase, self.ceiling)
        return max(1, int(min(self.queue, within)))

    def set_rate(self, rate: float) -> None:
        """Admit at ``rate`` from now on (the controller's step)."""
        if rate != self.bucket.rate:
            self.bucket.set_rate(rate, self.clock())
            self._pump()

    def full(self) -> bool:
        return self.waiting >= self.bound

    def retry_after(self, promise: bool = False) -> float:
        """Seconds a refused client should wait: until the queue ahead of it has drained at the
        current rate (recovering as the controller does: :func:`drain_time`), plus one turn for
        each client refused before it and not yet due back;
        spread ±:data:`RETRY_JITTER`, clamped to ``retry_min``…``retry_max``. ``promise``: this
        client is refused (:meth:`refuse`), the next one is told one turn later."""
        now, rate = self.clock(), self.rate
        owed = max(0.0, self._owed - (now - self._owed_at) * rate)
        turns = self.waiting + owed + 1
        if promise:
            most = admitted_within(self.retry_max, rate, self.increase, self.ceiling)
            self._owed, self._owed_at = min(owed + 1, most), now
        due = drain_time(turns, rate, self.increase, self.ceiling)
        hint = due * random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)
        return min(self.retry_max, max(self.retry_min, hint))

    def refuse(self) -> Refused:
        self.refused += 1
        return Refused(self.retry_after(promise=True))

    async def admit(self) -> None:
        """Wait for this handshake's turn, or raise :class:`Refused` when too many wait already.
        Once it returns, call :meth:`done` when the handshake has ended."""
        if not self._waiters and self._free() and self.bucket.take(self.clock()):
            self._enter()
            return
        if self.full():
            raise self.refuse()
        self.deferred += 1
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._schedule()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.done()  # let in just as it was cancelled: give the place back
            else:
                with contextlib.suppress(ValueError):  # _pump may have dropped it
                    self._waiters.remove(waiter)
            raise
        # _pump counted it in (admitted, in_progress) when it resolved the waiter

    def done(self) -> None:
        """A handshake :meth:`admit` let in has ended: its place goes to the next."""
        self.in_progress -= 1
        self._pump()

    def _free(self) -> bool:
        return self.concurrency <= 0 or self.in_progress < self.concurrency

    def _enter(self) -> None:
        self.admitted += 1
        self.in_progress += 1

    def _pump(self) -> None:
        """Let in the oldest waiters while there are tokens and places; time the next turn."""
        waiters = self._waiters
        while waiters and self._free():
            if waiters[0].done():  # cancelled, its task not resumed yet
                waiters.popleft()
                continue
            if not self.bucket.take(self.clock()):
                break
            waiter = waiters.popleft()
            self._enter()
            waiter.set_result(None)
        self._schedule(again=True)

    def _schedule(self, again: bool = False) -> None:
        """Time the next turn (``again``: anew, the rate or the places may have changed)."""
        if self._timer is not None:
            if not again:
                return
            self._timer.cancel()
            self._timer = None
        if self._waiters and self._free():
            delay = max(self.bucket.tick, self.bucket.until_next(self.clock()))
            self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._pump()
