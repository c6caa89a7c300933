"""python -m loadtest.microbench runs against this checkout and prints both figures."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from loadtest.microbench import SCRIPT
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


def test_the_fixed_count_mode_delivers_every_offer_in_a_fan_out() -> None:
    """What ``--callgrind`` runs under valgrind (here without it): each of 300 offers, 100
    connections per entry, is a live delivery."""
    env = {**os.environ, "MICROBENCH_CALLS": "300,50,300", "MICROBENCH_FANOUT": "100"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "300 offers delivered 300, 50 synced frames" in done.stdout, done.stdout + done.stderr
