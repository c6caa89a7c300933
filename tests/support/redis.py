"""Start, stop and restart real ``redis-server`` processes for tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from deploy.local_cluster import redis_ping

START_TIMEOUT = 20.0
POLL_INTERVAL = 0.01

MISSING = (
    "redis-server is not installed (not on PATH). The Redis tests need a real one: run scripts/test, "
    "which installs it, or `apt-get install -y redis-server`."
)


class RedisMissing(RuntimeError):
    """``redis-server`` is not on PATH."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A ``redis-server`` on 127.0.0.1 with a free port and its own data dir, stopped by its PID.

    Without extra arguments it keeps nothing on disk (``--save "" --appendonly no``); pass e.g.
    ``"--appendonly", "yes"`` for a server whose data survives :meth:`restart` (same port, same dir).
    """

    def __init__(self, directory: Path, *args: str) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RedisMissing(MISSING)
        self.executable = executable
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.args = args
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def start(self) -> None:
        """Start the server and return once it answers PING."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"redis-server already running (pid {self.process.pid})")
        command = [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.log_path),
            *self.args,  # later options win
        ]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        self._wait_until_ready()

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM the server (it saves/flushes what its options say) and wait for it to exit."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Stop and start again on the same port with the same data dir."""
        self.stop()
        self.start()

    def ping(self) -> bool:
        """Whether the server answers PING with PONG right now (not while it is still loading)."""
        return redis_ping(self.port)

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ping():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.process.returncode}:\n{self._log()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"redis-server did not answer PING in {START_TIMEOUT}s:\n{self._log()}"
                )
            time.sleep(POLL_INTERVAL)  # polling the socket, not waiting for a fixed time

    def _log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"


def start_redis(directory: Path, *args: str) -> RedisServer:
    """A started :class:`RedisServer`; fails the test (never skips) when ``redis-server`` is missing."""
    try:
        server = RedisServer(directory, *args)
    except RedisMissing as error:
        pytest.fail(str(error), pytrace=False)
    server.start()
    return server
