"""Gapless resume: a resubscription with ``since`` gets exactly the channel history it missed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.server.test_flow import metrics
from tests.support.deadline import Deadline
from tests.support.server import ServerProcess
from tests.support.wsclient import RawClient

# Every loop of reads here ends: after this long in all, whatever keeps arriving.
DEADLINE = 60.0


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    process = ServerProcess("tests.interop.app:app", "--ping", "600000")
    try:
        yield process
    finally:
        process.stop()


async def subscribe(
    c: RawClient, channel: str, since: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Subscribe; returns the meta of the ``logux/processed`` (what @logux/client keeps as since)."""
    action: dict[str, Any] = {"type": "logux/subscribe", "channel": channel}
    if since is not None:
        action["since"] = since
    [wire_id] = await c.sync(1, action)
    answer, meta = await c.answer_with_meta(c.full_id(wire_id))
    assert answer["type"] == "logux/processed", answer
    return meta


async def send_chat(sender: RawClient, chat: str, count: int, batch: int = 500) -> None:
    for start in range(0, count, batch):
        texts = [
            {"type": "chat/message", "chat": chat, "text": f"m{i}"}
            for i in range(start, min(count, start + batch))
        ]
        await sender.sync(start + 1, *texts)
        synced, _ = await sender.recv_until("synced")
        assert synced == ["synced", start + 1]


async def read_chat(c: RawClient, expected: int, answer: str | None = None) -> list[str]:
    """Read (and acknowledge) syncs until ``expected`` chat messages came, and the answer to
    ``answer`` (a subscription, which comes after its history); returns the texts."""
    texts: list[str] = []
    answered = answer is None
    deadline = Deadline(DEADLINE, per_read=10.0)
    while len(texts) < expected or not answered:
        msg = await c.recv(deadline.left())
        if msg[0] != "sync":
            continue
        texts += [a["text"] for a in msg[2::2] if a["type"] == "chat/message"]
        answered = answered or any(a.get("id") == answer for a in msg[2::2])
        await c.send(["synced", msg[1]])
    return texts


async def nothing_more(c: RawClient) -> list[list[Any]]:
    """Round-trip a ping: every sync that arrives before the pong is returned.

    The server answers a ping after what it sent before it, so whatever was queued for this
    client by then is in the list (and after it, only new actions can come).
    """
    await c.send(["ping", 0])
    _, before = await c.recv_until("pong")
    return [m for m in before if m[0] == "sync"]


def of_type(syncs: list[list[Any]], *types: str) -> list[dict[str, Any]]:
    """The actions of ``syncs`` whose type is one of ``types``."""
    return [a for m in syncs for a in m[2::2] if a["type"] in types]


async def test_client_offline_while_10000_actions_went_to_its_channel(
    server: ServerProcess,
) -> None:
    reader = await RawClient.open(server.url)
    await reader.connect("reader:r:t")
    processed = await subscribe(reader, "chat/busy")
    since = {"id": processed["id"], "time": processed["time"]}
    watermark = reader.watermark
    await reader.close()

    sender = await RawClient.open(server.url)
    await sender.connect("sender:s:t")
    await send_chat(sender, "busy", 10_000)

    reader = await RawClient.open(server.url)
    await reader.connect("reader:r:t", synced=watermark)
    [wire_id] = await reader.sync(
        1, {"type": "logux/subscribe", "channel": "chat/busy", "since": since}
    )
    texts = await read_chat(reader, 10_000, reader.full_id(wire_id))
    assert texts == [f"m{i}" for i in range(10_000)]
    assert of_type(await nothing_more(reader), "chat/message") == []
    await reader.close()
    await sender.close()


async def test_resubscribe_after_the_cursor_moved_on_still_gets_the_channel(
    server: ServerProcess,
) -> None:
    reader = await RawClient.open(server.url)
    await reader.connect("late:r:t")
    processed = await subscribe(reader, "chat/late")
    since = {"id": processed["id"], "time": processed["time"]}
    watermark = reader.watermark
    await reader.close()

    sender = await RawClient.open(server.url)
    await sender.connect("sender2:s:t")
    await send_chat(sender, "late", 150)
    notes = [{"type": "notify", "user": "late", "text": f"n{i}"} for i in range(150)]
    await sender.sync(9, *notes)
    await sender.recv_until("synced")

    reader = await RawClient.open(server.url)
    await reader.connect("late:r:t", synced=watermark)
    # the user-addressed backlog is replayed first: the cursor passes the channel's messages
    got_notes: list[str] = []
    deadline = Deadline(DEADLINE, per_read=10.0)
    while len(got_notes) < 150:
        msg = await reader.recv(deadline.left())
        if msg[0] == "sync":
            got_notes += [a["text"] for a in msg[2::2] if a["type"] == "notify"]
            await reader.send(["synced", msg[1]])
    assert got_notes == [f"n{i}" for i in range(150)]
    [wire_id] = await reader.sync(
        1, {"type": "logux/subscribe", "channel": "chat/late", "since": since}
    )
    texts = await read_chat(reader, 150, reader.full_id(wire_id))
    assert texts == [f"m{i}" for i in range(150)]
    assert of_type(await nothing_more(reader), "chat/message", "notify") == []
    await reader.close()
    await sender.close()


async def test_unknown_since_id_falls_back_to_time(server: ServerProcess) -> None:
    sender = await RawClient.open(server.url)
    await sender.connect("sender3:s:t")
    await send_chat(sender, "bytime", 5)
    reader = await RawClient.open(server.url)
    await reader.connect("bytime:r:t")
    await sender.close()
    # a time before everything: the whole history; an id the server never made
    [wire_id] = await reader.sync(
        1,
        {
            "type": "logux/subscribe",
            "channel": "chat/bytime",
            "since": {"id": "1 x:y:z 0", "time": 0},
        },
    )
    texts = await read_chat(reader, 5, reader.full_id(wire_id))
    assert texts == [f"m{i}" for i in range(5)]
    assert of_type(await nothing_more(reader), "chat/message") == []
    await reader.close()


async def test_first_subscription_gets_no_history(server: ServerProcess) -> None:
    sender = await RawClient.open(server.url)
    await sender.connect("sender4:s:t")
    await send_chat(sender, "fresh", 3)
    reader = await RawClient.open(server.url)
    await reader.connect("fresh:r:t")
    await subscribe(reader, "chat/fresh")
    assert of_type(await nothing_more(reader), "chat/message") == []
    await send_chat(sender, "fresh", 1)
    assert await read_chat(reader, 1) == ["m0"]
    assert of_type(await nothing_more(reader), "chat/message") == []
    await reader.close()
    await sender.close()


async def test_history_trimmed_past_since_reloads_instead_of_a_gap(server: ServerProcess) -> None:
    reader = await RawClient.open(server.url)
    await reader.connect("trim:r:t")
    processed = await subscribe(reader, "user/trim")
    since = {"id": processed["id"], "time": processed["time"]}
    watermark = reader.watermark
    await reader.close()

    writer = await RawClient.open(server.url)
    await writer.connect("trim:w:t")
    for name in ("a", "b", "c", "d", "e"):
        [wire_id] = await writer.sync(1, {"type": "CHANGE_NAME", "user": "trim", "name": name})
        await writer.answer(writer.full_id(wire_id))
    await writer.close()
    # an operator trims channel history while the server runs (a second process on the file)
    trim = subprocess.run(
        [
            sys.executable,
            "-m",
            "logsync.cli",
            "log",
            "trim",
            "--store",
            server.store,
            "--index-prefix",
            "channel:",
            "--keep-last",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert trim.stdout.startswith("removed ")

    reader = await RawClient.open(server.url)
    await reader.connect("trim:r:t", synced=watermark)
    [wire_id] = await reader.sync(
        1, {"type": "logux/subscribe", "channel": "user/trim", "since": since}
    )
    seen: list[dict[str, Any]] = []
    deadline = Deadline(DEADLINE, per_read=10.0)
    while not any(a.get("id") == reader.full_id(wire_id) for a in seen):
        msg = await reader.recv(deadline.left())
        if msg[0] == "sync":
            seen += msg[2::2]
    # no partial history: the channel's load gives the current state instead
    assert [a for a in seen if a["type"] == "CHANGE_NAME"] == []
    assert {"type": "user/name", "user": "trim", "name": "e"} in seen
    # and nothing after the answer: neither the history nor a second load
    assert of_type(await nothing_more(reader), "CHANGE_NAME", "user/name") == []
    await reader.close()


async def notifications(c: RawClient, count: int) -> list[tuple[int, str]]:
    """The next ``count`` notify actions with the ``added`` of their ``sync``, acknowledged."""
    received: list[tuple[int, str]] = []
    deadline = Deadline(DEADLINE, per_read=10.0)
    while len(received) < count:
        msg = await c.recv(deadline.left())
        if msg[0] == "sync":
            received += [(msg[1], a["text"]) for a in msg[2::2] if a["type"] == "notify"]
            await c.send(["synced", msg[1]])
    return received


async def test_an_up_to_date_client_goes_live_without_reading_the_log(
    server: ServerProcess,
) -> None:
    async def log_reads() -> float:
        return (await metrics(server)).get('logsync_store_seconds_count{operation="read"}', 0.0)

    sender = await RawClient.open(server.url)
    await sender.connect("s:c:t")  # the log is empty: up to date
    first = await RawClient.open(server.url)
    await first.connect("upd:c1:t")
    assert await log_reads() == 0
    [wire_id] = await sender.sync(1, {"type": "notify", "user": "upd", "text": "one"})
    await sender.answer(sender.full_id(wire_id))
    [(head, text)] = await notifications(first, 1)
    assert text == "one"
    # a client that has the head connects without a read and still gets what comes next
    second = await RawClient.open(server.url)
    await second.connect("upd:c2:t", synced=head)
    assert await log_reads() == 0
    await sender.sync(2, {"type": "notify", "user": "upd", "text": "two"})
    assert [t for _, t in await notifications(second, 1)] == ["two"]
    assert [t for _, t in await notifications(first, 1)] == ["two"]
    # one that is behind reads what it missed
    third = await RawClient.open(server.url)
    await third.connect("upd:c3:t", synced=0)
    assert [t for _, t in await notifications(third, 2)] == ["one", "two"]
    assert await log_reads() >= 1
    # each got each notification once: nothing is on its way to any of them
    for client in (first, second, third):
        assert of_type(await nothing_more(client), "notify") == []
    for client in (sender, first, second, third):
        await client.close()
