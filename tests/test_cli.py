"""`logsync serve` settings: defaults, TOML, environment, flags — and the app it loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from logsync.cli import build_parser, load_app, load_settings
from logsync.demo import app as demo_app
from tests.interop.app import app as interop_app


def settings_for(argv: list[str], env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return load_settings(build_parser().parse_args(["serve", *argv]), env or {})


def test_defaults() -> None:
    settings = settings_for([])
    assert (settings.host, settings.port, settings.store, settings.env) == (
        "127.0.0.1",
        31337,
        "sqlite:///logsync.db",
        "production",
    )


def test_flags_beat_env_beat_file(tmp_path: Path) -> None:
    config = tmp_path / "logsync.toml"
    config.write_text('port = 1000\nping_ms = 5\nenv = "development"\n')
    settings = settings_for(["--config", str(config)])
    assert (settings.port, settings.ping_ms, settings.env) == (1000, 5, "development")
    settings = settings_for(["--config", str(config)], {"LOGSYNC_PORT": "2000"})
    assert (settings.port, settings.ping_ms) == (2000, 5)
    settings = settings_for(["--config", str(config), "--port", "3000"], {"LOGSYNC_PORT": "2000"})
    assert settings.port == 3000


def test_bad_values_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="port must be a whole number"):
        settings_for(["--port", "eighty"])
    with pytest.raises(SystemExit, match="env must be"):
        settings_for(["--env", "staging"])
    config = tmp_path / "bad.toml"
    config.write_text("colour = 1\n")
    with pytest.raises(SystemExit, match="unknown setting 'colour'"):
        settings_for(["--config", str(config)])


def test_load_app() -> None:
    assert load_app(None) is demo_app
    assert load_app("tests.interop.app:app") is interop_app
    assert load_app("tests.interop.app") is interop_app
    with pytest.raises(SystemExit, match="not a logsync App"):
        load_app("tests.interop.app:names")


async def _filled_store(url: str) -> None:
    from logsync.log import PROCESSED, NewEntry, open_store

    store = open_store(url)
    await store.append(
        [
            NewEntry(f"{n} a:b:c 0", n, {"type": "t", "n": n}, ["channel:x"], status=PROCESSED)
            for n in range(1, 31)
        ]
    )
    await store.close()


def test_log_stats_tail_and_trim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    import orjson

    from logsync.cli import main

    url = f"sqlite:///{tmp_path / 'log.db'}"
    asyncio.run(_filled_store(url))
    main(["log", "stats", "--store", url])
    assert "head 30\nentries 30\nids 30\nindexes 1" in capsys.readouterr().out
    main(["log", "tail", "channel:x", "-n", "3", "--store", url])
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["action"]["n"] for line in lines] == [28, 29, 30]
    assert lines[0]["status"] == "processed"
    main(["log", "trim", "--keep-last", "10", "--store", url])
    assert capsys.readouterr().out.startswith("removed ")
    main(["log", "tail", "channel:x", "-n", "100", "--store", url])
    assert len(capsys.readouterr().out.splitlines()) == 10
