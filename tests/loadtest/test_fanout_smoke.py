"""Smoke test of the fan-out benchmark: it runs end to end and nothing is lost. No timing thresholds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def bench(*args: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "loadtest.fanout", *args, "--duration", "2", "--json"]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    output: dict[str, Any] = json.loads(done.stdout)
    return output


@pytest.mark.parametrize(
    "args",
    [
        ("--nodes", "1", "--store", "sqlite", "--channels", "2"),
        ("--nodes", "3", "--channels", "2", "--codec", "msgpack", "--rate", "100"),
    ],
    ids=["1-node-sqlite-saturating", "3-nodes-redis-fixed-rate"],
)
def test_fanout_delivers_every_accepted_action_to_every_subscriber(args: tuple[str, ...]) -> None:
    output = bench(*args, "--connections", "20", "--publishers", "2")
    result = output["result"]
    per_channel = {int(c): n for c, n in result["subscribers_per_channel"].items()}
    assert sum(per_channel.values()) == 20
    accepted = {int(c): n for c, n in result["accepted_per_channel"].items()}
    assert sum(accepted.values()) == result["accepted"] > 0
    expected = sum(accepted[c] * per_channel[c] for c in per_channel)
    assert result["deliveries"] == result["expected_deliveries"] == expected
    assert result["lost"] == 0
    assert result["duplicates"] == 0
    assert result["unacknowledged"] == 0
    assert result["refused"] == 0
    if len(set(per_channel.values())) == 1:  # an even split: every action reached n subscribers
        assert result["deliveries"] == result["accepted"] * per_channel[0]
    for key in ("deliveries_per_s", "latency_p50_ms", "latency_p99_ms", "server_cpu_s"):
        assert result[key] > 0
    assert output["command"].startswith("python -m loadtest.fanout --nodes")
