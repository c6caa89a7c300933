"""Admission as pure code: the AIMD controller on scripted samples, and the gate (its queue, its
places in progress, its retry hints) on a clock the test moves."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from logsync.engine.admission import (
    RETRY_JITTER,
    Admission,
    Refused,
    admitted_within,
    drain_time,
)
from logsync.engine.load import DECREASE_EVERY_S, Controller, Limits, Sample, State
from logsync.metrics import ADMISSION_SIGNALS, ADMISSION_STATES

LIMITS = Limits(
    ceiling=100.0,
    floor=10.0,
    increase=20.0,
    decrease=0.5,
    loop_lag_s=0.05,
    store_queue=10,
    budget_fill=0.9,
)
HEALTHY = Sample(loop_lag_s=0.01, store_queue=2, budget_fill=0.5)
LAGGING = Sample(loop_lag_s=0.2, store_queue=2, budget_fill=0.5)
STORE = Sample(loop_lag_s=0.01, store_queue=11, budget_fill=0.5)
BUDGET = Sample(loop_lag_s=0.01, store_queue=2, budget_fill=0.95)


def test_additive_increase_multiplicative_decrease_between_floor_and_ceiling() -> None:
    controller = Controller(LIMITS, now=0.0)
    assert (controller.rate, controller.state) == (100.0, State.CEILING)
    script = [
        # (time, sample) → (rate, state) after it
        (0.05, HEALTHY, 100.0, State.CEILING),  # held at the ceiling
        (0.10, LAGGING, 50.0, State.DECREASING),  # halved
        (0.20, LAGGING, 50.0, State.DECREASING),  # not again within DECREASE_EVERY_S
        (0.60, STORE, 25.0, State.DECREASING),  # each signal counts
        (1.10, BUDGET, 12.5, State.DECREASING),
        (1.60, BUDGET, 10.0, State.FLOOR),  # 6.25 would be below the floor
        (2.10, LAGGING, 10.0, State.FLOOR),  # held there
        (3.10, HEALTHY, 30.0, State.INCREASING),  # +20/s for the 1 s since the last sample
        (4.10, HEALTHY, 50.0, State.INCREASING),
        (4.35, HEALTHY, 55.0, State.INCREASING),
        (7.10, HEALTHY, 100.0, State.CEILING),  # capped
    ]
    for now, sample, rate, state in script:
        assert controller.update(now, sample) == pytest.approx(rate), now
        assert controller.state is state, now
    assert controller.decreases == {"loop_lag": 1, "store_queue": 1, "budget_fill": 2}
    assert DECREASE_EVERY_S == 0.5  # the script's spacing assumes it


def test_the_first_signal_over_its_threshold_is_the_reason() -> None:
    controller = Controller(LIMITS, now=0.0)
    assert controller.overloaded(HEALTHY) == ""
    assert controller.overloaded(Sample(0.05, 10, 0.9)) == ""  # at a threshold is not over it
    assert controller.overloaded(Sample(0.2, 11, 2.0)) == "loop_lag"
    assert controller.overloaded(Sample(0.0, 11, 2.0)) == "store_queue"
    controller.update(1.0, BUDGET)
    assert controller.reason == "budget_fill"


def test_not_adaptive_is_the_fixed_rate() -> None:
    fixed = dataclasses.replace(LIMITS, adaptive=False)
    controller = Controller(fixed, now=0.0)
    for now in (1.0, 2.0, 3.0):
        assert controller.update(now, LAGGING) == 100.0
    assert controller.state is State.FIXED
    assert controller.decreases == {}


def test_metrics_name_every_state_and_signal() -> None:
    assert set(ADMISSION_STATES) == {state.value for state in State}
    controller = Controller(LIMITS, now=0.0)
    assert {controller.overloaded(s) for s in (LAGGING, STORE, BUDGET)} == set(ADMISSION_SIGNALS)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    """Let the tasks that were just woken run (each resumes in one loop turn)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_waiters_enter_in_order_at_the_current_rate_and_places_come_back() -> None:
    clock = Clock()
    # a slow rate: the gate's own timer never fires during the test; the test moves the clock
    gate = Admission(0.01, 1, 10, concurrency=2, clock=clock)
    await gate.admit()  # the burst token
    order: list[int] = []

    async def one(i: int) -> None:
        await gate.admit()
        order.append(i)

    tasks = [asyncio.create_task(one(i)) for i in range(4)]
    await settle()
    assert (gate.waiting, gate.in_progress, gate.deferred) == (4, 1, 4)
    clock.now += 100  # one token
    gate.set_rate(1.0)  # and from now on one a second
    await settle()
    assert order == [0]
    assert gate.in_progress == 2
    clock.now += 5  # a token (the burst holds one), but both places are in progress
    gate.set_rate(2.0)
    await settle()
    assert order == [0]
    gate.done()  # a place comes back: the next one takes it with the token
    await settle()
    assert order == [0, 1]
    gate.done()  # a place, no token
    await settle()
    assert order == [0, 1]
    for _ in range(2):  # a token each time, and a place
        clock.now += 1
        gate.set_rate(gate.rate + 1)
        await settle()
        gate.done()
        await settle()
    assert order == [0, 1, 2, 3]
    await asyncio.gather(*tasks)
    assert (gate.waiting, gate.in_progress, gate.admitted) == (0, 1, 5)


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    clock = Clock()
    gate = Admission(0.01, 1, 10, clock=clock)
    await gate.admit()
    waiting = asyncio.create_task(gate.admit())
    behind = asyncio.create_task(gate.admit())
    await settle()
    waiting.cancel()
    await settle()
    assert gate.waiting == 1
    clock.now += 100
    gate.set_rate(0.02)
    await asyncio.wait_for(behind, 1)
    assert gate.in_progress == 2


@pytest.mark.parametrize("tick", [0.0, 0.05])
async def test_with_a_tick_waiters_enter_together_once_per_tick(tick: float) -> None:
    """At 1,000/s tokens come every ms; with a 50 ms tick the gate's timer fires once and lets
    all ten in, in order (the loop wakes once for them); without one it wakes per token."""
    gate = Admission(1000.0, 1, 100, tick=tick)  # the real clock and timer
    await gate.admit()  # the burst token
    fired = 0
    pump = gate._tick

    def counted() -> None:
        nonlocal fired
        fired += 1
        pump()

    gate._tick = counted  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    began, entered = loop.time(), []

    async def one(i: int) -> None:
        await gate.admit()
        entered.append((i, loop.time()))

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(10))), 5)
    assert [i for i, _ in entered] == list(range(10))
    if tick:
        assert fired == 1
        assert entered[0][1] - began >= tick
    else:
        assert fired >= 2


async def test_the_queue_holds_no_more_than_wait_max_at_the_current_rate() -> None:
    clock = Clock()
    gate = Admission(10.0, 1, 100, wait_max=2.0, clock=clock)
    assert gate.bound == 20
    gate.set_rate(2.0)
    assert gate.bound == 4
    gate.set_rate(0.1)
    assert gate.bound == 1  # always room for one


def test_the_drain_estimate_follows_the_controllers_recovery() -> None:
    # from 20/s climbing 100/s per second to 500/s: the ceiling after 4.8 s, then 500/s
    assert admitted_within(2.0, 20.0, 100.0, 500.0) == pytest.approx(20 * 2 + 100 * 4 / 2)
    at_top = 20 * 4.8 + 100 * 4.8**2 / 2
    assert admitted_within(10.0, 20.0, 100.0, 500.0) == pytest.approx(at_top + 500 * 5.2)
    assert admitted_within(10.0, 20.0, 0.0, 500.0) == 200.0  # no increase: constant
    assert admitted_within(10.0, 500.0, 100.0, 500.0) == 5000.0  # at the ceiling already
    for turns in (1.0, 140.0, at_top, 3000.0):
        seconds = drain_time(turns, 20.0, 100.0, 500.0)
        assert admitted_within(seconds, 20.0, 100.0, 500.0) == pytest.approx(turns)
    assert drain_time(100.0, 20.0, 0.0, 500.0) == 5.0


async def test_after_a_cut_handshakes_wait_while_the_recovering_rate_drains_them() -> None:
    """A cut from 500/s to 20/s: at a constant 20/s only 200 could wait 10 s, but the rate
    climbs back 100/s per second, so 3,848 are expected through in 10 s and wait."""
    clock = Clock()
    gate = Admission(500.0, 1, 5000, wait_max=10.0, increase=100.0, ceiling=500.0, clock=clock)
    assert gate.bound == 5000
    gate.set_rate(20.0)
    assert gate.bound == int(20 * 4.8 + 100 * 4.8**2 / 2 + 500 * 5.2)  # 3848
    constant = Admission(20.0, 1, 5000, wait_max=10.0, clock=clock)
    assert constant.bound == 200
    # a refused client's hint: the bound's backlog drains in wait_max at the recovering rate
    await gate.admit()
    tasks = [asyncio.create_task(gate.admit()) for _ in range(gate.bound)]
    await settle()
    assert gate.full()
    with pytest.raises(Refused) as refused:
        await gate.admit()
    due = drain_time(gate.bound + 1, 20.0, 100.0, 500.0)
    assert 10.0 <= due <= 10.01
    hint = refused.value.retry_after
    assert due * (1 - RETRY_JITTER) <= hint <= due * (1 + RETRY_JITTER)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_retry_hints_follow_the_backlog_and_the_current_rate() -> None:
    clock = Clock()
    gate = Admission(10.0, 1, 5, retry_min=1.0, retry_max=60.0, clock=clock)
    await gate.admit()
    tasks = [asyncio.create_task(gate.admit()) for _ in range(5)]
    await settle()
    assert gate.full()
    hints = []
    for _ in range(20):
        with pytest.raises(Refused) as refused:
            await gate.admit()
        hints.append(refused.value.retry_after)
    # the k-th refused client (k from 0) is told to come when the 5 waiting and the k refused
    # before it have had their turns at 10/s: (5 + 1 + k) / 10 s, spread ±RETRY_JITTER
    for k, hint in enumerate(hints):
        due = (5 + 1 + k) / 10
        low, high = due * (1 - RETRY_JITTER), due * (1 + RETRY_JITTER)
        assert max(1.0, low) <= hint <= max(1.0, high) + 1e-9, (k, hint)
    assert hints[-1] > 2.0  # grows with the backlog: 2.5 s ± 20 %
    assert gate.refused == 20
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_slower_rate_gives_longer_hints_within_the_clamp() -> None:
    clock = Clock()
    hints = []
    for rate in (10.0, 1.0, 0.01):
        gate = Admission(rate, 1, 5, retry_min=1.0, retry_max=30.0, clock=clock)
        await gate.admit()
        tasks = [asyncio.create_task(gate.admit()) for _ in range(gate.bound)]
        await settle()
        with pytest.raises(Refused) as refused:
            await gate.admit()
        hints.append(refused.value.retry_after)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # 6 turns at 10/s: 0.6 s, raised to the least hint; at 1/s 6 s ± 20 %; at 0.01/s clamped
    assert hints[0] == 1.0
    assert 6 * (1 - RETRY_JITTER) <= hints[1] <= 6 * (1 + RETRY_JITTER)
    assert hints[2] == 30.0
