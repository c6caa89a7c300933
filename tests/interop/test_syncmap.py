"""Interop: the real @logux/client SyncMap API (``syncMapTemplate``, ``createSyncMap``,
``changeSyncMap``, ``deleteSyncMap``, ``buildNewSyncMap``, ``createFilter``) against
``logsync.syncmap`` serving ``tests/interop/syncmap_app.py``.

One server for the module; every scenario uses fresh ids. With ``LOGSYNC_INTEROP_TARGET=reference``
the same scripts run against @logux/server's ``addSyncMap`` (js/syncmap-reference-server.mjs);
where the reference behaves differently on purpose, the assertion says so.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import ServerProcess

JS_DIR = Path(__file__).parent / "js"
SCRIPT_TIMEOUT = 30.0
CLOCK_SKEW_MS = 50  # client time fix between the two clients of one host

Run = Callable[[str], dict[str, Any]]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def syncmap_url(node_bin: str, js_deps: Path, interop_target: str) -> Iterator[str]:
    if interop_target != "reference":
        server = ServerProcess("tests.interop.syncmap_app:app", store="memory://")
        try:
            yield server.url
        finally:
            server.stop()
        return
    port = _free_port()
    proc = subprocess.Popen(
        [node_bin, str(JS_DIR / "syncmap-reference-server.mjs"), str(port)],
        cwd=JS_DIR,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        if not ready or not proc.stdout.readline().startswith(b"listening"):
            pytest.fail("syncmap-reference-server.mjs did not start")
        yield f"ws://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=5)


@pytest.fixture(scope="module")
def run(node_bin: str, syncmap_url: str) -> Run:
    """Run ``js/<name>.mjs`` against the module's server; its last stdout line as JSON."""
    results: dict[str, dict[str, Any]] = {}

    def run_script(name: str) -> dict[str, Any]:
        if name in results:
            return results[name]
        started = time.monotonic()
        proc = subprocess.run(
            [node_bin, str(JS_DIR / f"{name}.mjs"), syncmap_url],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"{name}.mjs exited {proc.returncode} after {time.monotonic() - started:.1f} s\n"
                f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
            )
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        assert lines, f"{name}.mjs printed nothing:\n{proc.stderr[-4000:]}"
        results[name] = json.loads(lines[-1])
        return results[name]

    return run_script


def near(a: int, b: int) -> bool:
    return abs(a - b) <= CLOCK_SKEW_MS


def test_create_load_change(run: Run, interop_target: str) -> None:
    r = run("syncmap-crud")
    assert r["errors"] == []
    assert r["create"] == {"ok": True}
    note = {"project": "p", "text": "world", "title": "Hello"}
    assert r["bobLoad"]["ok"] is True
    assert {k: v for k, v in r["bobLoad"]["value"].items() if k != "id"} == note
    # load: one notes/changed (all fields changed together) stamped with the create's time
    [loaded] = r["bobLoadChanged"]
    assert loaded["fields"] == note
    assert near(loaded["time"], r["createTime"])
    # a change reaches the other client, with the time of the change, not the server's
    changed = r["bobChanged"][-1]
    assert changed["fields"] == {"title": "Hello 2"}
    assert near(changed["time"], r["changeTime"])
    if interop_target != "reference":
        # (the reference resends what `load` sends to every subscriber of the channels)
        assert len(r["bobChanged"]) == 2
    # each got only the other one's changes; the quiet change (`change` → False) not at all
    assert r["aliceGot"] == [{"text": "bob was here"}]
    assert r["bobGot"] == [{"title": "Hello 2"}, {"title": "Hello 3"}]
    assert r["quiet"] == {"ok": True}
    bob, alice = r["bobValue"], r["aliceValue"]
    assert bob["title"] == alice["title"] == "Hello 3"
    assert bob["text"] == alice["text"] == "bob was here"
    assert "quiet" not in bob and alice["quiet"] is True


def test_load_groups_fields_by_change_time(run: Run) -> None:
    r = run("syncmap-crud")
    assert r["seeded"]["ok"] is True
    assert r["seeded"]["value"] == {
        "id": "seeded",
        "title": "Seeded",
        "project": "seed",
        "text": "first text",
        "color": "red",
        "kind": "sample",
    }
    groups = sorted(r["seededChanged"], key=lambda g: g["time"])
    assert [g["fields"] for g in groups] == [
        {"title": "Seeded", "project": "seed"},
        {"text": "first text"},
        {"color": "red"},
        {"kind": "sample"},  # NoConflictResolution: sent with the current time
    ]
    assert all(near(g["time"], t) for g, t in zip(groups[:3], (1000, 2000, 3000), strict=True))
    assert groups[-1]["time"] >= r["createTime"] - CLOCK_SKEW_MS


def test_refusals(run: Run, interop_target: str) -> None:
    r = run("syncmap-crud")
    assert r["clientSent"] == {
        "notes/created": "denied",
        "notes/changed": "denied",
        "notes/deleted": "denied",
    }
    assert r["secretCreate"] == {"ok": False, "reason": "denied"}
    assert r["secretLoad"] == {"ok": False, "reason": "denied"}
    assert r["missingLoad"] == {"ok": False, "reason": "notFound"}
    assert r["missingValue"] is None  # loadValue() of a missing map
    # NotFound raised by `change`; a malformed payload
    expected = ("error", "processed") if interop_target == "reference" else ("notFound", "error")
    assert (r["changeDeleted"]["reason"], r["bogusPayload"]) == expected


def test_build_new_subscribes_creating_without_load(run: Run) -> None:
    built = run("syncmap-crud")["built"]
    [subscribe] = built["subscribes"]
    assert subscribe["creating"] is True and subscribe["channel"].startswith("notes/built-")
    assert built["changed"] == []
    assert built["value"]["title"] == "Built"
    assert run("syncmap-crud")["builtByBob"]["value"]["title"] == "Built"


def test_delete(run: Run) -> None:
    r = run("syncmap-crud")
    assert r["delete"] == {"ok": True}
    assert r["bobDeletedFlag"] is True
    assert r["aliceDeletedReceived"] == 0
    assert r["daveLoad"] == {"ok": False, "reason": "notFound"}


def test_offline_change_reaches_server_and_other_client(run: Run) -> None:
    r = run("syncmap-offline")
    assert r["errors"] == []
    assert r["aliceLoad"]["ok"] and r["bobLoad"]["ok"]
    # applied locally at once, not answered while offline, unseen by bob
    assert r["aliceOptimistic"]["title"] == "Offline title"
    assert r["aliceOptimistic"]["text"] == "alice offline text"
    assert r["settledWhileOffline"] is False
    assert r["bobWhileAliceOffline"]["title"] == "Start"
    # sent on reconnect and processed; alice resubscribed with `since`
    assert r["offlineTitle"] == {"ok": True} and r["offlineText"] == {"ok": True}
    assert {"channel": r["resubscribes"][0]["channel"], "hasSince": True} in r["resubscribes"]
    # bob got alice's offline changes stamped with the time they were made
    for change in r["offlineTimes"]:
        got = next(c for c in r["bobGot"] if c["fields"] == change["fields"])
        assert near(got["time"], change["time"])
    [alice_text] = [c for c in r["offlineTimes"] if "text" in c["fields"]]
    [bob_text] = [c for c in r["bobTimes"] if "text" in c["fields"]]
    assert alice_text["time"] < bob_text["time"]
    # last writer wins per field, by the time of the change: everyone converges
    expected = {"title": "Offline title", "text": "bob online text", "color": "blue"}
    for value in (r["aliceValue"], r["bobValue"], r["carolLoad"]["value"]):
        assert {k: v for k, v in value.items() if k != "id"} == expected


def test_filter(run: Run) -> None:
    r = run("syncmap-filter")
    assert r["errors"] == []
    ids = r["ids"]
    project = ids["n1"].split("-", 1)[1]
    assert r["load"] == {"ok": True}
    # initial: the matching maps, complete (n6's fields have two change times)
    assert r["initial"] == [
        {"id": ids["n1"], "project": project, "title": "one"},
        {"id": ids["n2"], "project": project, "title": "two"},
        {"id": ids["n6"], "project": project, "title": "six"},
    ]
    assert r["subscribed"] == sorted(f"notes/{ids[n]}" for n in ("n1", "n2", "n6"))
    assert sorted(set(r["initialChanged"])) == sorted(ids[n] for n in ("n1", "n2", "n6"))
    # later creates: only the matching one is even delivered
    assert r["afterCreates"] == sorted(ids[n] for n in ("n1", "n2", "n4", "n6"))
    assert r["createdReceived"] == [ids["n4"]]
    # a change shows; a change contradicting the filter takes the map out
    assert [(i["id"], i.get("title")) for i in r["afterChanges"]] == [
        (ids["n1"], "one!"),
        (ids["n4"], "four"),
        (ids["n6"], "six"),
    ]
    assert r["afterDeletes"] == [ids["n6"]]
    # after a reconnect: a new match is listed, n6 (an initial map) follows changes and deletes
    assert [i["id"] for i in r["afterReconnect"]] == [ids["n1"].replace("n1-", "n7-")]
    assert r["denied"] == {"ok": False, "reason": "denied"}


def test_batched_live_changes_reach_a_filter(run: Run, interop_target: str) -> None:
    """Several live entries for one connection go out in one `sync`, but never two of one
    SyncMap item: createFilter keeps every field of x's three rapid changes, and of y1…y3.
    (Without that rule test_filter fails: the initial list's n6 loses its second group.)"""
    r = run("syncmap-batched")
    assert r["errors"] == []
    assert r["load"] == r["burst"] == {"ok": True}
    ids = r["ids"]
    project = ids["x"].split("-", 1)[1]
    assert r["listed"] is True
    assert r["list"] == [
        {"id": ids["x"], "project": project, "title": "x!", "color": "blue"},
        {"id": ids["y1"], "project": project, "title": "y1!"},
        {"id": ids["y2"], "project": project, "title": "y2!"},
        {"id": ids["y3"], "project": project, "title": "y3!"},
    ]
    syncs = r["syncs"]
    assert sorted(i for items in syncs for i in items) == sorted(
        [ids["x"]] * 3 + [ids["y1"], ids["y2"], ids["y3"]]
    )
    assert all(len(set(items)) == len(items) for items in syncs)  # one change per item per sync
    if interop_target != "reference":  # (@logux/server sends one action per sync)
        assert [ids["x"], ids["y1"]] in syncs  # offered in one turn: batched
