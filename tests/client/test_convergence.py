"""Convergence: the Python client (with the compactor and a ``SyncMapState`` local state) and the
real @logux/client (js/converge.mjs) edit the same ``notes`` SyncMap of a real ``logsync serve``
(tests/client/compaction_app.py) while the Python client is offline; then both, and a fresh
@logux/client loading from the server, see the same fields.

The Python client goes offline for real: its WebSocket runs through a TCP relay on 127.0.0.1
that the test cuts (connections reset, the port refusing) and restores; the client reconnects
by itself. Field by field, while offline:

* ``title``: changed twice by alice only, first together with ``text`` — sent once (taken out of
  the first change, which keeps its own time for ``text``), her last value;
* ``text``: alice first, bob later — bob's (newer) wins everywhere;
* ``color``: bob first, alice later — alice's wins everywhere;
* ``size``: alice 1 → 2, bob 5, alice back to 1 — alice's changes cancel out (nothing sent), so
  bob's 5 stays: on the server and, since the local state follows the queue, on alice's side too;
* ``tags``: nobody — unchanged.

The second test turns it round: the @logux/client edits offline (js/converge-offline.mjs), the
Python client online; the JS client's older ``text`` reaches the Python client after its own
newer one and loses there as on the server and in JS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from logsync_client import Client, LocalState
from logsync_client.compaction import Compactor
from logsync_client.crdt import SyncMapState
from tests.interop.conftest import JS_DIR, js_deps, node_bin  # noqa: F401 (fixtures)
from tests.support.deadline import Deadline
from tests.support.server import ServerProcess

STEP_TIMEOUT = 15.0
# Between edits meant to be ordered in time across the two clients: each client's time fix
# against the server is only as exact as its handshake round trip (tests/interop uses 50 ms too).
CLOCK_SKEW_S = 0.05


class Relay:
    """A TCP relay 127.0.0.1:port → target that can be cut (every connection reset, the port
    closed) and restored on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}
            for end in (writer, up_writer):
                end.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


class NodeScript:
    """``node js/<name>.mjs ARGS`` with its stdin and stdout: progress lines, then the report."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    @classmethod
    async def start(cls, node: str, name: str, *args: str) -> NodeScript:
        process = await asyncio.create_subprocess_exec(
            node,
            str(JS_DIR / f"{name}.mjs"),
            *args,
            cwd=JS_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def phase(self, name: str) -> dict[str, Any]:
        """Read until the progress line ``{"phase": name}``."""
        assert self.process.stdout is not None
        while True:
            line = await asyncio.wait_for(self.process.stdout.readline(), STEP_TIMEOUT)
            if not line:
                raise AssertionError(f"the script ended before {name!r}: {await self.stderr()}")
            self.lines.append(line.decode())
            data: dict[str, Any] = json.loads(line)
            if data.get("phase") == name:
                return data

    async def tell(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()

    async def report(self) -> dict[str, Any]:
        """Wait for the script to end (exit 0) and return its last line."""
        assert self.process.stdout is not None
        rest = await asyncio.wait_for(self.process.stdout.read(), STEP_TIMEOUT * 2)
        code = await asyncio.wait_for(self.process.wait(), STEP_TIMEOUT)
        lines = [*self.lines, *rest.decode().splitlines()]
        assert code == 0, f"exit {code}: {await self.stderr()}"
        result: dict[str, Any] = json.loads([line for line in lines if line.strip()][-1])
        return result

    async def stderr(self) -> str:
        assert self.process.stderr is not None
        with contextlib.suppress(asyncio.TimeoutError):
            return (await asyncio.wait_for(self.process.stderr.read(), 5)).decode()[-4000:]
        return ""

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    process = ServerProcess("tests.client.compaction_app:app", store="memory://")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def relay(server: ServerProcess) -> AsyncIterator[Relay]:
    port = int(server.url.rsplit(":", 1)[1].strip("/"))
    relay = Relay(port)
    await relay.start()
    yield relay
    with contextlib.suppress(AssertionError):
        await relay.cut()


async def wait_for(check: Any, label: str, seconds: float = STEP_TIMEOUT) -> None:
    deadline = Deadline(seconds)
    while not check():
        assert deadline.remaining() > 0, label
        await asyncio.sleep(0.02)  # polled: the state has no event for "this value"


def fields_of(state: SyncMapState, note_id: str) -> dict[str, Any] | None:
    return state.record(note_id).value() if note_id in state.records else None


def python_client(url: str, store: Path) -> tuple[Client, Compactor, LocalState[SyncMapState]]:
    """The Python side: a client with the compactor fed as its docs say, and a local state of
    the ``notes`` maps (last-writer-wins per field)."""
    compactor = Compactor(["notes"])
    client = Client(
        url,
        "alice",
        "secret",
        store=store,
        subprotocol=3,
        compactor=compactor,
        min_delay=0.05,
        max_delay=0.2,
    )
    compactor.track(client.pending())
    for kind in ("notes/created", "notes/changed", "notes/deleted"):
        client.on(kind, compactor.observe)
    client.on("logux/processed", lambda action, meta: compactor.processed(str(action["id"])))
    client.on("logux/undo", lambda action, meta: compactor.undone(str(action["id"])))
    notes = client.state(lambda s, a, m: s.applied(a, m), SyncMapState("notes"))
    return client, compactor, notes


START = {"title": "T0", "text": "x0", "color": "c0", "size": 1, "tags": "a"}


async def created_and_subscribed(client: Client, note_id: str) -> None:
    await asyncio.wait_for(client.wait_connected(), STEP_TIMEOUT)
    await client.sync({"type": "notes/create", "id": note_id, "fields": START})
    await asyncio.wait_for(client.subscribe(f"notes/{note_id}"), STEP_TIMEOUT)


async def test_python_and_logux_clients_converge_after_offline_edits(
    server: ServerProcess,
    relay: Relay,
    tmp_path: Path,
    node_bin: str,  # noqa: F811 (the fixture)
    js_deps: Path,  # noqa: F811
) -> None:
    assert shutil.which(node_bin)
    note_id = f"conv{tmp_path.name[-8:].replace('_', '')}"
    alice, compactor, notes = python_client(f"ws://127.0.0.1:{relay.port}/", tmp_path / "a.db")
    await alice.start()
    bob: NodeScript | None = None
    try:
        await created_and_subscribed(alice, note_id)
        start = START
        assert compactor.server_record(("notes", note_id)).value() == start

        expected_from_alice = {"title": "T2", "color": "alice color"}
        bob = await NodeScript.start(
            node_bin, "converge", server.url, note_id, json.dumps(expected_from_alice)
        )
        assert (await bob.phase("loaded"))["value"] == {"id": note_id, **start}

        # alice goes offline and edits
        await relay.cut()
        await wait_for(lambda: not alice.connected.is_set(), "alice disconnected")
        made = [
            alice.add({"type": "notes/change", "id": note_id, "fields": f})
            for f in (
                {"title": "T1", "text": "alice text"},
                {"size": 2},
            )
        ]
        await asyncio.sleep(CLOCK_SKEW_S)  # bob's edits are the newer ones on every clock
        await bob.tell("edit")
        await bob.phase("edited")  # bob changed text, color and size after alice's first edits
        await asyncio.sleep(CLOCK_SKEW_S)  # and alice's last ones newer than bob's
        made += [
            alice.add({"type": "notes/change", "id": note_id, "fields": f})
            for f in (
                {"title": "T2"},
                {"color": "alice color"},
                {"size": 1},
            )
        ]
        # five changes made offline, three queued: title once (out of the first change, which
        # keeps its time for text), size not at all
        queued = [(p.id, p.action["fields"]) for p in alice.pending()]
        assert queued == [
            (made[0], {"text": "alice text"}),
            (made[2], {"title": "T2"}),
            (made[3], {"color": "alice color"}),
        ]
        assert fields_of(notes.value, note_id) == {
            "title": "T2",
            "text": "alice text",
            "color": "alice color",
            "size": 1,
            "tags": "a",
        }

        # back online: the queue is sent, the resubscription brings bob's edits
        await relay.start()
        await asyncio.wait_for(alice.wait_connected(), STEP_TIMEOUT)
        await asyncio.wait_for(alice.flush(), STEP_TIMEOUT)
        report = await bob.report()
        final = {"title": "T2", "text": "bob text", "color": "alice color", "size": 5, "tags": "a"}
        await wait_for(
            lambda: fields_of(notes.value, note_id) == final, f"alice sees {final}: {notes.value}"
        )
    finally:
        if bob is not None:
            bob.kill()
        await alice.stop()

    assert report["errors"] == []
    assert [r["ok"] for r in (report["text"], report["color"], report["size"])] == [True] * 3
    bob_time = {key: e["time"] for e in report["bobTimes"] for key in e["fields"]}
    assert bob_time["text"] > int(made[0].split(" ")[0])  # bob's text is the newer
    assert bob_time["color"] < int(made[3].split(" ")[0])  # alice's color is the newer
    assert report["bobValue"] == {"id": note_id, **final}
    assert report["carolLoad"] == {"ok": True, "value": {"id": note_id, **final}}
    # what bob got from alice: one change per queued action, none for size
    got = [entry["fields"] for entry in report["bobGot"]]
    assert got[0] == start  # the map's load
    assert {"title": "T2"} in got and {"color": "alice color"} in got
    assert {"title": "T1"} not in got and {"size": 1} not in got and {"size": 2} not in got
    assert fields_of(notes.value, note_id) == final


async def test_python_and_logux_clients_converge_when_the_logux_one_was_offline(
    server: ServerProcess,
    tmp_path: Path,
    node_bin: str,  # noqa: F811 (the fixture)
    js_deps: Path,  # noqa: F811
) -> None:
    """bob (@logux/client) edits ``text`` and ``color`` offline; alice (Python) edits ``text``
    later and ``title`` online. bob's older ``text`` reaches alice after her own: it loses there,
    on the server and on bob's side alike."""
    note_id = f"off{tmp_path.name[-8:].replace('_', '')}"
    alice, _, notes = python_client(server.url, tmp_path / "a.db")
    await alice.start()
    bob: NodeScript | None = None
    try:
        await created_and_subscribed(alice, note_id)
        from_alice = {"title": "alice title", "text": "alice text"}
        bob = await NodeScript.start(
            node_bin, "converge-offline", server.url, note_id, json.dumps(from_alice)
        )
        bob_times = {
            key: entry["time"]
            for entry in (await bob.phase("offline-edited"))["times"]
            for key in entry["fields"]
        }
        await asyncio.sleep(CLOCK_SKEW_S)  # alice's text is the newer on every clock
        text_id = alice.add(
            {"type": "notes/change", "id": note_id, "fields": {"text": "alice text"}}
        )
        alice.add({"type": "notes/change", "id": note_id, "fields": {"title": "alice title"}})
        await asyncio.wait_for(alice.flush(), STEP_TIMEOUT)
        assert int(text_id.split(" ")[0]) > bob_times["text"]  # alice's text is the newer
        await bob.tell("online")
        report = await bob.report()
        final = {**START, **from_alice, "color": "bob color"}
        await wait_for(
            lambda: fields_of(notes.value, note_id) == final, f"alice sees {final}: {notes.value}"
        )
    finally:
        if bob is not None:
            bob.kill()
        await alice.stop()

    assert report["errors"] == []
    assert report["text"] == {"ok": True} and report["color"] == {"ok": True}
    assert report["bobValue"] == {"id": note_id, **final}
    assert report["carolLoad"] == {"ok": True, "value": {"id": note_id, **final}}
    # bob's older text did reach alice, and lost there
    texts = [a for a, _ in notes.actions if a.get("fields", {}).get("text") == "bob offline text"]
    assert texts and fields_of(notes.value, note_id) == final
