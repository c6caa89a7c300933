"""The demo chat in a real browser (logsync issue 15): each user story of
``tests/browser/js/chat.mjs`` is one test, run by Node with playwright-core driving Debian's
``chromium`` (headless, no browser download) against a real ``logsync serve`` of the demo app on
a fresh SQLite file. The story asks this wrapper (``ASK stop`` / ``ASK start`` on its stdout) to
stop and start the server on the same port and store. Screenshots land in
``tests/browser/artifacts/``.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``) and ``npm ci`` in ``tests/browser/js``:
``scripts/test`` does both.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess

JS = Path(__file__).parent / "js"
ARTIFACTS = Path(__file__).parent / "artifacts"
#: seconds one story may take, its browser included
STORY_S = 90


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(None, store=f"sqlite:///{tmp_path}/chat.db")
    try:
        yield process
    finally:
        process.stop()


def run_story(story: str, server: ServerProcess) -> list[str]:
    """Run one story; answer its requests; return its output lines. Fails unless it passes."""
    assert shutil.which("node"), "node is needed (scripts/test installs it)"
    assert Path(os.environ.get("LOGSYNC_CHROMIUM", "/usr/bin/chromium")).exists(), (
        "chromium is needed: apt-get install chromium (scripts/test does)"
    )
    assert (JS / "node_modules" / "playwright-core").is_dir(), "run npm ci in tests/browser/js"
    port = int(server.http_url.rsplit(":", 1)[1].rstrip("/"))
    store = server.store
    child = subprocess.Popen(
        ["node", str(JS / "chat.mjs"), story, server.http_url.rstrip("/")],
        cwd=JS,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "LOGSYNC_ARTIFACTS": str(ARTIFACTS)},
    )
    assert child.stdout is not None and child.stdin is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    output: list[str] = []
    current = server
    deadline = time.monotonic() + STORY_S
    try:
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"story {story} took over {STORY_S} s:\n" + "\n".join(output)
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                break
            output.append(line)
            if line == "ASK stop":
                assert current.stop() == 0, "the server stops cleanly"
            elif line == "ASK start":
                current = ServerProcess(None, store=store, port=port)
                server.process = current.process  # the fixture stops whichever runs
            else:
                continue
            child.stdin.write("done\n")
            child.stdin.flush()
        code = child.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if current is not server:
            current.stop()
    assert code == 0 and output[-1:] == [f"PASS {story}"], "\n".join(output)
    return output


def test_opens_on_the_latest_messages_and_pages_older_ones_without_a_jump(
    server: ServerProcess,
) -> None:
    run_story("history", server)
    assert (ARTIFACTS / "history-older.png").stat().st_size > 0


def test_a_message_shows_at_once_and_reaches_the_other_user_live(server: ServerProcess) -> None:
    run_story("live", server)


def test_offline_messages_survive_a_reload_and_go_out_in_the_order_written(
    server: ServerProcess,
) -> None:
    run_story("offline", server)
    assert (ARTIFACTS / "offline-reloaded.png").stat().st_size > 0


def test_presence_and_a_direct_conversation(server: ServerProcess) -> None:
    run_story("presence", server)


def test_a_read_receipt_and_a_reaction_cross_over(server: ServerProcess) -> None:
    run_story("receipts", server)


def test_a_server_restart_in_the_middle_loses_nothing(server: ServerProcess) -> None:
    run_story("restart", server)


def test_two_tabs_of_one_browser_take_turns_holding_the_connection(
    server: ServerProcess,
) -> None:
    run_story("tabs", server)
