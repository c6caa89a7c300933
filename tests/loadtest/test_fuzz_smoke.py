"""Smoke test of the socket-level fuzzer (``loadtest/fuzz.py``): 2,000 hostile inputs over both
codecs and raw TCP against a real server; no traceback, the server alive, the control clients
answered throughout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def fuzz(*args: str) -> tuple[int, dict[str, Any], str]:
    command = [sys.executable, "-m", "loadtest.fuzz", *args, "--json"]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=110, check=False
    )
    lines = [line for line in done.stdout.split("\n") if line.startswith("{")]
    assert lines, done.stdout[-3000:] + done.stderr[-3000:]
    return done.returncode, json.loads(lines[-1]), done.stderr


def test_fuzz_keeps_the_server_alive_correct_and_answering() -> None:
    code, output, stderr = fuzz("--inputs", "2000", "--seed", "1", "--max-seconds", "60")
    result = output["result"]
    samples = [
        {"log": s.get("log"), "traceback": s.get("traceback", "")[-1500:]}
        for s in result["traceback_samples"]
    ]
    assert result["tracebacks"] == 0, json.dumps(
        {"kinds": result["traceback_kinds"], "samples": samples}, indent=1, ensure_ascii=False
    )
    assert result["server_alive"] and result["server_healthy"]
    assert result["server_exit_code"] == 0
    for name in ("a", "b"):
        control = result["control"][name]
        assert control["sent"] > 0
        assert control["missing_processed"] == 0, control
        assert control["missing_synced"] == 0, control
        assert control["peer_missing"] == 0, control
        assert control["undone"] == 0, control
        assert control["closed"] is None, control
    # every fuzz action whose `sync` was acknowledged got its processed/undo
    assert result["answers"]["unanswered_batches"] == 0, result["answers"]
    assert result["ok"], result["problems"]
    assert code == 0, stderr[-3000:]
    # it did what it says: (nearly) all inputs sent, over both codecs and raw TCP
    assert result["inputs"] >= 1900
    kinds = result["outcomes"]
    assert any(kind.startswith("frame/") for kind in kinds)
    assert any(kind.startswith("pre/") for kind in kinds)
    assert sum(kinds["sync/valid"].values()) > 0
    assert output["parameters"]["codec"] == "both"
    assert output["command"].startswith("python -m loadtest.fuzz --inputs 2000")
