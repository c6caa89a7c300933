"""Smoke test of the reconnect storm: every client comes back, refused handshakes retry and get in,
and every action is delivered exactly once and in order. No timing thresholds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def storm(*args: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "loadtest.storm", *args, "--timeout", "60", "--json"]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=110, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    output: dict[str, Any] = json.loads(done.stdout)
    return output


def test_storm_with_refusals_delivers_every_missed_action_once_and_in_order() -> None:
    # 100 clients at 40 handshakes/s with room for 10 waiting: most are refused at first and
    # must come back after the server's retry hint.
    output = storm(
        "--clients",
        "100",
        "--missed",
        "10",
        "--handshake-rate",
        "40",
        "--handshake-burst",
        "10",
        "--handshake-queue",
        "10",
        "--procs",
        "2",
    )
    result = output["result"]
    assert result["ok"], result["problems"]
    assert result["caught_up"] == 100
    assert result["failed_clients"] == 0
    assert result["lost"] == 0
    assert result["duplicates"] == 0
    assert result["out_of_order_clients"] == 0
    assert result["unexpected"] == 0
    # refused clients were told when to come back, retried, and got in
    assert result["retries"] > 0
    assert result["clients_retried"] > 0
    assert result["refused_without_hint"] == 0
    # own actions: acknowledged, and in the log exactly once
    assert result["own"] == 2
    assert result["own_acknowledged_clients"] == 100
    assert result["own_expected"] == result["own_in_log"] == 200
    assert result["own_missing_from_log"] == 0
    assert result["own_duplicated_in_log"] == 0
    assert result["live_messages"] >= 0
    assert result["generator_procs"] == 2  # the clients were split over two processes
    assert output["command"].startswith("python -m loadtest.storm --clients 100")
