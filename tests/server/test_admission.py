"""Adaptive admission over real sockets, with small limits: a node in the test's loop whose
catch-up budget reads full, or whose event loop the test blocks, admits fewer handshakes, tells
the rest to come back later (the more waiting, the later), and admits again once it recovers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from logsync.broker import LocalBroker
from logsync.engine import ServerNode
from logsync.engine.load import State
from logsync.log import open_store
from logsync.settings import Settings
from tests.interop.app import app
from tests.support.deadline import Deadline
from tests.support.inprocess import serving
from tests.support.wsclient import RawClient


class Node:
    """A node on a SQLite file serving WebSocket on 127.0.0.1, and a budget fill the test sets."""

    def __init__(self, node: ServerNode, url: str) -> None:
        self.node, self.url = node, url
        self.fill = 0.0
        node.budget_fill = lambda: self.fill
        self._ticks: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        step = node.monitor.on_tick

        def on_tick(now: float, lag: float) -> None:
            step(now, lag)
            for condition, future in list(self._ticks):
                if not future.done() and condition():
                    future.set_result(None)

        node.monitor.on_tick = on_tick

    async def until(self, condition: Callable[[], bool], timeout: float = 10) -> None:
        """Wait for the controller tick after which ``condition`` holds."""
        future = asyncio.get_running_loop().create_future()
        entry = (condition, future)
        self._ticks.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            self._ticks.remove(entry)


@pytest.fixture
async def served(tmp_path: Any) -> AsyncIterator[Node]:
    settings = Settings(
        store=f"sqlite:///{tmp_path / 'log.db'}",
        host="127.0.0.1",
        port=0,
        handshake_rate=20,
        handshake_burst=1,
        handshake_queue=100,
        handshake_wait_max_ms=400_000,
        admission_floor=0.01,
        admission_increase=1000,
        handshake_retry_max_ms=2_000_000,
    )
    node = ServerNode(app, open_store(settings.store), LocalBroker(), settings)
    async with serving(node, settings) as url:
        yield Node(node, url)


async def knock(url: str, node_id: str) -> RawClient:
    client = await RawClient.open(url)
    await client.send(["connect", 5, node_id, 0, {"token": "secret", "subprotocol": 3}])
    return client


async def refused_upgrade(url: str) -> float:
    """Open a socket while the queue is full: refused before the upgrade, 503; its
    ``Retry-After``."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url)
    assert refused.value.status == 503
    assert refused.value.headers is not None
    return float(refused.value.headers["Retry-After"])


async def refused_connect(client: RawClient, node_id: str) -> float:
    """Send ``connect`` on an open socket while the queue is full: closed with 1013 "try again
    later (try again in N s)"; the N."""
    await client.send(["connect", 5, node_id, 0, {"token": "secret", "subprotocol": 3}])
    msg = await asyncio.wait_for(client.ws.receive(), 10)
    assert msg.type == aiohttp.WSMsgType.CLOSE, msg
    assert msg.data == 1013
    reason = msg.extra or ""
    assert reason.startswith("try again later (try again in "), reason
    return float(reason.split("try again in ")[1].split(" ")[0])


async def test_a_full_budget_slows_admission_and_hints_grow_with_the_backlog(
    served: Node,
) -> None:
    node, admission = served.node, served.node.admission
    # the queue's drain estimated at the current rate throughout (the controller's fast
    # recovery, 1000/s per second here, would let all 100 wait: see the engine's tests)
    admission.increase = 0.0
    first = await RawClient.open(served.url)
    await first.connect("a0:c:t")  # healthy: the burst token
    served.fill = 1.0  # over admission_budget_fill (0.9): each tick is overloaded
    await served.until(lambda: node.controller.state is State.FLOOR)
    assert admission.rate == 0.01  # one handshake per 100 s: none comes during the test
    assert node.controller.decreases["budget_fill"] >= 1
    # the burst token saved up while the rate came down
    taker = await RawClient.open(served.url)
    await taker.connect("a1:c:t")
    # at 0.01/s the queue holds handshake_wait_max_ms (400 s) worth: 4
    assert admission.bound == 4
    late = [await RawClient.open(served.url) for _ in range(3)]  # open while there is room
    waiting = [await knock(served.url, f"w{i}:c:t") for i in range(4)]
    await served.until(lambda: admission.waiting == 4)
    assert admission.full()
    hints = [await refused_connect(client, f"r{i}:c:t") for i, client in enumerate(late)]
    hints.append(await refused_upgrade(served.url))
    # each refused client is one turn (100 s) behind the one before: the 4 waiting and itself,
    # then one more turn each: 500 s, 600 s, 700 s, 800 s, ± 20 %
    for k, seconds in enumerate(hints):
        assert 0.8 * (500 + 100 * k) - 1 <= seconds <= 1.2 * (500 + 100 * k) + 1, hints
    assert hints[-1] > hints[0]
    assert admission.refused == 4
    # recovered: the rate climbs back to the ceiling and those waiting get in
    served.fill = 0.0
    await served.until(lambda: node.controller.state is State.CEILING)
    assert admission.rate == 20.0
    for client in waiting:
        connected, _ = await client.recv_until("connected", timeout=10)
        assert connected[0] == "connected"
    assert (admission.waiting, admission.in_progress) == (0, 0)
    # and a hint now is short: nobody waits
    assert admission.retry_after() == 1.0
    for client in [first, taker, *waiting, *late]:
        await client.close()


async def test_a_blocked_event_loop_cuts_the_rate_and_it_comes_back(served: Node) -> None:
    node = served.node
    assert node.controller.state.value == "ceiling"

    def block() -> None:
        time.sleep(0.3)  # the load itself: a callback that holds the loop 0.3 s

    deadline = Deadline(10)
    while node.controller.state is not State.DECREASING:
        asyncio.get_running_loop().call_soon(block)
        await served.until(lambda: True, timeout=deadline.left())
    assert node.controller.reason == "loop_lag"
    assert node.monitor.lag > 0.05
    cut = node.admission.rate
    assert cut < 20
    # the loop is free again: the smoothed lag falls under 50 ms and the rate climbs back
    await served.until(lambda: node.controller.state is State.CEILING)
    assert node.monitor.lag <= 0.05
    client = await RawClient.open(served.url)
    connected = await client.connect("after:c:t")
    assert connected[0] == "connected"
    await client.close()


async def test_metrics_show_the_controller(served: Node) -> None:
    served.fill = 1.0
    await served.until(lambda: served.node.controller.state is State.FLOOR)
    http_url = served.url.replace("ws://", "http://")
    async with aiohttp.ClientSession() as http, http.get(http_url + "metrics") as response:
        text = await response.text()
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line[:1] != "#")
    assert float(values["logsync_admission_rate"]) == 0.01
    assert float(values['logsync_admission_state{state="floor"}']) == 1.0
    assert float(values['logsync_admission_state{state="ceiling"}']) == 0.0
    assert float(values['logsync_admission_decreases_total{signal="budget_fill"}']) >= 1
    assert float(values["logsync_catch_up_budget_fill"]) == 1.0
    assert float(values['logsync_limit{setting="admission_budget_fill"}']) == 0.9
    assert "logsync_store_queue_depth" in values
    assert "logsync_handshakes_in_progress" in values
