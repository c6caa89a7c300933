"""python -m loadtest.wakeups, small: every registered client is woken exactly once, through a
local webhook sink and a local Web Push sink, and the figures it prints are sane."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from loadtest.servers import ROOT


@pytest.mark.parametrize("kind", ["webhook", "webpush"])
def test_the_wakeup_benchmark_wakes_every_client_once(kind: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.wakeups", "--kind", kind, "--clients", "150"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["kind"] == kind
    assert result["received"] == result["sent"] == 150
    assert result["failed"] == result["dropped"] == 0
    assert result["per_second"] > 0 and result["cpu_us_per_wakeup"] > 0
    assert f"{kind} (sqlite): 150 wake-ups in " in done.stdout
