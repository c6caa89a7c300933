"""The hybrid logical clock that stamps ids the server creates.

Rules: an id this clock makes is newer (by :func:`~logsync.protocol.ids.is_first_older`) than any id
it has made or observed. It follows wall time when wall time is ahead. Otherwise it keeps its own
last millisecond and bumps the sequence; after observing another node's time at or past that
millisecond it moves one millisecond beyond it (at equal times Logux orders by node id, which we do
not choose). So a server reaction always sorts after its cause, even when the cause came from a
client whose clock runs ahead.
"""

from __future__ import annotations


class HybridClock:
    """Make ``(ms, seq)`` pairs for a node: call :meth:`observe` on every id seen, :meth:`next` to stamp."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._last_ms = 0
        self._seq = -1
        self._observed_ms = -1

    def observe(self, ms: int) -> None:
        """Record a time seen in another node's id or meta, so later stamps sort after it."""
        self._observed_ms = max(self._observed_ms, ms)

    def next(self, wall_ms: int) -> tuple[int, int]:
        """The next ``(ms, seq)``; use ``ms`` as both the id's ms and ``meta.time``."""
        floor = max(self._last_ms, self._observed_ms)
        if wall_ms > floor:
            self._last_ms, self._seq = wall_ms, 0
        elif self._observed_ms >= self._last_ms:
            self._last_ms, self._seq = self._observed_ms + 1, 0
        else:
            self._seq += 1
        return self._last_ms, self._seq

    def next_id(self, wall_ms: int) -> tuple[str, int]:
        """A new action id and its time."""
        ms, seq = self.next(wall_ms)
        return f"{ms} {self.node_id} {seq}", ms
