"""The JS pull client's own tests (``clients/js/test``, Node's test runner) as one pytest test.

They start real ``logsync serve`` processes of ``clients/js/test/app.py`` with this interpreter
(``LOGSYNC_PYTHON``); Node.js 20+ is required (``scripts/test`` installs it): without ``node`` the
test fails, it never skips.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JS_CLIENT = ROOT / "clients" / "js"
NODE_TIMEOUT = 110.0  # below the pytest-timeout of 120 s


def test_js_pull_client() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (Node.js 20+) is required for the JS client's tests but is not on PATH")
    try:
        proc = subprocess.run(
            [node, "--test", "--test-reporter=tap", "--test-concurrency=5", "clients/js/test/"],
            cwd=ROOT,
            env={**os.environ, "LOGSYNC_PYTHON": sys.executable},
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        output = (error.stdout or b"").decode() if isinstance(error.stdout, bytes) else error.stdout
        pytest.fail(f"node --test took over {NODE_TIMEOUT} s:\n{(output or '')[-8000:]}")
    if proc.returncode != 0:
        pytest.fail(
            f"node --test clients/js/test/ failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-12000:]}\n{proc.stderr[-4000:]}"
        )
    counts = dict(re.findall(r"^# (pass|fail|cancelled) (\d+)$", proc.stdout, re.MULTILINE))
    assert counts.get("fail") == "0" and counts.get("cancelled") == "0", proc.stdout[-4000:]
    assert int(counts.get("pass", "0")) > 0, proc.stdout[-4000:]
