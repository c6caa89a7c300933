"""A ``process`` type's append that fails after its ``process`` ran (the path where ``process``
runs while the append is on its way to the disk, ``Rules._process_appending``): the client is not
told the action was undone — ``process`` did run — and it is not acknowledged either; its
connection is closed with 1011 so that it resends the action, and the resend, on a new
connection once the store works again, is processed and answered."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

import pytest

from logsync import App, AuthContext, Context
from logsync.broker import LocalBroker
from logsync.engine import ServerNode
from logsync.log import Appended, NewEntry, StoreUnavailable
from logsync.log.memory import MemoryStore
from logsync.settings import Settings
from tests.support.deadline import Deadline
from tests.support.inprocess import serving
from tests.support.wsclient import RawClient

DEADLINE = 20.0

app = App()
runs: list[int] = []


@app.auth
def auth(ctx: AuthContext) -> bool:
    return ctx.token == "secret"


def record(ctx: Context, action: dict[str, Any], meta: dict[str, Any]) -> None:
    runs.append(action["n"])


app.type("job", access=lambda ctx, action, meta: True, process=record)


class FailingAppends(MemoryStore):
    """A memory log whose started appends fail while :attr:`failure` is set: the call returns
    at once and the failure comes with the result, as a failed commit of the SQLite thread's
    does."""

    failure: Exception | None = None

    def start_append(self, entries: Sequence[NewEntry]) -> Awaitable[list[Appended]]:
        if self.failure is None:
            return super().start_append(entries)
        failed: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        failed.set_exception(self.failure)
        return failed


@pytest.mark.parametrize(
    "failure",
    [StoreUnavailable("disk I/O error"), RuntimeError("a bug in the store")],
    ids=["unavailable", "error"],
)
async def test_an_append_failing_after_process_closes_for_a_resend(failure: Exception) -> None:
    runs.clear()
    store = FailingAppends()
    settings = Settings(store="memory://", host="127.0.0.1", port=0, ping_ms=600_000)
    node = ServerNode(app, store, LocalBroker(), settings)
    deadline = Deadline(DEADLINE)
    async with serving(node, settings) as url:
        first = await RawClient.open(url)
        await first.connect("worker:w:t")
        store.failure = failure
        [wire_id] = await first.sync(1, {"type": "job", "n": 1})
        action_id = first.full_id(wire_id)
        got: list[list[Any]] = []
        while True:  # no answer and no `synced` for it: the socket closes
            try:
                got.append(await first.recv(deadline.left()))
            except ConnectionError:
                break
        assert first.ws.close_code == 1011
        assert not [m for m in got if m[0] in ("sync", "synced")], got
        assert runs == [1]  # process ran once
        assert await store.get(action_id) is None  # nothing was stored
        await first.close()

        store.failure = None
        second = await RawClient.open(url)
        await second.connect("worker:w:t")
        ms, seq = action_id.split(" ")[0], wire_id[1]
        resent = [int(ms) - second.base_time, seq]  # the same id, against the new base time
        await second.sync(1, {"type": "job", "n": 1}, meta={"id": resent})
        answer = await second.answer(action_id, deadline.left())
        assert answer["type"] == "logux/processed", answer
        synced, _ = await second.recv_until("synced", deadline.left())
        assert synced == ["synced", 1]
        assert runs == [1, 1]  # not stored the first time: processed again
        stored = await store.get(action_id)
        assert stored is not None and stored.status == "processed"
        await second.close()
