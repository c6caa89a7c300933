"""The two examples of clients/python/README.md, taken from the README as written, run as their
own processes against a real ``logsync serve`` with the demo app: the chat bot answers a ping
(WebSocket), the mirror copies a channel into its SQLite table (HTTP pull)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from logsync_client import Client
from tests.support.server import ROOT, ServerProcess

pytestmark = pytest.mark.timeout(60)

README = ROOT / "clients" / "python" / "README.md"


def example(name: str, directory: Path) -> Path:
    """The README's ```python block that starts with ``# example: <name>``, as a file."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (code,) = [b for b in blocks if b.startswith(f"# example: {name}")]
    path = directory / name
    path.write_text(code)
    return path


@pytest.fixture(scope="module")
def demo() -> Iterator[ServerProcess]:
    server = ServerProcess(None)  # the built-in demo app
    try:
        yield server
    finally:
        server.stop()


def start(script: Path, *args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=script.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    timer = threading.Timer(30, process.kill)  # a read of its first line always ends
    timer.start()
    try:
        ready = process.stdout.readline()
    finally:
        timer.cancel()
    assert ready.endswith("ready\n"), ready + process.stdout.read()
    return process


async def test_chat_bot_answers_ping(demo: ServerProcess, tmp_path: Path) -> None:
    bot = start(example("chat_bot.py", tmp_path), demo.url, "lobby", "--replies", "1")
    try:
        async with Client(demo.url, "alice", "token") as alice:
            pongs: list[str] = []
            heard = asyncio.Event()

            def on_message(action: dict[str, str], meta: dict[str, object]) -> None:
                pongs.append(action["text"])
                heard.set()

            alice.on("chat/message", on_message)
            await asyncio.wait_for(alice.subscribe("chat/lobby"), 10)
            await alice.sync({"type": "chat/message", "room": "lobby", "text": "ping"})
            await asyncio.wait_for(heard.wait(), 10)
            assert pongs == ["pong"]
        assert await asyncio.to_thread(bot.wait, 20) == 0
    finally:
        bot.kill()
        bot.wait()


async def test_mirror_copies_the_channel_into_sqlite(demo: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "mirror.db"
    mirror = start(example("mirror.py", tmp_path), demo.http_url, "news", str(path), "--until", "3")
    try:
        async with Client(demo.url, "editor", "token") as editor:
            for text in ("one", "two", "three"):
                await editor.sync({"type": "chat/message", "room": "news", "text": text})
        assert await asyncio.to_thread(mirror.wait, 30) == 0
    finally:
        mirror.kill()
        mirror.wait()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT room, text FROM messages ORDER BY time, id").fetchall()
    assert rows == [("news", "one"), ("news", "two"), ("news", "three")]
