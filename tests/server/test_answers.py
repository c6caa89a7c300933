"""How a node answers client actions over a real socket and a real SQLite file: a processed action's
status is written before its answer and its `synced`, a resend is answered again without a second
`process` (the dedupe read that needs no store round trip), and the stage timings on /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from logsync.log import PROCESSED, LogStore, open_store
from tests.support.server import ServerProcess
from tests.support.wsclient import RawClient

APP = "tests.server.durable_app:app"


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[ServerProcess, LogStore]]:
    """A server on a SQLite file, and the same file opened in this process (WAL: both read it)."""
    url = f"sqlite:///{tmp_path}/log.db"
    server = ServerProcess(APP, store=url)
    store = open_store(url)
    try:
        yield server, store
    finally:
        server.stop()
        await store.close()


async def runs_of_jobs(store: LogStore) -> list[dict[str, Any]]:
    """The `job/done` actions `process` announced (one per run)."""
    entries = (await store.read(["user:keeper"], 0, 1000)).entries
    return [e.action for e in entries if e.action["type"] == "job/done"]


async def test_synced_comes_after_every_status_is_written(
    running: tuple[ServerProcess, LogStore],
) -> None:
    server, store = running
    client = await RawClient.open(server.url)
    await client.connect("order:o:t", subprotocol=0)
    wire_ids = await client.sync(1, *({"type": "job"} for _ in range(20)))
    ids = [client.full_id(w) for w in wire_ids]
    answered: list[str] = []
    while True:
        msg = await client.recv()
        if msg[0] == "synced":
            break
        if msg[0] == "sync":
            answered += [a["id"] for a in msg[2::2] if a["type"] == "logux/processed"]
    # answers in the client's order, all of them before `synced`
    assert answered == ids
    # and by then each status is in the log: a crash now would not process any of them again
    assert [await store.seen(action_id) for action_id in ids] == [PROCESSED] * 20
    assert [run["id"] for run in await runs_of_jobs(store)] == ids
    await client.close()


async def test_a_resend_is_answered_again_and_not_processed_again(
    running: tuple[ServerProcess, LogStore],
) -> None:
    server, store = running
    client = await RawClient.open(server.url)
    await client.connect("again:a:t", subprotocol=0)
    [wire_id] = await client.sync(1, {"type": "job"})
    full_id = client.full_id(wire_id)
    assert (await client.answer(full_id))["type"] == "logux/processed"
    synced, _ = await client.recv_until("synced")
    assert synced[1] == 1
    # the same id again, in a later `sync` and in the same one twice
    meta = {"id": wire_id, "time": 0}
    await client.send(["sync", 2, {"type": "job"}, meta])
    assert (await client.answer(full_id))["type"] == "logux/processed"
    synced, _ = await client.recv_until("synced")
    assert synced[1] == 2
    await client.send(["sync", 3, {"type": "job"}, meta, {"type": "job"}, meta])
    synced, _ = await client.recv_until("synced")
    assert synced[1] == 3
    assert await runs_of_jobs(store) == [{"type": "job/done", "id": full_id, "runs": 1}]
    await client.close()


def histogram_count(text: str, name: str, labels: str) -> float:
    """The ``_count`` of the histogram series ``name{labels}`` (labels in any order)."""
    wanted = dict(pair.split("=", 1) for pair in labels.split(",")) if labels else {}
    wanted = {key: value.strip('"') for key, value in wanted.items()}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_count" and sample.labels == wanted:
                return float(sample.value)
    raise AssertionError(f"no {name}_count{{{labels}}} in /metrics")


async def test_metrics_time_each_stage_of_an_action(
    running: tuple[ServerProcess, LogStore],
) -> None:
    server, _ = running
    client = await RawClient.open(server.url)
    await client.connect("timed:t:t", subprotocol=0)
    wire_ids = await client.sync(1, {"type": "job"}, {"type": "job"}, {"type": "no/such"})
    for wire_id in wire_ids:
        await client.answer(client.full_id(wire_id))
    await client.recv_until("synced")
    await client.close()
    async with aiohttp.ClientSession() as http, http.get(server.http_url + "metrics") as response:
        text = await response.text()
    stages = "logsync_action_stage_seconds"
    for stage in ("queued", "seen", "append", "process", "status", "answered"):
        assert histogram_count(text, stages, f'type="job",stage="{stage}"') == 2, stage
    # a type no rule knows is counted under one label, whatever the client sent
    assert histogram_count(text, stages, 'type="unknown",stage="answered"') == 1
    assert 'type="no/such"' not in text
    inside = "logsync_store_inside_seconds"
    assert histogram_count(text, inside, 'operation="set_status",part="queued"') >= 2
    # sampled every 50 ms: this test may be over sooner, so only its presence is certain
    assert "# TYPE logsync_loop_lag_seconds histogram" in text
    assert histogram_count(text, "logsync_loop_lag_seconds", "") >= 0
