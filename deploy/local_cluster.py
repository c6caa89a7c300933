"""A logsync cluster on 127.0.0.1 without containers: Redis (AOF), N nodes and HAProxy.

The command line is ``deploy/local-cluster`` (see :func:`main`); tests use :class:`Cluster`::

    with Cluster(nodes=3, app="tests.interop.app:app") as cluster:
        cluster.url                      # ws://127.0.0.1:PORT/ through HAProxy
        cluster.nodes[0].url             # one node directly
        cluster.kill_node(0)             # SIGKILL by default; returns the exit code
        cluster.restart_node(0)          # same port, same node id
        cluster.restart_redis()          # same port, same data dir: the AOF is replayed

Every process is started by this module and stopped by its PID. HAProxy runs
``deploy/haproxy.cfg`` with only its server block replaced (:func:`render_haproxy_config`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
HAPROXY_TEMPLATE = DEPLOY / "haproxy.cfg"
BEGIN_SERVERS = "# BEGIN servers"
END_SERVERS = "# END servers"
# HAProxy's bind address comes from this variable (the template defaults to :31337).
BIND_VARIABLE = "LOGSYNC_LB_BIND"
KEY_PREFIX = "logsync"

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
POLL_INTERVAL = 0.02


class ClusterError(RuntimeError):
    """A process of the cluster did not start or is missing."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def render_haproxy_config(servers: Sequence[tuple[str, str]], template: str | None = None) -> str:
    """``deploy/haproxy.cfg`` with its server block replaced by ``(name, "host:port")`` servers.

    Everything else (timeouts, health checks, balancing) is kept byte for byte.
    """
    text = HAPROXY_TEMPLATE.read_text() if template is None else template
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == BEGIN_SERVERS]
    ends = [i for i, line in enumerate(lines) if line.strip() == END_SERVERS]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError(f"the template needs one {BEGIN_SERVERS!r} … {END_SERVERS!r} block")
    begin, end = starts[0], ends[0]
    indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
    block = [f"{indent}server {name} {address}\n" for name, address in servers]
    return "".join(lines[: begin + 1] + block + lines[end:])


def _logsync_command(python: str | None) -> list[str]:
    """How to run ``logsync serve``: this interpreter if it has logsync, else the repo's venv."""
    if python:
        return [python, "-m", "logsync.cli"]
    if importlib.util.find_spec("logsync") is not None:
        return [sys.executable, "-m", "logsync.cli"]
    venv = ROOT / ".venv" / "bin" / "python"
    if venv.exists():
        return [str(venv), "-m", "logsync.cli"]
    found = shutil.which("logsync")
    if found:
        return [found]
    raise ClusterError("logsync is not installed: run scripts/serve once, or pass --python")


def redis_ping(port: int) -> bool:
    """Whether the Redis on 127.0.0.1:``port`` answers PING with PONG now (not while loading)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(256)
                if not chunk:
                    return False
                reply += chunk
            return reply == b"+PONG\r\n"
    except OSError:
        return False


def _executable(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )
    if found is None:
        raise ClusterError(f"{name} is not installed: apt-get install -y {name}")
    return found


def _stop_process(process: subprocess.Popen[Any] | None, sig: int, timeout: float) -> int | None:
    """Signal one process by its PID and reap it (SIGKILL after ``timeout``); its exit code."""
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def _tail(path: Path, size: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"


class Node:
    """One ``logsync serve`` process; ``url`` and ``id`` (``server:nodeN``) once it listens."""

    def __init__(self, index: int, cluster: Cluster) -> None:
        self.index = index
        self.name = f"node{index + 1}"
        self.cluster = cluster
        self.port = 0  # 0 until the first start; restarts reuse the port HAProxy knows
        self.id = ""
        self.url = ""
        self.process: subprocess.Popen[str] | None = None
        self.log_path = cluster.data_dir / f"{self.name}.log"
        self._listening = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        """Start the process; :meth:`wait_listening` waits for its ``logsync listening`` line."""
        if self.running:
            raise ClusterError(f"{self.name} is already running (pid {self.pid})")
        cluster = self.cluster
        command = [*cluster.logsync, "serve"]
        if cluster.app:
            command.append(cluster.app)
        command += [
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--store",
            cluster.store_url,
            "--node-id",
            self.name,
            "--trusted-proxies",
            "127.0.0.1",
            *cluster.node_args,
        ]
        self._listening.clear()
        self.url = self.id = ""
        log = self.log_path.open("a")
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        self.process = subprocess.Popen(
            command,
            cwd=cluster.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=cluster.env,
            # Ctrl-C reaches the launcher only; it stops the nodes itself, in order.
            start_new_session=True,
        )
        self._reader = threading.Thread(
            target=self._read, args=(self.process, log), name=f"{self.name}-output", daemon=True
        )
        self._reader.start()

    def _read(self, process: subprocess.Popen[str], log: IO[str]) -> None:
        """Copy the node's output to its log; note the ``logsync listening on URL node ID`` line."""
        assert process.stdout is not None
        with log:
            for line in process.stdout:
                log.write(line)
                log.flush()
                if not self._listening.is_set() and line.startswith("logsync listening on "):
                    words = line.split()
                    self.url = words[3]
                    self.id = words[5] if len(words) > 5 else ""
                    self.port = int(self.url.rstrip("/").rsplit(":", 1)[1])
                    self._listening.set()
        self._listening.set()  # EOF: wake the waiter, who sees the exit

    def wait_listening(self, deadline: float) -> None:
        assert self.process is not None
        if not self._listening.wait(max(0.0, deadline - time.monotonic())):
            raise ClusterError(f"{self.name} did not start in time:\n{_tail(self.log_path)}")
        if not self.url or self.process.poll() is not None:
            self.process.wait()
            raise ClusterError(
                f"{self.name} exited with {self.process.returncode}:\n{_tail(self.log_path)}"
            )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        code = _stop_process(self.process, sig, timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        return code

    def health(self) -> int:
        """The status of ``GET /health`` on this node (0 when it does not answer)."""
        return http_status(f"{self.http_url}/health")

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "pid": self.pid, "log": str(self.log_path)}


def http_status(url: str, timeout: float = 2.0) -> int:
    """The HTTP status of a GET (0 when nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, urllib.error.URLError):
        return 0


class Cluster:
    """Redis with AOF (``appendfsync always``), ``nodes`` logsync nodes and HAProxy on 127.0.0.1.

    ``port`` is HAProxy's (0: a free one), ``redis_port`` Redis' (0: a free one), ``data_dir``
    holds Redis' AOF, the rendered ``haproxy.cfg`` and every log (default: a temporary folder,
    removed by :meth:`stop`). ``node_args`` are extra ``logsync serve`` flags for every node.
    Node indexes are 0-based: ``nodes[0]`` is ``node1`` (node id ``server:node1``).
    """

    def __init__(
        self,
        nodes: int = 3,
        *,
        port: int = 0,
        app: str | None = None,
        redis_port: int = 0,
        data_dir: str | Path | None = None,
        node_args: Sequence[str] = (),
        python: str | None = None,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.app = app
        self.port = port or free_port()
        self.redis_port = redis_port or free_port()
        self._own_data_dir = data_dir is None
        self.data_dir = Path(
            tempfile.mkdtemp(prefix="logsync-cluster-") if data_dir is None else data_dir
        ).resolve()
        self.node_args = list(node_args)
        self.cwd = Path(cwd) if cwd is not None else Path.cwd()
        self.env = {**os.environ, **(env or {})}
        self.logsync = _logsync_command(python)
        self.redis_server = _executable("redis-server")
        self.haproxy_executable = _executable("haproxy")
        self.redis_dir = self.data_dir / "redis"
        self.haproxy_config_path = self.data_dir / "haproxy.cfg"
        self.haproxy_log_path = self.data_dir / "haproxy.log"
        self.redis: subprocess.Popen[bytes] | None = None
        self.haproxy: subprocess.Popen[bytes] | None = None
        self.nodes = [Node(i, self) for i in range(nodes)]

    # -- addresses ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/``: HAProxy, in front of every node."""
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def store_url(self) -> str:
        return f"{self.redis_url}?prefix={KEY_PREFIX}"

    def info(self) -> dict[str, Any]:
        """What the launcher prints: addresses and PIDs of everything it started."""
        return {
            "url": self.url,
            "nodes": [node.info() for node in self.nodes],
            "redis": {"url": self.redis_url, "pid": self.redis.pid if self.redis else None},
            "haproxy": {
                "pid": self.haproxy.pid if self.haproxy else None,
                "config": str(self.haproxy_config_path),
            },
            "data_dir": str(self.data_dir),
        }

    def pids(self) -> list[int]:
        """PIDs of every process started and not yet stopped."""
        processes: list[subprocess.Popen[Any] | None] = [self.redis, self.haproxy]
        processes += [node.process for node in self.nodes]
        return [p.pid for p in processes if p is not None and p.poll() is None]

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start Redis, the nodes (in parallel), then HAProxy; return when all of them answer."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.start_redis()
            deadline = time.monotonic() + START_TIMEOUT
            for node in self.nodes:
                node.spawn()
            for node in self.nodes:
                node.wait_listening(deadline)
            self.start_haproxy()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop HAProxy, then every node (SIGTERM: they drain), then Redis; all by PID."""
        _stop_process(self.haproxy, signal.SIGTERM, STOP_TIMEOUT)
        for node in self.nodes:
            if node.running:
                assert node.process is not None
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            node.stop()
        self.stop_redis()
        if self._own_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- nodes ---------------------------------------------------------------------------------

    def kill_node(self, i: int, sig: int = signal.SIGKILL, timeout: float = STOP_TIMEOUT) -> int:
        """Send ``sig`` to node ``i`` (0-based) and wait for it to exit; its exit code.

        SIGKILL (the default) is a crash; SIGTERM is a graceful stop. HAProxy takes the node out
        of rotation after two failed health checks; until then a refused connection is redispatched.
        """
        code = self.nodes[i].stop(sig, timeout)
        if code is None:
            raise ClusterError(f"{self.nodes[i].name} was never started")
        return code

    def restart_node(self, i: int) -> None:
        """Stop node ``i`` if it runs (SIGTERM), start it again on the same port with the same id."""
        node = self.nodes[i]
        node.stop()
        node.spawn()
        node.wait_listening(time.monotonic() + START_TIMEOUT)

    # -- redis ---------------------------------------------------------------------------------

    def start_redis(self) -> None:
        """Start ``redis-server`` with AOF, fsync on every write; return once it answers PING."""
        if self.redis is not None and self.redis.poll() is None:
            raise ClusterError(f"redis-server already running (pid {self.redis.pid})")
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        command = [
            self.redis_server,
            "--port",
            str(self.redis_port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.redis_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--logfile",
            str(self.redis_dir / "redis.log"),
        ]
        self.redis = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.redis_ping():
            if self.redis.poll() is not None:
                raise ClusterError(
                    f"redis-server exited with {self.redis.returncode}:\n"
                    + _tail(self.redis_dir / "redis.log")
                )
            if time.monotonic() > deadline:
                raise ClusterError(
                    "redis-server did not answer PING:\n" + _tail(self.redis_dir / "redis.log")
                )
            time.sleep(POLL_INTERVAL)  # polling a socket for readiness

    def stop_redis(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop Redis (SIGTERM: a clean shutdown; SIGKILL: a crash, the AOF keeps what was acked)."""
        process, self.redis = self.redis, None
        return _stop_process(process, sig, STOP_TIMEOUT)

    def restart_redis(self, sig: int = signal.SIGTERM) -> None:
        """Stop Redis with ``sig`` and start it on the same port and data dir (AOF replayed)."""
        self.stop_redis(sig)
        self.start_redis()

    def redis_ping(self) -> bool:
        """Whether Redis answers PING with PONG now (not while it is still loading the AOF)."""
        return redis_ping(self.redis_port)

    # -- haproxy -------------------------------------------------------------------------------

    def haproxy_config(self) -> str:
        return render_haproxy_config([(node.name, f"127.0.0.1:{node.port}") for node in self.nodes])

    @property
    def haproxy_env(self) -> dict[str, str]:
        return {**self.env, BIND_VARIABLE: f"127.0.0.1:{self.port}"}

    def start_haproxy(self) -> None:
        """Write the config, start HAProxy in the foreground; return once ``/health`` answers 200
        through it."""
        self.haproxy_config_path.write_text(self.haproxy_config())
        log = self.haproxy_log_path.open("ab")
        with log:
            self.haproxy = subprocess.Popen(
                [self.haproxy_executable, "-db", "-f", str(self.haproxy_config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.haproxy_env,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while http_status(f"{self.http_url}/health") != 200:
            if self.haproxy.poll() is not None:
                raise ClusterError(
                    f"haproxy exited with {self.haproxy.returncode}:\n{_tail(self.haproxy_log_path)}"
                )
            if time.monotonic() > deadline:
                raise ClusterError(
                    "haproxy did not answer /health:\n" + _tail(self.haproxy_log_path)
                )
            time.sleep(POLL_INTERVAL)  # polling a socket for readiness

    def check_haproxy_config(self) -> subprocess.CompletedProcess[str]:
        """``haproxy -c`` on the rendered config (what :meth:`start_haproxy` runs)."""
        return subprocess.run(
            [self.haproxy_executable, "-c", "-f", str(self.haproxy_config_path)],
            capture_output=True,
            text=True,
            env=self.haproxy_env,
            check=False,
        )


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    argv = list(argv)
    node_args: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, node_args = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(
        prog="local-cluster",
        description="Run Redis (AOF), N logsync nodes and HAProxy on 127.0.0.1 until SIGINT or "
        "SIGTERM; print one JSON line with their addresses and PIDs when all are ready. "
        "Arguments after -- go to every `logsync serve`.",
    )
    parser.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    parser.add_argument(
        "--port", type=int, default=31337, help="HAProxy's port (default 31337; 0: a free one)"
    )
    parser.add_argument("--app", help="module:attribute of the App (default: the demo app)")
    parser.add_argument("--redis-port", type=int, default=0, help="default: a free port")
    parser.add_argument(
        "--data-dir", help="Redis' AOF, haproxy.cfg and logs (default: a temp dir, removed at exit)"
    )
    parser.add_argument("--python", help="Python with logsync installed (default: found)")
    return parser.parse_args(argv), node_args


def main(argv: Sequence[str] | None = None) -> int:
    args, node_args = _parse(sys.argv[1:] if argv is None else argv)
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        cluster = Cluster(
            args.nodes,
            port=args.port,
            app=args.app,
            redis_port=args.redis_port,
            data_dir=args.data_dir,
            node_args=node_args,
            python=args.python,
        )
        cluster.start()
    except (ClusterError, ValueError) as error:
        print(f"local-cluster: {error}", file=sys.stderr)
        return 1
    try:
        if stopping.is_set():
            return 0
        print(json.dumps(cluster.info()), flush=True)
        print(
            f"local-cluster: {cluster.url} -> {len(cluster.nodes)} nodes, logs in "
            f"{cluster.data_dir}; Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        stopping.wait()
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
