"""The servers a benchmark measures, and what it reads about them.

:class:`Servers` starts ``logsync serve`` node(s) on a fresh SQLite file, memory or one
``redis-server`` (the test suite's launchers, ``tests/support``), or the reference
``@logux/server`` (``tests/interop/js/reference-server.mjs``), or only points at a running server
(``url``, ``pid``); every process it started is stopped by its PID. The ``/proc`` readers give a
process's CPU time and RSS and the whole machine's busy time; :func:`machine` and :func:`source`
say what the figures were measured on.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "interop" / "js" / "reference-server.mjs"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- /proc ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used (the ``cpu`` line of ``/proc/stat``)."""
    with open("/proc/stat") as file:
        values = [int(v) for v in file.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK  # user … steal; guest time is inside user


def rss_kib(pid: int) -> int:
    """VmRSS of a process from ``/proc/<pid>/status``; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as file:
            for line in file:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def raise_fd_limit(needed: int) -> None:
    """Raise this process's open-file limit (processes it starts inherit it): the soft limit to
    the hard one, and the hard one too when that is below ``needed`` and this process may (root,
    up to the kernel's ``fs.nr_open``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            soft = hard = needed
        except (ValueError, OSError):
            pass  # not allowed: the warning below says what is missing
    want = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < needed:
        print(f"warning: fd limit {want} < {needed} needed", file=sys.stderr)


# -- what ran where ----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as file:
            model = next(
                (line.split(":", 1)[1].strip() for line in file if "model name" in line), ""
            )
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version()}


def source() -> dict[str, Any]:
    """Which server code ran: the tree the servers were started from, its commit, and whether
    ``logsync/`` had uncommitted changes (other work may change it while a benchmark runs)."""
    info: dict[str, Any] = {"root": str(ROOT)}
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "logsync"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return info
    info.update(commit=head, logsync_modified=bool(changes))
    return info


# -- the servers -------------------------------------------------------------------------------


class Servers:
    """logsync node(s) running ``app`` (and, for ``store="redis"``, one redis-server started with
    ``redis_args``), or the reference server (``server="logux"``), or a running server
    (``url``, and ``pid`` to read its CPU and memory)."""

    def __init__(
        self,
        app: str,
        *,
        nodes: int = 1,
        store: str = "sqlite",
        redis_args: Sequence[str] = ("--appendonly", "yes"),
        redis_prefix: str = "bench",
        serve_args: Sequence[str] = (),
        server: str = "logsync",
        url: str = "",
        pid: int = 0,
        tmp_prefix: str = "logsync-bench-",
        env: dict[str, str] | None = None,
    ) -> None:
        self.app = app
        self.node_count = nodes
        self.store = store
        self.redis_args = list(redis_args)
        self.redis_prefix = redis_prefix
        self.serve_args = list(serve_args)
        self.server = server
        self.url = url
        self.pid = pid
        self.tmp = tempfile.TemporaryDirectory(prefix=tmp_prefix)
        self.env = dict(env or {})  # extra environment of the logsync nodes
        self.redis: Any = None
        self.nodes: list[Any] = []
        self.reference: subprocess.Popen[str] | None = None
        self.store_url = ""
        self.urls: list[str] = []
        self.pids: list[int] = []

    def start(self) -> None:
        if self.url:
            self.urls = [self.url]
            self.pids = [self.pid] if self.pid else []
            return
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))  # tests.support: the suite's server and redis launchers
        try:
            if self.server == "logux":
                self._start_reference()
            else:
                self._start_logsync()
        except BaseException:
            self.stop()
            raise

    def _start_reference(self) -> None:
        from tests.support.redis import free_port

        port = free_port()
        self.reference = subprocess.Popen(
            ["node", str(REFERENCE), str(port)],
            cwd=REFERENCE.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "LOGUX_QUIET": "1"},
        )
        assert self.reference.stdout is not None
        line = self.reference.stdout.readline()
        if not line.startswith("listening"):
            raise RuntimeError(f"reference server did not start: {line!r}")
        self.urls = [f"ws://127.0.0.1:{port}/"]
        self.pids = [self.reference.pid]

    def _start_logsync(self) -> None:
        from tests.support.server import ServerProcess

        if self.store == "redis":
            from tests.support.redis import RedisServer

            self.redis = RedisServer(Path(self.tmp.name) / "redis", *self.redis_args)
            self.redis.start()
            self.store_url = f"{self.redis.url}?prefix={self.redis_prefix}"
        elif self.store == "sqlite":
            self.store_url = f"sqlite:///{self.tmp.name}/log.db"
        else:
            self.store_url = "memory://"
        for n in range(self.node_count):
            args = ["--log-level", "warning", *self.serve_args, "--node-id", f"node{n + 1}"]
            self.nodes.append(ServerProcess(self.app, *args, store=self.store_url, env=self.env))
        self.urls = [node.url for node in self.nodes]
        self.pids = [node.process.pid for node in self.nodes]

    def cpu(self) -> float:
        """CPU seconds of the server processes (not redis-server)."""
        total = 0.0
        for pid in self.pids:
            with contextlib.suppress(OSError):
                total += cpu_seconds(pid)
        return total

    def redis_cpu(self) -> float:
        return cpu_seconds(self.redis.process.pid) if self.redis is not None else 0.0

    def rss_kib(self) -> int:
        return sum(rss_kib(pid) for pid in self.pids)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.reference is not None and self.reference.poll() is None:
            self.reference.send_signal(signal.SIGTERM)
            try:
                self.reference.wait(10)
            except subprocess.TimeoutExpired:
                self.reference.kill()
                self.reference.wait()
        if self.redis is not None:
            self.redis.stop()
        self.tmp.cleanup()
