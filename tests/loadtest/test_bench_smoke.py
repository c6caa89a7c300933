"""Smoke tests of the benchmark runner: pointed at a running server by URL every scenario runs
against it (fan-outs from the Node generator), nothing is lost or duplicated, and the storm is
drawn; the Python generator still runs; ``--quick --target both`` measures logsync and
@logux/server under the Node generator. No timing thresholds."""

from __future__ import annotations

import json
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
    # the fan-outs came from Node processes, not this one: its CPU is not in the figure
    assert all(row[f"{key}_gen_cores"] >= 0 for key in ("fan", "wide", "note", "rate"))


def test_the_python_generator_still_measures() -> None:
    server = ServerProcess("tests.interop.app:app")
    try:
        bench.URL_PIDS[server.url] = server.process.pid
        tiny = bench.Sizes(20, 2, 1.0, 20.0, 10, 10, 2)
        row = bench.one_round(server.url, tiny, only=["fanout", "rate"], generator="python")
    finally:
        server.stop()
    assert row["errors"] == 0, row
    assert row["fan_deliveries_per_s"] > 0 and row["rate_deliveries_per_s"] > 0
    assert row["rate_p50_ms"] > 0 and row["rate_p99_ms"] >= row["rate_p50_ms"]
    assert row["fan_gen_cores"] > 0  # this process was the generator


def test_node_generator_quick_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    """Both servers, fresh per scenario, the quick wide fan-outs (200 subscribers, 10
    publishers with 50 in flight) and the fixed rate, from two Node generator processes."""
    code = bench.main(
        ["--quick", "--target", "both", "--only", "wide,rate", "--procs", "2", "--json"]
    )
    output = json.loads(capsys.readouterr().out)
    assert code == 0, output["median"]
    assert output["generator"] == {"kind": "node", "procs": 2}
    for target in ("logsync", "logux"):
        row = output["runs"][target][0]
        assert row["errors"] == 0, (target, row)
        for key in ("wide", "note"):
            assert row[f"{key}_deliveries_per_s"] > 0 and row[f"{key}_cpu_us"] > 0
            assert row[f"{key}_gen_cores"] > 0
        assert row["rate_deliveries_per_s"] > 0 and row["rate_gen_cores"] > 0
        assert row["rate_cpu_us"] > 0
        assert 0 < row["rate_p50_ms"] <= row["rate_p99_ms"]
        assert "fan_deliveries_per_s" not in row and "handshakes_per_s" not in row


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


def test_logsync_store_memory_starts_logsync_on_the_memory_log(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started: list[str] = []
    start = bench.start

    def recorded(target: str, store: str = "sqlite") -> bench.Servers:
        servers = start(target, store)
        started.append(servers.store_url)
        return servers

    monkeypatch.setattr(bench, "start", recorded)
    monkeypatch.setattr(bench, "QUICK", bench.Sizes(20, 2, 1.0, 20.0, 50, 10, 2))
    args = ["--quick", "--only", "handshakes", "--logsync-store", "memory", "--json"]
    code = bench.main(args)
    output = json.loads(capsys.readouterr().out)
    assert code == 0, output["median"]
    assert output["logsync_store"] == "memory"
    assert started == ["memory://"]
    assert output["runs"]["logsync"][0]["handshakes_per_s"] > 0
