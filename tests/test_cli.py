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
