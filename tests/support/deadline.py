"""One overall limit for a loop of reads, so that every wait of a test ends."""

from __future__ import annotations

import asyncio
import math


class Deadline:
    """``Deadline(60)``: :meth:`left` is the time left for the next read (at most ``per_read``),
    and fails the test once the whole loop has taken longer than ``seconds``. A polling loop
    that should say what it waited for asserts ``deadline.remaining() > 0, <the value>``
    instead (:meth:`remaining` does not fail by itself)."""

    def __init__(self, seconds: float, per_read: float = math.inf) -> None:
        self.end = asyncio.get_running_loop().time() + seconds
        self.per_read = per_read

    def left(self) -> float:
        left = self.remaining()
        assert left > 0, "the deadline passed"
        return min(left, self.per_read)

    def remaining(self) -> float:
        """Seconds until the deadline (0 or less once it passed); fails nothing."""
        return self.end - asyncio.get_running_loop().time()
