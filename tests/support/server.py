"""Start and stop real ``logsync serve`` processes for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class ServerProcess:
    """``logsync serve`` on 127.0.0.1 with a free port; ``url`` once started. Stopped by its PID."""

    def __init__(
        self,
        app: str | None,
        *args: str,
        store: str | None = None,
        port: int = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        """``store`` defaults to a fresh SQLite file (the embedded default) in a temp folder."""
        if store is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="logsync-test-")
            store = f"sqlite:///{self._tmp.name}/log.db"
        self.store = store
        command = [sys.executable, "-m", "logsync.cli", "serve"]
        if app:
            command.append(app)
        command += ["--host", "127.0.0.1", "--port", str(port), "--store", store, *args]
        self.output: list[str] = []
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.url = self._wait_for_listening()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _wait_for_listening(self) -> str:
        assert self.process.stdout is not None
        # (a loaded 2-core machine has taken over 20 s to import and start)
        timer = threading.Timer(60, self.process.kill)
        timer.start()
        try:
            for line in self.process.stdout:
                self.output.append(line)
                if line.startswith("logsync listening on "):
                    return line.split()[3]
        finally:
            timer.cancel()
        raise RuntimeError("logsync serve did not start:\n" + "".join(self.output))

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    @property
    def http_url(self) -> str:
        return "http" + self.url.removeprefix("ws")  # ws:// → http://, wss:// → https://

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Signal the process and wait for it; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start(app: str | None = None, args: Sequence[str] = ()) -> ServerProcess:
    return ServerProcess(app, *args)
