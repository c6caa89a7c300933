"""python -m loadtest.microbench runs against this checkout and prints both figures."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from loadtest.microbench import HANDSHAKE_SCRIPT, SCRIPT, WRITER_SCRIPT
from loadtest.servers import ROOT


def run(*args: str, **env: str) -> str:
    """The microbenchmark's command (or one of its scripts, ``-c``) with ``env`` added: its
    stdout and stderr."""
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout + done.stderr


def test_the_microbenchmark_measures_both_paths() -> None:
    output = run("-m", "loadtest.microbench")
    found = re.search(r"offer ([\d.]+) us\s+synced frame ([\d.]+) us", output)
    assert found, output
    offer, synced = map(float, found.groups())
    # sanity, not a target: each is one Python call path (tens of µs at most)
    assert 0 < offer < 1000 and 0 < synced < 1000


def test_the_fixed_count_mode_delivers_every_offer_in_a_fan_out() -> None:
    """What ``--callgrind`` runs under valgrind (here without it): each of 300 offers, 100
    connections per entry, is a live delivery."""
    output = run("-c", SCRIPT, MICROBENCH_CALLS="300,50,300", MICROBENCH_FANOUT="100")
    assert "300 offers delivered 300, 50 synced frames" in output, output


def test_the_fixed_count_mode_sends_a_turns_offers_together() -> None:
    """``--batch 4``: four entries per connection per loop turn, all delivered."""
    output = run(
        "-c",
        SCRIPT,
        MICROBENCH_CALLS="400,0,400",
        MICROBENCH_FANOUT="100",
        MICROBENCH_BATCH="4",
    )
    assert "400 offers delivered 400, 0 synced frames" in output, output


def test_the_writer_mode_commits_each_batch_once() -> None:
    """What ``--writer 20`` runs under valgrind: 3 batches of 20 appends, 3 commits."""
    output = run("-c", WRITER_SCRIPT, MICROBENCH_WRITER="3,20")
    assert "3 commits of 20 appends" in output, output


def test_the_handshake_mode_registers_every_client() -> None:
    """What ``--handshakes 30 --callgrind`` runs under valgrind: 30 upgrades and ``connect``s
    on a real node (SQLite), each awaited until its ``connected``."""
    output = run("-c", HANDSHAKE_SCRIPT, MICROBENCH_HANDSHAKES="30,sqlite,0")
    assert "30 handshakes, 30 registered" in output, output


def test_the_handshake_memory_mode_reports_bytes_per_idle_connection() -> None:
    output = run("-m", "loadtest.microbench", "--handshakes", "50", "--memory", "3")
    found = re.search(r"idle connection (\d+) bytes", output)
    assert found, output
    # sanity, not a target: a connection holds some hundreds of bytes, less than 64 KiB
    assert 100 < int(found.group(1)) < 65536, output
    assert "50 handshakes, 50 registered" in output, output
