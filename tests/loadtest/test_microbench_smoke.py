"""python -m loadtest.microbench runs against this checkout and prints both figures."""

from __future__ import annotations

import re
import subprocess
import sys

from loadtest.servers import ROOT


def test_the_microbenchmark_measures_both_paths() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.microbench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = re.search(r"offer ([\d.]+) us\s+synced frame ([\d.]+) us", done.stdout)
    assert found, done.stdout + done.stderr
    offer, synced = map(float, found.groups())
    # sanity, not a target: each is one Python call path (tens of µs at most)
    assert 0 < offer < 1000 and 0 < synced < 1000
