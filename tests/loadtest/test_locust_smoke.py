"""Smoke test of the locust users (``loadtest/locustfile.py``): locust runs headless with a few
users for a few seconds against a real server on 127.0.0.1, stops by itself, and its CSV shows
that each scenario recorded what it checks, with no failure. No timing thresholds."""

from __future__ import annotations

import csv
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    # a live window of 2 unacknowledged `sync`: the slow consumer falls behind within its hold,
    # since each of the chat's 3 senders sends at least once in any 2 s (a window of 5 was a
    # coin toss: 2-3 s of hold saw 5-7 messages)
    node = ServerProcess(
        "tests.interop.app:app",
        "--log-level",
        "warning",
        store="memory://",
        env={"LOGSYNC_LIVE_WINDOW": "2"},
    )
    yield node
    node.stop()


def run_locust(
    server: ServerProcess, out: Path, users: int, seconds: int, *args: str
) -> dict[str, dict[str, str]]:
    """Run locust to its end; the rows of its ``_stats.csv`` by entry name. Fails on any failure
    or exception locust recorded."""
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "--run-time",
        f"{seconds}s",
        "--host",
        server.url,
        "--csv",
        str(out / "run"),
        "--only-summary",
        "--loglevel",
        "WARNING",
        *args,
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    report = done.stdout[-4000:] + done.stderr[-4000:]
    assert done.returncode == 0, report
    with open(out / "run_stats.csv", newline="") as file:
        rows = {row["Name"]: row for row in csv.DictReader(file)}
    for name in ("run_failures.csv", "run_exceptions.csv"):
        with open(out / name, newline="") as file:
            assert list(csv.DictReader(file)) == [], report
    for name, row in rows.items():
        assert row["Failure Count"] == "0", (name, report)
    return rows


def count(rows: dict[str, dict[str, str]], name: str) -> int:
    return int(rows[name]["Request Count"]) if name in rows else 0


def fell_behind(server: ServerProcess) -> int:
    with urllib.request.urlopen(server.http_url + "metrics", timeout=10) as response:
        text = response.read().decode()
    line = next(x for x in text.splitlines() if x.startswith("logsync_fell_behind_total "))
    return int(float(line.split()[1]))


def test_steady_chat(server: ServerProcess, tmp_path: Path) -> None:
    rows = run_locust(server, tmp_path, 4, 5, "--chats", "1", "ChatUser")
    assert count(rows, "handshake") == 4
    assert count(rows, "subscribe → processed") == 4
    assert count(rows, "send → synced") > 0
    # four users in one chat: each message reaches the three others
    assert count(rows, "chat delivery") > 0


@pytest.mark.parametrize("jitter_ms", ["0", "500"], ids=["together", "jittered"])
def test_reconnect_storm_every_user_catches_up_exactly_once(
    server: ServerProcess, tmp_path: Path, jitter_ms: str
) -> None:
    rows = run_locust(
        server,
        tmp_path,
        5,
        10,
        "--storm-period",
        "1",
        "--storm-cycles",
        "2",
        "--storm-jitter-ms",
        jitter_ms,
        "StormUser",
    )
    # each of the 5 users went offline twice, came back and got exactly what it missed
    assert count(rows, "reconnect → caught up") == 10
    assert count(rows, "storm user: every cycle caught up") == 5
    assert count(rows, "handshake") == 15


def test_slow_consumer_falls_behind_and_catches_up(server: ServerProcess, tmp_path: Path) -> None:
    rows = run_locust(
        server,
        tmp_path,
        4,
        8,
        "--chats",
        "1",
        "--slow-hold-min",
        "2",
        "--slow-hold-max",
        "3",
        "ChatUser",
        "SlowConsumer",
    )
    assert count(rows, "handshake") == 4
    assert count(rows, "chat delivery") > 0
    # it held back `synced` past the live window, was served from the log, and got every
    # message its chat's senders had acknowledged, once and in order
    assert count(rows, "slow consumer → caught up") == 1
    assert fell_behind(server) > 0
