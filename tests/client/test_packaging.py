"""The client needs no server-only dependency, and ``logsync serve`` without them says what to
install: checked in fresh interpreters in which those modules cannot be imported (as after a
plain ``pip install logsync``), and in the packaging metadata."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.support.server import ROOT

SERVER_ONLY = [
    "redis",
    "uvloop",
    "prometheus_client",
    "pydantic_settings",
    "pythonjsonlogger",
    "pywebpush",
]

# Make the server-only modules unimportable, then run the rest of the program.
BLOCK = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {SERVER_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_client_imports_without_the_server_extra() -> None:
    done = run(
        "import logsync_client, logsync_client.ws, logsync_client.http\n"
        "import logsync.protocol.client\n"
        f"assert not [m for m in sys.modules if m.split('.')[0] in {SERVER_ONLY!r}]\n"
        "print('ok')"
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_serve_without_the_server_extra_says_what_to_install() -> None:
    done = run("from logsync.cli import main\nmain(['serve'])")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "pip install 'logsync[server]'" in lines[0]


def test_base_dependencies_are_the_clients_and_the_rest_is_the_server_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {dep.split(">")[0].split(";")[0].strip() for dep in project["dependencies"]}
    assert names == {"aiohttp", "orjson", "msgpack", "pydantic"}
    server = " ".join(project["optional-dependencies"]["server"])
    for name in ("redis", "uvloop", "prometheus-client", "pydantic-settings", "pywebpush"):
        assert name in server
    assert (ROOT / "clients" / "python" / "logsync_client" / "py.typed").exists()
