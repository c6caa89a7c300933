"""The connections' deadlines share one loop timer (``logsync.server.ws._Deadlines``): each
fires in time order, not before its time, and a cancelled one never reaches its connection."""

from __future__ import annotations

import asyncio

from logsync.server.ws import _Deadlines, _Timer


class Conn:
    """What a :class:`_Timer` asks of a connection: its session's next deadline, on_timer."""

    closed = False
    authenticated = True

    def __init__(self, deadline_ms: int, fired: list[str]) -> None:
        self.deadline_ms, self.fired = deadline_ms, fired
        self.session = self

    def next_deadline(self) -> int | None:
        return None if self.fired else self.deadline_ms

    def on_timer(self) -> None:
        self.fired.append("cancelled")


class Later:
    """A timer that records when it fires."""

    def __init__(self, name: str, order: list[str], done: asyncio.Future[None]) -> None:
        self.name, self.order, self.done = name, order, done

    def fire(self) -> None:
        self.order.append(self.name)
        if self.name == "last":
            self.done.set_result(None)


async def test_deadlines_fire_in_time_order_and_skip_cancelled_timers() -> None:
    loop = asyncio.get_running_loop()
    deadlines = _Deadlines(loop)
    order: list[str] = []
    done: asyncio.Future[None] = loop.create_future()
    began = loop.time()
    deadlines.add(Later("last", order, done), 0.06)  # type: ignore[arg-type]
    deadlines.add(Later("second", order, done), 0.04)  # type: ignore[arg-type]
    fired: list[str] = []
    cancelled = _Timer(Conn(0, fired), deadlines)  # type: ignore[arg-type]  # due at once
    cancelled.cancel()
    deadlines.add(Later("first", order, done), 0.02)  # type: ignore[arg-type]
    await asyncio.wait_for(done, 5)
    assert order == ["first", "second", "last"]
    assert fired == []
    assert loop.time() - began >= 0.06
    assert not deadlines._heap and deadlines._handle is None  # nothing left, no timer
