"""App rules end to end over real sockets: routing, filters, undo fan-out, queues, catch-up."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.deadline import Deadline
from tests.support.server import ServerProcess
from tests.support.wsclient import RawClient

# Every wait of this module ends: a loop reading messages stops after this long in all.
DEADLINE = 20.0


async def recv(c: RawClient, deadline: Deadline) -> list[Any]:
    return await c.recv(min(deadline.left(), 10.0))


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    process = ServerProcess("tests.server.rules_app:app", "--ping", "600000")
    try:
        yield process
    finally:
        process.stop()


async def client(server: ServerProcess, node_id: str, synced: int = 0) -> RawClient:
    result = await RawClient.open(server.url)
    await result.connect(node_id, synced=synced, subprotocol=0)
    return result


async def subscribe(c: RawClient, channel: str, **extra: Any) -> None:
    [wire_id] = await c.sync(1, {"type": "logux/subscribe", "channel": channel, **extra})
    answer = await c.answer(c.full_id(wire_id))
    assert answer["type"] == "logux/processed", answer


async def actions_until(
    c: RawClient, action_type: str, deadline: Deadline | None = None
) -> list[dict[str, Any]]:
    """Actions received up to and including the first of ``action_type``."""
    seen: list[dict[str, Any]] = []
    deadline = deadline or Deadline(DEADLINE)
    while True:
        msg = await recv(c, deadline)
        if msg[0] == "sync":
            for action in msg[2::2]:
                seen.append(action)
                if action["type"] == action_type:
                    return seen


async def test_filtered_subscriptions_get_only_matching_actions(server: ServerProcess) -> None:
    red = await client(server, "fr:red:t")
    anything = await client(server, "fa:any:t")
    sender = await client(server, "fs:snd:t")
    await subscribe(red, "items", filter={"color": "red"})
    await subscribe(anything, "items")
    for color in ("blue", "red"):
        [wire_id] = await sender.sync(1, {"type": "item/add", "color": color})
        await sender.answer(sender.full_id(wire_id))
    got_red = await actions_until(red, "item/add")
    assert [a["color"] for a in got_red if a["type"] == "item/add"] == ["red"]
    got_any = [a["color"] for a in await actions_until(anything, "item/add")]
    got_any += [a["color"] for a in await actions_until(anything, "item/add")]
    assert got_any == ["blue", "red"]
    for c in (red, anything, sender):
        await c.close()


async def test_exclude_clients_and_undo_reaches_everyone_who_got_the_action(
    server: ServerProcess,
) -> None:
    a = await client(server, "ua:a:t")
    b = await client(server, "ub:b:t")
    c = await client(server, "uc:c:t")
    for each in (a, b, c):
        await subscribe(each, "room/1")
    [wire_id] = await a.sync(
        1, {"type": "room/say", "room": "1", "text": "hi", "exclude": ["uc:c"]}
    )
    await a.answer(a.full_id(wire_id))
    said = await actions_until(b, "room/say")
    assert said[-1]["text"] == "hi"
    [wire_id] = await a.sync(2, {"type": "room/explode", "room": "1"})
    undo = await a.answer(a.full_id(wire_id))
    assert undo["reason"] == "error"
    got = await actions_until(b, "logux/undo")
    assert [x["type"] for x in got] == ["room/explode", "logux/undo"]
    assert got[-1]["action"] == {"type": "room/explode", "room": "1"}
    # c was excluded from room/say, but is in the channel for room/explode and its undo
    got_c = await actions_until(c, "logux/undo")
    assert [x["type"] for x in got_c] == ["room/explode", "logux/undo"]
    for each in (a, b, c):
        await each.close()


async def test_custom_undo_reason_with_extra_fields(server: ServerProcess) -> None:
    a = await client(server, "cu:a:t")
    [wire_id] = await a.sync(1, {"type": "late"})
    undo = await a.answer(a.full_id(wire_id))
    assert (undo["reason"], undo["hint"]) == ("tooLate", "try earlier")
    await a.close()


async def test_server_action_reaches_channel_including_the_cause_sender(
    server: ServerProcess,
) -> None:
    a = await client(server, "sa:a:t")
    await subscribe(a, "room/7")
    [wire_id] = await a.sync(1, {"type": "announce", "room": "7", "text": "news"})
    seen = await actions_until(a, "logux/processed")
    assert {"type": "announcement", "text": "news"} in seen
    assert seen.index({"type": "announcement", "text": "news"}) < len(seen) - 1
    assert seen[-1]["id"] == a.full_id(wire_id)
    await a.close()


async def test_other_channel_and_regex_types(server: ServerProcess) -> None:
    a = await client(server, "oc:a:t")
    await subscribe(a, "any/thing")
    [wire_id] = await a.sync(1, {"type": "logux/subscribe", "channel": "none/thing"})
    assert (await a.answer(a.full_id(wire_id)))["reason"] == "denied"
    [wire_id] = await a.sync(2, {"type": "regex/yes"})
    assert (await a.answer(a.full_id(wire_id)))["type"] == "logux/processed"
    [wire_id] = await a.sync(3, {"type": "regex/"})
    assert (await a.answer(a.full_id(wire_id)))["reason"] == "unknownType"
    [wire_id] = await a.sync(4, {"type": "logux/processed", "id": "1 x 0"})
    assert (await a.answer(a.full_id(wire_id)))["reason"] == "denied"
    await a.close()


async def test_one_client_queue_runs_actions_in_order(server: ServerProcess) -> None:
    """One client's actions run one at a time: the fast one waits for the slow one before it.

    rules_app's ``step/*`` processes append their name to one list; a ``step/slow`` sleeps first,
    then sends the list back (an ``order`` action). Run concurrently, ``second`` (no sleep) would
    be in the list before ``first``.
    """
    a = await client(server, "q:a:t")
    await a.sync(
        1,
        {"type": "step/slow", "name": "first"},
        {"type": "step/fast", "name": "second"},
        {"type": "step/slow", "name": "third"},
    )
    orders: list[list[str]] = []
    deadline = Deadline(DEADLINE)
    while len(orders) < 2:
        msg = await recv(a, deadline)
        if msg[0] == "sync":
            orders += [action["seen"] for action in msg[2::2] if action["type"] == "order"]
    first, third = orders
    # (the list is the app's: what ran before this test stays at its start)
    assert third[-3:] == ["first", "second", "third"], third
    assert first == third[:-2], (first, third)
    synced, _ = await a.recv_until("synced", timeout=deadline.left())
    assert synced == ["synced", 1]
    await a.close()


async def test_the_next_access_sees_what_the_previous_process_did(server: ServerProcess) -> None:
    """``step/after`` is allowed only once the step it names was processed: sent right behind a
    ``step/slow`` (which sleeps before it records itself), it is processed, not denied."""
    a = await client(server, "q:b:t")
    ids = await a.sync(
        1, {"type": "step/slow", "name": "gate"}, {"type": "step/after", "name": "gate"}
    )
    answer = await a.answer(a.full_id(ids[1]))
    assert answer["type"] == "logux/processed", answer
    await a.close()


async def test_unsubscribe_callback_runs_on_disconnect(server: ServerProcess) -> None:
    watcher = await client(server, "watcher:w:t")
    leaver = await client(server, "leaver:l:t")
    await subscribe(leaver, "room/9")
    await leaver.close()
    # earlier tests' clients left rooms too; the watcher is told about each, the leaver last
    left: list[Any] = []
    deadline = Deadline(DEADLINE)
    while "leaver" not in left:
        left.append((await actions_until(watcher, "presence/left", deadline))[-1]["user"])
    assert left.count("leaver") == 1
    await watcher.close()


async def test_offline_backlog_is_replayed_in_chunks_in_order_once(server: ServerProcess) -> None:
    reader = await client(server, "reader:r:t")
    await reader.close()
    sender = await client(server, "mailer:m:t")
    count = 250  # more than two replay chunks of 100
    actions = [{"type": "mail", "to": "reader", "n": i} for i in range(count)]
    await sender.sync(1, *actions)
    synced, _ = await sender.recv_until("synced")
    assert synced == ["synced", 1]
    reader = await RawClient.open(server.url)
    await reader.connect("reader:r:t", synced=0, subprotocol=0)
    received: list[int] = []
    last_added = 0
    deadline = Deadline(DEADLINE)
    while len(received) < count:
        msg = await recv(reader, deadline)
        if msg[0] != "sync":
            continue
        assert msg[1] > last_added  # strictly increasing watermark
        last_added = msg[1]
        batch = [a["n"] for a in msg[2::2] if a["type"] == "mail"]
        assert len(batch) <= 100
        received += batch
        await reader.send(["synced", msg[1]])
    assert received == list(range(count))
    await reader.close()
    # resuming from the last watermark gets nothing again
    again = await RawClient.open(server.url)
    await again.connect("reader:r:t", synced=last_added, subprotocol=0)
    await again.send(["ping", 0])
    pong, before = await again.recv_until("pong")
    assert [m for m in before if m[0] == "sync"] == []
    assert pong == ["pong", 0]
    await again.close()
    await sender.close()


async def append_calls(server: ServerProcess) -> float:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(server.http_url + "metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith('logsync_store_seconds_count{operation="append"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_batch_types_are_appended_in_one_store_call(server: ServerProcess) -> None:
    writer = await client(server, "bulkwriter:w:t")
    calls = await append_calls(server)
    ids = await writer.sync(1, *[{"type": "bulk", "n": n} for n in range(50)])
    # `synced` comes once every action is answered
    synced, received = await writer.recv_until("synced")
    assert synced == ["synced", 1]
    answers = {a["id"]: a["type"] for m in received if m[0] == "sync" for a in m[2::2]}
    assert {answers[writer.full_id(i)] for i in ids} == {"logux/processed"}
    assert await append_calls(server) == calls + 1
    # resent (no `synced` seen, say): answered again, not appended again
    message: list[Any] = ["sync", 2]
    for wire_id in ids[:10]:
        message += [{"type": "bulk", "n": 0}, {"id": wire_id, "time": 0}]
    await writer.send(message)
    assert (await writer.recv_until("synced"))[0] == ["synced", 2]
    reader = await client(server, "bulkreader:r:t")
    got: list[int] = []
    deadline = Deadline(DEADLINE)
    while len(got) < 50:
        msg = await recv(reader, deadline)
        if msg[0] == "sync":
            got += [a["n"] for a in msg[2::2] if a["type"] == "bulk"]
            await reader.send(["synced", msg[1]])
    assert got == list(range(50))
    await reader.send(["ping", 0])
    _, rest = await reader.recv_until("pong")
    assert not [a for m in rest if m[0] == "sync" for a in m[2::2] if a["type"] == "bulk"]
    await reader.close()
    await writer.close()


@pytest.mark.parametrize(("kind", "store_calls"), [("bulk/default", 1), ("bulk/serial", 8)])
async def test_a_type_without_process_is_batched_unless_it_says_batch_false(
    server: ServerProcess, kind: str, store_calls: int
) -> None:
    writer = await client(server, f"{kind.replace('/', '')}:w:t")
    calls = await append_calls(server)
    ids = await writer.sync(1, *[{"type": kind, "n": n} for n in range(8)])
    synced, received = await writer.recv_until("synced")
    assert synced == ["synced", 1]
    answers = {a["id"]: a["type"] for m in received if m[0] == "sync" for a in m[2::2]}
    assert {answers[writer.full_id(i)] for i in ids} == {"logux/processed"}
    assert await append_calls(server) == calls + store_calls
    await writer.close()


async def test_batch_types_still_check_and_process_each_in_order(server: ServerProcess) -> None:
    writer = await client(server, "bulkcheck:w:t")
    ids = await writer.sync(1, *[{"type": "bulk/checked", "n": n} for n in range(6)])
    wanted = {writer.full_id(i): n for n, i in enumerate(ids)}
    answers: dict[int, dict[str, Any]] = {}
    deadline = Deadline(DEADLINE)
    while len(answers) < 6:
        msg = await recv(writer, deadline)
        if msg[0] == "sync":
            for action in msg[2::2]:
                if action.get("id") in wanted:
                    answers[wanted[action["id"]]] = action
    assert answers[3]["type"] == "logux/undo" and answers[3]["reason"] == "denied"
    assert all(answers[n]["type"] == "logux/processed" for n in (0, 1, 2, 4, 5))
    await writer.close()


async def test_a_clients_process_actions_run_in_order_and_share_commits(
    server: ServerProcess,
) -> None:
    # `access` of each needs the `process` of the one before (rules_app's "piped"): they run
    # one at a time, in order. Each runs while its append is on its way to the disk, so the
    # eight take fewer commits than actions, and the reader fewer `sync` messages (one each,
    # before, since every action waited for its own commit). n=5 is undone by its `process`.
    reader = await client(server, "pipedreader:r:t")
    writer = await client(server, "pipedwriter:w:t")
    ids = await writer.sync(1, *[{"type": "piped", "n": n} for n in range(8)])
    synced, received = await writer.recv_until("synced")
    assert synced == ["synced", 1]
    answers = {a["id"]: a for m in received if m[0] == "sync" for a in m[2::2] if "id" in a}
    kinds = [answers[writer.full_id(i)]["type"] for i in ids]
    assert kinds == ["logux/processed"] * 5 + ["logux/undo"] + ["logux/processed"] * 2
    assert answers[writer.full_id(ids[5])]["reason"] == "piped-five"
    got: list[int] = []
    syncs = 0
    deadline = Deadline(DEADLINE)
    while len(got) < 8:  # the undone one was appended too: the reader gets it, then its undo
        msg = await recv(reader, deadline)
        if msg[0] == "sync":
            ns = [a["n"] for a in msg[2::2] if a["type"] == "piped"]
            syncs += bool(ns)
            got += ns
            await reader.send(["synced", msg[1]])
    assert got == list(range(8))
    assert syncs < 8
    # resent after a reconnect: answered from the log, never processed again
    ms, seq = writer.full_id(ids[0]).split()[0], ids[0][1]
    await writer.close()
    again = await client(server, "pipedwriter:w:t")
    await again.send(
        ["sync", 2, {"type": "piped", "n": 0}, {"id": [int(ms) - again.base_time, seq], "time": 0}]
    )
    synced, received = await again.recv_until("synced")
    first = f"{ms} pipedwriter:w:t {seq}"
    about_it = [a for m in received if m[0] == "sync" for a in m[2::2] if a.get("id") == first]
    assert [a["type"] for a in about_it] == ["logux/processed"]
    for c in (reader, again):
        await c.close()
