"""`logsync serve` settings: defaults, TOML, environment, flags (in rising priority), what each
refuses — and the app it loads and `logsync log`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from logsync.cli import build_parser, load_app, load_settings
from logsync.demo import app as demo_app
from logsync.settings import LIMITS, Settings
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


def test_precedence_default_toml_env_flag(tmp_path: Path) -> None:
    """Each layer wins over the ones before it, setting by setting; LOGSYNC_CONFIG names the file."""
    config = tmp_path / "logsync.toml"
    config.write_text('port = 1000\nlive_window = 10\nlog_format = "json"\nhandshake_rate = 2.5\n')
    env = {"LOGSYNC_CONFIG": str(config), "LOGSYNC_LIVE_WINDOW": "20", "logsync_port": "2000"}
    settings = settings_for(["--port", "3000"], env)
    assert settings.port == 3000  # flag over env (any case) over file
    assert settings.live_window == 20  # env over file
    assert (settings.log_format, settings.handshake_rate) == ("json", 2.5)  # file over default
    assert settings.replay_window == 4  # default
    other = tmp_path / "other.toml"
    other.write_text("port = 4000\n")
    assert settings_for(["--config", str(other)], {"LOGSYNC_CONFIG": str(config)}).port == 4000
    # Every setting has a flag (--its-name); --ping and --timeout are kept as short forms.
    settings = settings_for(["--ping", "5", "--timeout-ms", "6", "--takeover-ms", "7"])
    assert (settings.ping_ms, settings.timeout_ms, settings.takeover_ms) == (5, 6, 7)


def test_a_bad_number_names_the_setting_wherever_it_came_from(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"setting live_window must be a whole number, not 'x' "):
        settings_for(["--live-window", "x"])
    with pytest.raises(
        SystemExit, match=r"live_window must be a whole number.*LOGSYNC_LIVE_WINDOW"
    ):
        settings_for([], {"LOGSYNC_LIVE_WINDOW": "ten"})
    config = tmp_path / "bad.toml"
    config.write_text('handshake_rate = "fast"\n')
    with pytest.raises(SystemExit, match=r"handshake_rate must be a number.*bad\.toml") as raised:
        settings_for(["--config", str(config)])
    assert "\n" not in str(raised.value.code)
    config.write_text("port = 1.5\n")  # a TOML float is not a whole number
    with pytest.raises(SystemExit, match=r"port must be a whole number, not 1\.5 "):
        settings_for(["--config", str(config)])
    with pytest.raises(SystemExit, match="log_format must be text or json, not 'xml'"):
        settings_for([], {"LOGSYNC_LOG_FORMAT": "xml"})


@pytest.mark.parametrize("name", LIMITS)
def test_a_bound_must_be_positive(name: str) -> None:
    flag = "--" + name.replace("_", "-")
    with pytest.raises(SystemExit, match=f"setting {name} must be positive, not '0'"):
        settings_for([flag, "0"])
    with pytest.raises(SystemExit, match=f"setting {name} must be positive, not '-1'"):
        settings_for([], {"LOGSYNC_" + name.upper(): "-1"})
    zero: dict[str, Any] = {name: 0}
    with pytest.raises(ValidationError):
        Settings(**zero)


def test_zero_still_means_off_where_documented() -> None:
    settings = settings_for(["--history-max-age-ms", "0", "--history-keep-last", "0"])
    assert (settings.history_max_age_ms, settings.history_keep_last) == (0, 0)
    with pytest.raises(SystemExit, match="history_keep_last must not be negative"):
        settings_for(["--history-keep-last", "-1"])


def test_an_unknown_toml_key_or_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "logsync.toml"
    config.write_text("port = 1\n[server]\nport = 2\n")
    with pytest.raises(SystemExit, match=r"unknown setting 'server' in .*logsync\.toml"):
        settings_for(["--config", str(config)])
    config.write_text("port = \n")
    with pytest.raises(SystemExit, match=r"config file .*logsync\.toml: "):
        settings_for(["--config", str(config)])
    with pytest.raises(SystemExit, match=r"config file .*missing\.toml not found"):
        settings_for([], {"LOGSYNC_CONFIG": str(tmp_path / "missing.toml")})


def test_unrelated_logsync_env_is_ignored() -> None:
    env = {
        "LOGSYNC_INTEROP_TARGET": "reference",
        "LOGSYNC_FUZZ_EXAMPLES": "100000",
        "LOGSYNC_TEST_BLOCK": "1",
        "LOGSYNC_PORT": "2000",
    }
    assert settings_for([], env).port == 2000


def test_settings_object_is_plain() -> None:
    """In code, ``Settings(...)`` is the defaults and the values given, never the environment."""
    import os

    os.environ["LOGSYNC_PORT"] = "9"
    try:
        assert Settings().port == 31337
    finally:
        del os.environ["LOGSYNC_PORT"]
    settings = Settings(log_value_chars=50, env="development")
    assert (settings.log_value_chars, settings.development) == (50, True)
    assert Settings().inbound_max_actions == Settings.model_fields["inbound_max_actions"].default
    with pytest.raises(ValidationError):
        Settings(colour=1)
    with pytest.raises(ValidationError):
        Settings(env="staging")
