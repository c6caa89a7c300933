"""Smoke test of the benchmark runner pointed at a running server by URL: every scenario runs
against it, nothing is lost or duplicated, and the storm is drawn. No timing thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest import bench
from tests.support.server import ServerProcess


def test_bench_measures_a_running_server_by_url(tmp_path: Path) -> None:
    server = ServerProcess("tests.interop.app:app")
    try:
        bench.URL_PIDS[server.url] = server.process.pid
        tiny = bench.Sizes(
            subscribers=20,
            publishers=2,
            duration=1.0,
            rate=20.0,
            idle=20,
            storm_clients=20,
            storm_missed=5,
        )
        png = tmp_path / "storm.png"
        row = bench.one_round(server.url, tiny, str(png))
    finally:
        server.stop()
    assert row["errors"] == 0, row
    # (CPU is read in clock ticks of 10 ms: too coarse for 20 handshakes to be sure to show)
    assert row["fan_deliveries_per_s"] > 0 and row["handshakes_per_s"] > 0
    assert row["wide_deliveries_per_s"] > 0 and row["note_deliveries_per_s"] > 0
    assert row["cpu_us_per_connection"] >= 0
    assert row["storm_all_s"] > 0 and row["storm_rss_ratio"] >= 1.0
    assert png.stat().st_size > 1000


def test_only_runs_the_scenarios_asked_for() -> None:
    server = ServerProcess("tests.interop.app:app")
    try:
        bench.URL_PIDS[server.url] = server.process.pid
        tiny = bench.Sizes(20, 2, 1.0, 20.0, 10, 10, 2)
        row = bench.one_round(server.url, tiny, only=["handshakes"])
    finally:
        server.stop()
    assert row["handshakes_per_s"] > 0 and row["errors"] == 0
    assert not {"fan_deliveries_per_s", "rate_p50_ms", "storm_all_s"} & set(row)


def test_an_unknown_scenario_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--only", "fanout,nonsense"])
    assert exit_info.value.code == 2
    assert "unknown scenario nonsense" in capsys.readouterr().err
