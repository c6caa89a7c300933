"""Smoke test of the Python client benchmark (``loadtest/client_bench.py``) at a tiny size
against real ``logsync serve`` processes: every transport and codec sends and receives every
action. No timing thresholds."""

from __future__ import annotations

import json
import subprocess
import sys

from loadtest.servers import ROOT


def test_every_action_is_sent_and_received_on_each_transport() -> None:
    command = [sys.executable, "-m", "loadtest.client_bench", "--actions", "60", "--json"]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    output = json.loads(done.stdout)
    assert output["command"] == "python -m loadtest.client_bench --actions 60 --json"
    assert output["machine"]["nproc"] and output["date"]
    runs = {(r["transport"], r["codec"]): r for r in output["results"]}
    assert set(runs) == {(t, c) for t in ("ws", "http") for c in ("json", "msgpack")}
    for run in runs.values():
        assert run["actions"] == run["received"] == 60
        assert run["sent_per_s"] > 0 and run["received_per_s"] > 0
        assert run["client_cpu_us_per_action"] > 0
