"""Reconnect delays: full-jitter exponential backoff, and the server's ``Retry-After`` honoured.

:class:`Backoff` gives ``uniform(0, min(max_delay, min_delay * 2**attempt))`` seconds (AWS's "full
jitter": retries of many clients spread out instead of arriving in waves); :meth:`Backoff.reset`
after a successful connection. A server that said when to come back (WebSocket close 1013 or HTTP
503 with ``Retry-After``) is not asked sooner: :class:`RetryLater` carries that delay.
"""

from __future__ import annotations

import random


class RetryLater(Exception):
    """The server is overloaded: try again no sooner than ``seconds``."""

    def __init__(self, seconds: float, why: str = "try again later") -> None:
        super().__init__(f"{why} (retry in {seconds:.1f} s)")
        self.seconds = seconds


class Backoff:
    """Delays between reconnect attempts; see the module docstring."""

    def __init__(
        self, min_delay: float = 0.5, max_delay: float = 30.0, rng: random.Random | None = None
    ) -> None:
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self, retry_after: float | None = None) -> float:
        """The delay before the next attempt; at least ``retry_after`` when the server gave one."""
        cap = min(self.max_delay, self.min_delay * 2**self.attempt)
        self.attempt += 1
        delay = self._rng.uniform(0, cap)
        if retry_after is not None:
            # The server's hint is already jittered; add a little of ours so a herd spreads more.
            delay = retry_after + self._rng.uniform(0, self.min_delay)
        return delay

    def reset(self) -> None:
        self.attempt = 0


def parse_retry_after(value: str | None, default: float) -> float:
    """Seconds of an HTTP ``Retry-After`` (delta-seconds form), or ``default``."""
    if value is None:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        return default
