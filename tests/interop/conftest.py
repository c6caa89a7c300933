"""Fixtures for the interop suite: real @logux JS clients driven from Node.

Target selection (env ``LOGSYNC_INTEROP_TARGET``):

* unset / ``logsync`` - the scenarios run against our server, through the
  ``logsync_url`` fixture from ``tests/conftest.py``;
* ``reference`` - they run against @logux/server 0.14.0
  (``tests/interop/js/reference-server.mjs``), to validate the scripts.

Node.js is required: without ``node``/``npm`` the tests fail, they never skip.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).parent / "js"
SCRIPT_TIMEOUT = 30.0
NPM_TIMEOUT = 110.0  # below the pytest-timeout of 120 s
REFERENCE_START_TIMEOUT = 15.0


def _interop_target() -> str:
    target = os.environ.get("LOGSYNC_INTEROP_TARGET", "logsync").strip() or "logsync"
    if target not in ("logsync", "reference"):
        raise pytest.UsageError(
            f"LOGSYNC_INTEROP_TARGET must be 'logsync' or 'reference', not {target!r}"
        )
    return target


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is required for the interop tests (Node.js 20+) but is not on PATH")
    return path


@pytest.fixture(scope="session")
def node_bin() -> str:
    return _require("node")


@pytest.fixture(scope="session")
def js_deps(node_bin: str) -> Path:
    """Install the pinned npm packages (``npm ci``) when node_modules is absent."""
    marker = JS_DIR / "node_modules" / "@logux" / "client" / "package.json"
    if not marker.exists():
        npm = _require("npm")
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
            check=False,
        )
        if proc.returncode != 0 or not marker.exists():
            pytest.fail(
                f"npm ci failed in {JS_DIR} (exit {proc.returncode}):\n"
                f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
    return JS_DIR


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def reference_url(
    node_bin: str, js_deps: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Start @logux/server 0.14.0 with the test app; yield ``ws://127.0.0.1:PORT/``."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("reference-server") / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [node_bin, str(JS_DIR / "reference-server.mjs"), str(port)],
            cwd=JS_DIR,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + REFERENCE_START_TIMEOUT
        line = b""
        while not line.startswith(b"listening"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or proc.poll() is not None:
                pytest.fail(
                    "reference server did not start "
                    f"(exit {proc.poll()}):\n{log_path.read_text(errors='replace')[-4000:]}"
                )
            ready, _, _ = select.select([proc.stdout], [], [], remaining)
            if ready:
                line = proc.stdout.readline()
                if not line and proc.poll() is not None:
                    continue
        yield f"ws://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="session")
def interop_target() -> str:
    """``'logsync'`` (default) or ``'reference'``, from ``LOGSYNC_INTEROP_TARGET``."""
    return _interop_target()


@pytest.fixture
def interop_url(request: pytest.FixtureRequest, interop_target: str) -> str:
    """URL of the server under test, chosen by ``LOGSYNC_INTEROP_TARGET``."""
    if interop_target == "reference":
        return str(request.getfixturevalue("reference_url"))
    return str(request.getfixturevalue("logsync_url"))


def run_script(node_bin: str, name: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run ``tests/interop/js/<name>.mjs ARGS``; return its last stdout line as JSON (the test
    fails, with the script's output, if it hangs, exits non-zero or prints no JSON)."""
    script = JS_DIR / f"{name}.mjs"
    assert script.exists(), script
    try:
        proc = subprocess.run(
            [node_bin, str(script), *args],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"{name}.mjs {' '.join(args)} hung for {SCRIPT_TIMEOUT} s\n"
            f"stdout: {e.stdout!r}\nstderr: {e.stderr!r}"
        )
    if proc.returncode != 0:
        pytest.fail(
            f"{name}.mjs {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        pytest.fail(f"{name}.mjs printed nothing\nstderr:\n{proc.stderr[-4000:]}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        pytest.fail(f"{name}.mjs: last line is not JSON:\n{proc.stdout[-4000:]}")


@pytest.fixture
def run_scenario(node_bin: str, js_deps: Path, interop_url: str) -> Callable[[str], Any]:
    """Run ``tests/interop/js/<name>.mjs <url>``; return its last stdout line as JSON."""

    def run(name: str) -> Any:
        return run_script(node_bin, name, interop_url)

    return run
