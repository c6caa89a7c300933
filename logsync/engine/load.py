"""How loaded the node is, and the handshake rate that follows it.

:class:`Controller` is pure (time and samples passed in): an AIMD controller on the admitted
handshake rate. :class:`LagMonitor` is the one piece that touches the event loop: a periodic
``loop.call_later`` tick that measures its own lateness and, on each tick, hands the controller
a :class:`Sample` of the node's signals (loop lag, the store's queue depth, the catch-up budget's
fill). The node starts the monitor with itself and stops it with itself; the
:class:`~logsync.engine.admission.Admission` gate reads :attr:`Controller.rate`.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass

# How often the monitor ticks (the lag sample and the controller step).
TICK_S = 0.05
# Smoothing of the lag samples (exponentially weighted; ~5 ticks, a quarter second).
LAG_WEIGHT = 0.2
# Least time between two decreases: the effect of one must have a chance to show before the
# next (the smoothed lag needs a few ticks to fall).
DECREASE_EVERY_S = 0.5


class State(enum.Enum):
    """What the controller did last (``logsync_admission_state``)."""

    CEILING = "ceiling"  # healthy, admitting at the fixed handshake_rate
    INCREASING = "increasing"  # healthy, adding admission_increase per second
    DECREASING = "decreasing"  # a signal is over its threshold: the rate was cut
    FLOOR = "floor"  # over a threshold and already at admission_floor
    FIXED = "fixed"  # admission_adaptive is off: the ceiling always


@dataclass(frozen=True, slots=True)
class Sample:
    """The node's health signals at one moment."""

    loop_lag_s: float  # smoothed lateness of the monitor's tick
    store_queue: int  # the store's calls waiting or running (LogStore.queue_depth)
    budget_fill: float  # the catch-up budget in use, 0.0 (empty) to 1.0 (full) and beyond


@dataclass(frozen=True, slots=True)
class Limits:
    """The controller's settings (see ``logsync.settings``: ``handshake_rate``,
    ``admission_*``)."""

    ceiling: float  # handshakes/s, the fixed rate
    floor: float  # handshakes/s it never goes below
    increase: float  # handshakes/s added per healthy second
    decrease: float  # the rate is multiplied by this when overloaded (0 < decrease < 1)
    loop_lag_s: float
    store_queue: int
    budget_fill: float
    adaptive: bool = True


class Controller:
    """Additive increase, multiplicative decrease of the admitted handshake rate.

    Rules, applied by :meth:`update` for each sample:

    - a sample is *overloaded* when any signal is over its threshold (loop lag above
      ``loop_lag_s``, store queue above ``store_queue``, budget fill above ``budget_fill``);
    - overloaded: the rate is multiplied by ``decrease``, at most once per
      :data:`DECREASE_EVERY_S`, never below ``floor`` (DECREASING, or FLOOR once there);
    - healthy: the rate grows by ``increase`` per second since the last sample, never above
      ``ceiling`` (INCREASING, or CEILING once there);
    - not ``adaptive``: the rate is the ceiling, always (FIXED).

    It starts at the ceiling: a node that is not overloaded admits as the fixed rate did.
    """

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits = limits
        self.rate = limits.ceiling
        self.state = State.CEILING if limits.adaptive else State.FIXED
        #: the signal that made the last decrease ("loop_lag", "store_queue", "budget_fill")
        self.reason = ""
        #: decreases made, by the signal that made them
        self.decreases: dict[str, int] = {}
        self._last = now
        self._last_decrease = float("-inf")

    def overloaded(self, sample: Sample) -> str:
        """The first signal over its threshold, or "" when none is."""
        limits = self.limits
        if sample.loop_lag_s > limits.loop_lag_s:
            return "loop_lag"
        if sample.store_queue > limits.store_queue:
            return "store_queue"
        if sample.budget_fill > limits.budget_fill:
            return "budget_fill"
        return ""

    def update(self, now: float, sample: Sample) -> float:
        """Step the rate for ``sample`` taken at ``now``; returns the new rate."""
        limits = self.limits
        elapsed, self._last = max(0.0, now - self._last), now
        if not limits.adaptive:
            return self.rate
        reason = self.overloaded(sample)
        if reason:
            if now - self._last_decrease >= DECREASE_EVERY_S and self.rate > limits.floor:
                self.rate = max(limits.floor, self.rate * limits.decrease)
                self._last_decrease = now
                self.reason = reason
                self.decreases[reason] = self.decreases.get(reason, 0) + 1
            self.state = State.FLOOR if self.rate <= limits.floor else State.DECREASING
        else:
            self.rate = min(limits.ceiling, self.rate + limits.increase * elapsed)
            self.state = State.CEILING if self.rate >= limits.ceiling else State.INCREASING
        return self.rate


class LagMonitor:
    """A tick every :data:`TICK_S` on the running loop, measuring how late it ran.

    :attr:`lag` is the smoothed lateness (seconds); each raw sample also goes to ``observe``
    (the ``logsync_loop_lag_seconds`` histogram), and ``on_tick(now, lag)`` is called after it
    (the node steps its controller there). :meth:`start` on the node's loop, :meth:`stop` with it.
    """

    def __init__(
        self,
        observe: Callable[[float], None],
        on_tick: Callable[[float, float], None],
        interval: float = TICK_S,
    ) -> None:
        self.observe = observe
        self.on_tick = on_tick
        self.interval = interval
        self.lag = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        """Begin ticking on the running loop."""
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self.interval
        self._handle = loop.call_at(self._due, self._tick, loop)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        late = max(0.0, now - self._due)
        self.lag += LAG_WEIGHT * (late - self.lag)
        self._due = now + self.interval
        self._handle = loop.call_at(self._due, self._tick, loop)
        self.observe(late)
        self.on_tick(now, self.lag)
