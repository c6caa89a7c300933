"""Smoke test of the HTTP pull benchmark (``loadtest/pull.py``) at tiny sizes against a real
``logsync serve``: every page request answered 200 with the full page, every long-poll counted
waiting and woken by the one action, no errors. No timing thresholds."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from loadtest.servers import ROOT


def bench(*args: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "loadtest.pull", *args, "--json"]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    output: dict[str, Any] = json.loads(done.stdout)
    return output


@pytest.mark.parametrize(
    "args",
    [
        ("--codec", "json", "--store", "sqlite"),
        ("--codec", "msgpack", "--store", "memory", "--procs", "2", "--handshake-rate", "0"),
    ],
    ids=["json-sqlite", "msgpack-memory-2-procs-default-admission"],
)
def test_every_page_is_full_and_every_waiter_is_woken(args: tuple[str, ...]) -> None:
    output = bench(
        *args,
        *("--clients", "4", "--actions", "250", "--limit", "100", "--duration", "1.5"),
        *("--waiters", "60"),
    )
    assert output["command"].startswith("python -m loadtest.pull --codec")
    assert output["machine"]["nproc"] and output["source"]["root"] and output["date"]

    pages = output["pages"]["result"]
    assert pages["clients"] == 4
    assert pages["requests"] > 4  # each client pulled more than once
    assert pages["full_pages"] == pages["requests"]
    assert pages["not_full"] == 0 and pages["errors"] == 0, pages["problems"]
    assert pages["actions_per_s"] == pytest.approx(pages["requests_per_s"] * 100)
    assert pages["latency_p99_ms"] >= pages["latency_p50_ms"] > 0
    assert pages["response_bytes"] > 100 * 20  # a hundred actions in every answer
    assert pages["server_cpu_s"] > 0

    waiters = output["waiters"]["result"]
    assert waiters["waiters"] == 60
    assert waiters["waiting_seen"] == 60  # the server's logsync_pull_waiting gauge
    assert waiters["answered_before_wake"] == 0
    assert waiters["woken"] == 60 and waiters["not_woken"] == 0, waiters["problems"]
    assert waiters["errors"] == 0
    assert waiters["waiting_after"] == 0  # the gauge is back to 0
    assert waiters["rss_waiting_mib"] > 0 and waiters["rss_connected_mib"] > 0
    assert waiters["kib_per_waiter"] == pytest.approx(
        waiters["kib_per_connection"] + waiters["kib_per_request"]
    )
    assert waiters["wake_all_s"] > 0 and waiters["wake_p99_ms"] >= waiters["wake_p50_ms"]


def test_the_report_compares_median_of_repeated_runs() -> None:
    output = bench("--scenario", "waiters", "--waiters", "20", "--repeat", "2", "--store", "memory")
    assert "pages" not in output
    part = output["waiters"]
    assert len(part["runs"]) == 2
    assert part["median"]["woken"] == 20 and part["median"]["not_woken"] == 0
    assert all(run["woken"] == 20 for run in part["runs"])
