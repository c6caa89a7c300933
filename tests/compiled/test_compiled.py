"""The compiled hot path (``setup.py``, ``scripts/build_backend.py``, ``logsync.compiled``).

A wheel build of this checkout compiles every module of ``HOT_MODULES`` with mypyc (what
``pip install .`` and the Docker image do); those compiled modules then pass the unit suites of
the protocol, the engine and the WebSocket layer and the server suites of the compiled paths
(real sockets, real ``logsync serve`` processes importing the compiled build), with nothing of
this checkout's ``logsync`` on the path. The editable install the suite itself runs from stays
pure Python, so an edited ``.py`` is what runs.

Slow (a C build, then a few suites): about 3 minutes on a quiet 2-core machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from logsync.compiled import HOT_MODULES, compiled_modules
from tests.support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
# What the build reads: pyproject.toml's packages, the README (the readme field), the backend.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "scripts/build_backend.py")
PACKAGES = ("logsync", "clients/python/logsync_client")
# Run against the compiled build: in-process, every suite of the modules compiled (protocol,
# engine, websocket: seconds), and through real `logsync serve` processes the server suites of
# the paths they compile: a whole sync, live batches, catch-up, hostile frames and messages.
# (The rest of tests/server exercises the uncompiled stages and took minutes here.)
SUITES = (
    "tests/protocol",
    "tests/engine",
    "tests/websocket",
    "tests/server/test_flow.py",
    "tests/server/test_live_batch.py",
    "tests/server/test_catch_up.py",
    "tests/server/test_hostile.py",
    "tests/server/test_hostile_transport.py",
)
IGNORE = shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "node_modules")


def pip(*args: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


def copy_checkout(to: Path) -> Path:
    for name in SOURCES:
        (to / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, to / name)
    for name in PACKAGES:
        shutil.copytree(ROOT / name, to / name, ignore=IGNORE)
    return to


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This checkout built as a wheel with LOGSYNC_COMPILE=1 (compile or fail) and unpacked: the
    directory to put first on PYTHONPATH."""
    tmp = tmp_path_factory.mktemp("compiled")
    source = copy_checkout(tmp / "source")
    env = {**os.environ, "LOGSYNC_COMPILE": "1"}
    pip("wheel", "--no-deps", "--wheel-dir", str(tmp / "wheel"), str(source), env=env)
    (wheel,) = (tmp / "wheel").glob("logsync-*.whl")
    pip("install", "--no-deps", "--target", str(tmp / "site"), str(wheel), env=env)
    yield tmp / "site"


def isolated(site: Path) -> dict[str, str]:
    """An environment whose Pythons import logsync from ``site``, this checkout's ``tests`` after
    it, and never the current directory (PYTHONSAFEPATH reaches the servers the tests start)."""
    return {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"}


@pytest.mark.timeout(900)
def test_the_wheel_compiles_every_hot_module(compiled: Path) -> None:
    script = (
        "import json, logsync.compiled as c, logsync.protocol.session as s;"
        "print(json.dumps([c.compiled_modules(), s.__file__]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=isolated(compiled),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded, session_file = json.loads(done.stdout)
    assert loaded == dict.fromkeys(HOT_MODULES, True)
    assert Path(session_file).is_relative_to(compiled)


@pytest.mark.timeout(900)
def test_the_compiled_modules_pass_the_unit_and_server_suites(compiled: Path) -> None:
    # -p no:randomly: the order of the suite's own run; append: pytest adds ROOT after site.
    check = (
        "import sys, pytest, logsync.compiled as c;"
        "assert all(c.compiled_modules().values()), c.compiled_modules();"
        "sys.exit(pytest.main(sys.argv[1:]))"
    )
    options = ["-q", "-x", "-p", "no:randomly", "-p", "no:cacheprovider", "--import-mode=append"]
    done = subprocess.run(
        [sys.executable, "-c", check, *options, *SUITES],
        env=isolated(compiled),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1]


@pytest.mark.timeout(900)
def test_a_failed_compile_builds_pure_python(tmp_path: Path) -> None:
    # LOGSYNC_COMPILE=auto (what `pip install .` does) with a C compiler that fails: the build
    # succeeds, and installs the sources and no extension.
    source = copy_checkout(tmp_path / "source")
    env = {**os.environ, "LOGSYNC_COMPILE": "auto", "CC": "false"}
    pip("wheel", "--no-deps", "--wheel-dir", str(tmp_path / "wheel"), str(source), env=env)
    (wheel,) = (tmp_path / "wheel").glob("logsync-*.whl")
    site = tmp_path / "site"
    pip("install", "--no-deps", "--target", str(site), str(wheel), env=env)
    assert [p for s in EXTENSION_SUFFIXES for p in site.rglob("*" + s)] == []
    for name in HOT_MODULES:
        assert (site / name.replace(".", "/")).with_suffix(".py").is_file(), name


def served_modules(env: dict[str, str] | None) -> tuple[dict[str, float], list[str]]:
    """``logsync_compiled`` of a ``logsync serve`` started in ``env``, and its output."""
    server = ServerProcess(None, env=env)
    try:
        with urllib.request.urlopen(server.http_url + "metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        server.stop()
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "logsync_compiled"]
    return {s.labels["module"]: s.value for s in family.samples}, server.output


@pytest.mark.timeout(900)
def test_a_compiled_server_says_so_in_metrics_and_its_log(compiled: Path) -> None:
    served, output = served_modules(isolated(compiled))
    assert served == dict.fromkeys(HOT_MODULES, 1.0)
    assert f"hot modules compiled by mypyc: {len(HOT_MODULES)} of {len(HOT_MODULES)}" in "".join(
        output
    )


def test_a_server_of_the_editable_install_runs_python() -> None:
    served, output = served_modules(None)
    assert served == dict.fromkeys(HOT_MODULES, 0.0)
    assert f"hot modules compiled by mypyc: 0 of {len(HOT_MODULES)}" in "".join(output)


def test_the_editable_install_runs_the_sources() -> None:
    # No compiled module beside a .py in the checkout (it would shadow the source a developer
    # edits), and this suite's own process runs them as Python.
    beside = [p for s in EXTENSION_SUFFIXES for p in (ROOT / "logsync").rglob("*" + s)]
    assert beside == []
    assert compiled_modules() == dict.fromkeys(HOT_MODULES, False)


def test_a_compiling_build_asks_for_the_packages_mypyc_type_checks_against(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fresh build environment (pip's isolation, the Docker image's first stage) has none of the
    # runtime packages; without them strict mypy refuses every `import pydantic` and the build
    # falls back to pure Python (or fails with LOGSYNC_COMPILE=1).
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import build_backend

    for mode, expect_compiler in (("auto", True), ("1", True), ("0", False)):
        monkeypatch.setenv("LOGSYNC_COMPILE", mode)
        names = {
            r.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower()
            for r in build_backend.get_requires_for_build_wheel()
        }
        assert ("mypy" in names) is expect_compiler
        assert ({"pydantic", "aiohttp", "orjson", "prometheus-client"} <= names) is expect_compiler
