"""A short inbound flood (python -m loadtest.flood): memory per action stays small."""

from __future__ import annotations

import json
import subprocess
import sys

from loadtest.servers import ROOT


def test_a_short_flood_keeps_memory_flat() -> None:
    """Bound: from the first sample (2 s in) to the last, under 2 KB of RSS per appended action
    (the uvloop held-messages leak cost ~5 KB; bounded memory costs ~0.1 KB of store cache)."""
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.flood", "--seconds", "7", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    first, last = result["samples"][0], result["samples"][-1]
    more = last["appended"] - first["appended"]
    assert more > 5000, result  # the flood really ran
    grown = (last["rss_mib"] - first["rss_mib"]) * 1024 * 1024
    assert grown / more < 2000, result
