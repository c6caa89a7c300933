"""POST /v1/sync in-process: a real ServerNode (memory and SQLite stores) behind its aiohttp app.

Push and its answers (the socket's undo reasons), dedupe on retry, the page (paging, filters,
own actions), channel subscriptions (load, since, unsubscribe, persistence), resets."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from logsync.engine import ServerNode
from logsync.engine.subscriptions import PULL_RECORDS
from logsync.protocol.pull import SyncResponse, decode_cursor, encode_cursor
from logsync.wallclock import now_ms
from tests.pull import app as rules
from tests.pull.conftest import Puller, types

pytestmark = pytest.mark.timeout(30)

Client = TestClient[Any, Any]


def message(room: str, text: str) -> dict[str, Any]:
    return {"type": "rooms/add", "room": room, "text": text}


async def test_pushed_action_is_processed_and_reaches_a_subscriber(client: Client) -> None:
    sender, reader = Puller(client, "10:phone"), Puller(client, "11:laptop")
    subscribed = await reader.sync(subscribe=[{"channel": "rooms/1"}])
    assert subscribed["subscriptions"] == [{"channel": "rooms/1", "status": "processed"}]
    assert types(subscribed) == ["rooms/state", "logux/processed"]  # load, then the answer
    pushed = sender.action(message("1", "hi"))
    answer = await sender.sync(actions=[pushed])
    assert answer["answers"] == [{"id": pushed[1]["id"], "status": "processed"}]
    assert answer["actions"] == []  # its own action is not sent back
    SyncResponse.model_validate(answer)
    page = await reader.sync()
    assert page["actions"] == [[message("1", "hi"), {**pushed[1], "subprotocol": 2, "added": 4}]]
    again = await reader.sync()
    assert again["actions"] == [] and again["cursor"] == page["cursor"]


async def test_undo_reasons(client: Client) -> None:
    p = Puller(client, "10:phone")
    denied = p.action({"type": "denied/action"})
    unknown = p.action({"type": "nope"})
    extra_meta = p.action({"type": "notify", "user": "10"}, reason="extra")
    other_node = [{"type": "notify", "user": "10"}, {"id": f"{now_ms()} 99:x 1", "time": now_ms()}]
    future = p.action({"type": "notify", "user": "10"})
    future[1]["time"] = now_ms() + 3_600_000
    invalid = p.action(message("1", ""))  # the model refuses an empty text
    out_of_range = p.action({"type": "notify", "user": "10"})
    out_of_range[1]["time"] = -5
    failing = p.action(message("1", "fail"))
    actions = [denied, unknown, extra_meta, other_node, future, invalid, out_of_range, failing]
    answer = await p.sync(actions=actions)
    reasons = [(a["id"], a["status"], a.get("reason")) for a in answer["answers"]]
    assert reasons == [
        (denied[1]["id"], "undo", "denied"),
        (unknown[1]["id"], "undo", "unknownType"),
        (extra_meta[1]["id"], "undo", "denied"),
        (other_node[1]["id"], "undo", "denied"),
        (future[1]["id"], "undo", "error"),
        (invalid[1]["id"], "undo", "error"),
        (out_of_range[1]["id"], "undo", "error"),
        (failing[1]["id"], "undo", "error"),
    ]
    undo = answer["answers"][4]["undo"]
    assert undo["type"] == "logux/undo" and undo["action"] == future[0]
    assert "ahead of the server clock" in undo["details"]
    assert "meta.time" in answer["answers"][6]["undo"]["details"]
    # logged undos are addressed to the client: the page has them too
    assert types(answer).count("logux/undo") == len(actions)


async def test_a_retried_request_changes_nothing(client: Client, node: ServerNode) -> None:
    p = Puller(client, "10:phone")
    ok, failing = p.action(message("1", "once")), p.action(message("1", "fail"))
    cursor = p.cursor
    first = await p.sync(actions=[ok, failing, ok])
    p.cursor = cursor  # its response was lost: the same request again
    second = await p.sync(actions=[ok, failing, ok])
    assert first["answers"] == second["answers"]
    assert [a["status"] for a in first["answers"]] == ["processed", "undo", "processed"]
    assert first["actions"] == second["actions"] and first["cursor"] == second["cursor"]
    stored = await node.store.read(["channel:rooms/1"], 0, 100)
    texts = [e.action["text"] for e in stored.entries if e.action["type"] == "rooms/add"]
    assert texts == ["once", "fail"]


async def test_paging_with_limit_and_more(client: Client) -> None:
    sender, reader = Puller(client, "10:phone"), Puller(client, "11:laptop")
    await reader.sync()
    notes = [sender.action({"type": "notify", "user": "11", "n": i}) for i in range(5)]
    await sender.sync(actions=notes)
    seen: list[int] = []
    mores = []
    for _ in range(4):
        page = await reader.sync(limit=2)
        seen += [action["n"] for action, _ in page["actions"]]
        mores.append(page["more"])
        if not page["more"]:
            break
    assert seen == [0, 1, 2, 3, 4]
    assert mores[:2] == [True, True]
    assert not mores[-1]


async def test_the_cursor_passes_entries_the_filter_leaves_out(
    client: Client, node: ServerNode
) -> None:
    sender, reader = Puller(client, "10:phone"), Puller(client, "11:laptop")
    await reader.sync(subscribe=[{"channel": "tasks", "filter": {"done": False}}])
    done = [sender.action({"type": "tasks/set", "done": True, "n": i}) for i in range(3)]
    await sender.sync(actions=done)
    page = await reader.sync(limit=2)
    assert page["actions"] == [] and not page["more"]
    assert decode_cursor(page["cursor"])[1] == await node.store.head()
    await sender.sync(actions=[sender.action({"type": "tasks/set", "done": False, "n": 9})])
    page = await reader.sync()
    assert [action["n"] for action, _ in page["actions"]] == [9]


async def test_subscribing_again_does_not_run_load_twice(client: Client) -> None:
    p = Puller(client, "20:phone")
    first = await p.sync(subscribe=[{"channel": "rooms/load-once"}])
    second = await p.sync(subscribe=[{"channel": "rooms/load-once"}])
    assert rules.loads["load-once"] == 1
    assert second["subscriptions"] == [{"channel": "rooms/load-once", "status": "processed"}]
    assert "rooms/state" in types(first) and second["actions"] == []


async def test_subscriptions_persist_and_leaving_runs_no_unsubscribe(client: Client) -> None:
    sender, reader = Puller(client, "10:phone"), Puller(client, "12:tablet")
    await reader.sync(subscribe=[{"channel": "rooms/keep"}])
    for i in range(3):
        await sender.sync(actions=[sender.action(message("keep", f"m{i}"))])
        page = await reader.sync()
        assert [a["text"] for a, _ in page["actions"]] == [f"m{i}"]
    assert rules.unsubscribed.get("keep", 0) == 0
    answer = await reader.sync(unsubscribe=[{"channel": "rooms/keep"}])
    assert answer["subscriptions"] == [{"channel": "rooms/keep", "status": "processed"}]
    assert rules.unsubscribed["keep"] == 1
    await sender.sync(actions=[sender.action(message("keep", "after"))])
    page = await reader.sync()
    assert [a for a, _ in page["actions"] if a["type"] == "rooms/add"] == []


async def test_refused_subscriptions_are_answered_undo(client: Client, node: ServerNode) -> None:
    p = Puller(client, "10:phone")
    answer = await p.sync(subscribe=[{"channel": "rooms/secret"}, {"channel": "nowhere"}])
    assert [(s["channel"], s["status"], s["reason"]) for s in answer["subscriptions"]] == [
        ("rooms/secret", "undo", "denied"),
        ("nowhere", "undo", "wrongChannel"),
    ]
    saved = await node.store.get_record(PULL_RECORDS, "10:phone")
    assert saved is not None and orjson.loads(saved)["channels"] == {}  # known, subscribed to none


async def test_resubscribe_with_since_gets_history_without_load(client: Client) -> None:
    sender, reader = Puller(client, "10:phone"), Puller(client, "13:watch")
    first = await reader.sync(subscribe=[{"channel": "rooms/since"}])
    [(processed, processed_meta)] = [
        (a, m) for a, m in first["actions"] if a["type"] == "logux/processed"
    ]
    await reader.sync(unsubscribe=[{"channel": "rooms/since"}])
    await sender.sync(actions=[sender.action(message("since", "missed"))])
    loads = rules.loads["since"]
    since = {"id": processed_meta["id"], "time": processed_meta["time"]}
    resumed = await reader.sync(subscribe=[{"channel": "rooms/since", "since": since}])
    assert [a.get("text") for a, _ in resumed["actions"] if a["type"] == "rooms/add"] == ["missed"]
    assert rules.loads["since"] == loads  # history instead of load
    assert processed["type"] == "logux/processed"


async def test_reset_for_another_epoch_drops_subscriptions(
    client: Client, node: ServerNode
) -> None:
    sender, reader = Puller(client, "10:phone"), Puller(client, "14:desk")
    await reader.sync(subscribe=[{"channel": "rooms/reset"}])
    status, body = await reader.post({"cursor": encode_cursor("another-log", 1)})
    assert status == 409
    assert body["error"] == "reset" and "another log" in body["reason"]
    assert body["resubscribe"] == ["rooms/reset"]
    assert decode_cursor(body["cursor"]) == (await node.store.epoch(), await node.store.head())
    reader.cursor = body["cursor"]
    await sender.sync(actions=[sender.action(message("reset", "unseen"))])
    page = await reader.sync()
    assert [a for a, _ in page["actions"] if a["type"] == "rooms/add"] == []


async def test_reset_for_a_cursor_ahead_or_below_trimmed_history(
    client: Client, node: ServerNode
) -> None:
    sender, reader = Puller(client, "10:phone"), Puller(client, "15:desk")
    epoch = await node.store.epoch()
    await reader.sync(subscribe=[{"channel": "rooms/trim"}])
    old_cursor = reader.cursor
    status, body = await reader.post({"cursor": encode_cursor(epoch, 10**9)})
    assert (status, body["error"]) == (409, "reset") and "ahead" in body["reason"]
    await reader.sync(subscribe=[{"channel": "rooms/trim"}])  # subscribed again
    for i in range(3):
        await sender.sync(actions=[sender.action(message("trim", f"t{i}"))])
    await node.store.trim(index_prefix="channel:rooms/trim", keep_last=1)
    reader.cursor = old_cursor
    status, body = await reader.post({})
    assert (status, body["error"]) == (409, "reset") and "trimmed" in body["reason"]
    assert body["resubscribe"] == ["rooms/trim"]


async def test_msgpack_request_and_answer(client: Client) -> None:
    p = Puller(client, "10:phone")
    pushed = p.action({"type": "notify", "user": "10", "blob": [1, 2.5, None]})
    status, answer = await p.post({"actions": [pushed]}, msgpack_body=True)
    assert status == 200
    assert answer["answers"] == [{"id": pushed[1]["id"], "status": "processed"}]
    # addressed to its own user, from itself: not sent back
    assert answer["actions"] == []


async def test_answers_keep_request_order_across_queues(client: Client) -> None:
    p = Puller(client, "10:phone")
    pushed = [p.action({"type": "notify", "user": "x", "n": i}) for i in range(20)]
    answer = await p.sync(actions=pushed)
    assert [a["id"] for a in answer["answers"]] == [m["id"] for _, m in pushed]


async def test_subscribe_items_are_the_clients_actions_with_server_made_ids(
    client: Client, node: ServerNode
) -> None:
    p = Puller(client, "16:phone:tab")
    answer = await p.sync(subscribe=[{"channel": "rooms/ids", "type": "not/a/subscribe"}])
    assert answer["subscriptions"] == [{"channel": "rooms/ids", "status": "processed"}]
    stored = await node.store.read(["client:16:phone"], 0, 100)
    [processed] = [e.action for e in stored.entries if e.action["type"] == "logux/processed"]
    subscribe = await node.store.get(processed["id"])
    assert subscribe is not None
    assert subscribe.action == {"type": "logux/subscribe", "channel": "rooms/ids"}
    assert subscribe.id.split(" ")[1] == "16:phone:~pull"


async def test_polling_writes_the_saved_subscriptions_only_when_they_change(
    client: Client, node: ServerNode
) -> None:
    p = Puller(client, "17:phone")
    await p.sync(subscribe=[{"channel": "rooms/w"}])
    saved = await node.store.get_record(PULL_RECORDS, "17:phone")
    assert saved is not None
    for _ in range(3):
        await p.sync()
    assert await node.store.get_record(PULL_RECORDS, "17:phone") == saved  # not rewritten
    await p.sync(subscribe=[{"channel": "rooms/w2"}])
    changed = await node.store.get_record(PULL_RECORDS, "17:phone")
    assert changed is not None and b"rooms/w2" in changed
    await p.sync(unsubscribe=[{"channel": "rooms/w"}, {"channel": "rooms/w2"}])
    emptied = await node.store.get_record(PULL_RECORDS, "17:phone")
    assert emptied is not None and orjson.loads(emptied)["channels"] == {}


async def test_a_cursor_that_outlived_its_saved_subscriptions_is_reset(
    client: Client, node: ServerNode
) -> None:
    sender, reader = Puller(client, "10:phone"), Puller(client, "19:desk")
    await reader.sync(subscribe=[{"channel": "rooms/expired"}])
    await sender.sync(actions=[sender.action(message("expired", "seen"))])
    await reader.sync()
    # pull_state_ttl_ms passed without a request: the store let the record go
    assert await node.store.delete_record(PULL_RECORDS, "19:desk")
    await sender.sync(actions=[sender.action(message("expired", "missed"))])
    status, body = await reader.post({})
    assert (status, body["error"]) == (409, "reset") and "expired" in body["reason"]
    assert decode_cursor(body["cursor"]) == (await node.store.epoch(), await node.store.head())
    # the fresh cursor is served (the client is known again), and subscribing again loads
    reader.cursor = body["cursor"]
    loads = rules.loads["expired"]
    page = await reader.sync(subscribe=[{"channel": "rooms/expired"}])
    assert [s["status"] for s in page["subscriptions"]] == ["processed"]
    assert rules.loads["expired"] == loads + 1


async def test_subscribe_items_are_validated_at_the_door(client: Client) -> None:
    p = Puller(client, "18:phone")
    answer = await p.sync(
        subscribe=[
            {"channel": "rooms/" + "x" * 600},
            {"channel": "rooms/ok", "since": {"id": "not an id"}},
            {"channel": "rooms/big", "n": 2**60},
        ]
    )
    assert [(s["status"], s["reason"]) for s in answer["subscriptions"]] == [("undo", "error")] * 3
    details = [s["undo"]["details"] for s in answer["subscriptions"]]
    assert "channel must be a string of at most 512" in details[0]
    assert "action id" in details[1]
    assert "round-trip" in details[2]
