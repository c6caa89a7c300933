"""The node's catch-up budget, without I/O: how many bytes catch-up holds over all connections of
a node — frames queued for sockets, chunks read and not yet sent — and who may read next.

A catching-up connection calls :meth:`Budget.ask` before it reads a chunk: granted at once (it is
charged :attr:`Budget.estimate`, a chunk's likely size), or queued with a ``wake`` callback that
the budget calls when its turn comes. Once the chunk is written the connection's transport
reports what it really holds with :meth:`Budget.hold` (its queued bytes), again as the socket
drains (0: the holding ends), and :meth:`Budget.drop` when it closes.

Rules:
- ``used`` is the sum of the holdings; a holder's holding is what it last reported (or was
  charged when granted), never negative.
- Waiters are served in order (FIFO): nobody is granted while someone is queued before it.
- The head of the queue is granted when its chunk fits: ``used + estimate <= limit``.
- No deadlock: when it does not fit, the head is still granted if it holds nothing itself and
  no other such overdraft is outstanding — so ``used`` stays under ``limit`` plus one chunk, and
  one connection at a time makes progress while slow readers hold the rest. (That bound is as
  good as ``estimate``: a chunk larger than the estimate it was granted on holds the
  difference beyond it, as the first grants of a node, charged ``min_estimate``, can.)
- An overdraft ends when its holder's holding is back to 0 (or it is dropped). A driver asks
  only once its own queued bytes have drained, so waiters hold nothing and the head can always
  overdraw once the last overdraft drained; a reader that never drains holds at most one chunk
  (until the ping timeout closes it), and stalls the queue only when such readers hold nearly
  the whole limit.
- Dropping a holder returns what it held and takes it out of the queue (a closed connection).
- Live delivery to up-to-date clients never asks: the budget is for reading the log only.
- ``estimate`` follows the chunks reported: the largest seen, decaying by an eighth towards each
  newer one, never below ``min_estimate``.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Hashable

# The default limit: this fraction of physical memory, within these bounds.
RAM_FRACTION = 1 / 1024
DEFAULT_MIN = 8 << 20
DEFAULT_MAX = 256 << 20
# A chunk's size before any was seen (100 small actions).
MIN_ESTIMATE = 16 << 10


def default_limit(physical: int | None = None) -> int:
    """The budget when ``catch_up_budget_bytes`` is 0: ``RAM_FRACTION`` of physical memory
    (``physical`` bytes; read with :func:`os.sysconf` when None), clamped to
    [``DEFAULT_MIN``, ``DEFAULT_MAX``]."""
    if physical is None:
        try:
            physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            physical = 0
    return max(DEFAULT_MIN, min(DEFAULT_MAX, int(physical * RAM_FRACTION)))


class Budget:
    """The catch-up budget of one node (see the module docstring for the rules)."""

    __slots__ = (
        "_held",
        "_overdraft",
        "_queue",
        "estimate",
        "granted",
        "limit",
        "min_estimate",
        "peak",
        "used",
        "waits",
    )

    def __init__(self, limit: int, *, min_estimate: int = MIN_ESTIMATE) -> None:
        if limit <= 0:
            raise ValueError("a budget's limit must be positive")
        self.limit = limit
        self.min_estimate = min_estimate
        self.estimate = min_estimate
        self.used = 0
        self.peak = 0  # the most ever used
        self.granted = 0  # chunks granted (counter)
        self.waits = 0  # asks that had to queue (counter)
        self._held: dict[Hashable, int] = {}
        self._queue: deque[tuple[Hashable, Callable[[], None]]] = deque()
        self._overdraft: Hashable | None = None

    @property
    def fill(self) -> float:
        """``used / limit`` (above 1.0 during an overdraft): the node's catch-up pressure."""
        return self.used / self.limit

    @property
    def waiting(self) -> int:
        """Connections queued for the budget."""
        return len(self._queue)

    def holding(self, holder: Hashable) -> int:
        """What ``holder`` holds now."""
        return self._held.get(holder, 0)

    def ask(self, holder: Hashable, wake: Callable[[], None]) -> bool:
        """``holder`` wants to read a chunk: True when granted now (charged :attr:`estimate`);
        False when queued — ``wake()`` is called once it is granted (then it is charged)."""
        if not self._queue and self._may_grant(holder):
            self._grant(holder)
            return True
        self.waits += 1
        self._queue.append((holder, wake))
        return False

    def hold(self, holder: Hashable, size: int, *, chunk: int = 0) -> None:
        """``holder`` now holds ``size`` bytes (its queued bytes; 0: nothing). ``chunk``: the
        size of the chunk it just wrote, to follow with :attr:`estimate`."""
        if chunk > 0:
            decayed = self.estimate - (self.estimate - chunk) // 8
            self.estimate = max(self.min_estimate, chunk, decayed)
        size = max(0, size)
        before = self._held.get(holder, 0)
        if size:
            self._held[holder] = size
        elif before:
            del self._held[holder]
        self.used += size - before
        if self.used > self.peak:
            self.peak = self.used
        if not size and self._overdraft == holder:
            self._overdraft = None
        if size < before or self._overdraft is None:
            self._serve()

    def drop(self, holder: Hashable) -> None:
        """``holder`` is gone: return what it held, take it out of the queue."""
        if self._queue:
            self._queue = deque(item for item in self._queue if item[0] != holder)
        self.hold(holder, 0)

    # -- internals ---------------------------------------------------------------------------

    def _may_grant(self, holder: Hashable) -> bool:
        if self.used + self.estimate <= self.limit:
            return True
        return self._overdraft is None and not self._held.get(holder)

    def _grant(self, holder: Hashable) -> None:
        if self.used + self.estimate > self.limit:
            self._overdraft = holder
        self._held[holder] = self._held.get(holder, 0) + self.estimate
        self.used += self.estimate
        if self.used > self.peak:
            self.peak = self.used
        self.granted += 1

    def _serve(self) -> None:
        queue = self._queue
        while queue and self._may_grant(queue[0][0]):
            holder, wake = queue.popleft()
            self._grant(holder)
            wake()
