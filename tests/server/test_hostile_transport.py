"""What one hostile client can make the transport hold or do, over real sockets (issue 9):
trickled frames, idle kept-alive HTTP, big frames before `connect`, broken close frames, forged
upgrades and origins, the /metrics surface. Each test names the bound it checks.

Frames are written by hand (masked, with ``client_frame``) on asyncio streams; server frames are
read with :meth:`RawSocket.read_frame`. A few in-process tests drive
:class:`~logsync.server.ws.WebSocketProtocol` over a fake asyncio transport."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any, cast

import aiohttp
import pytest

from loadtest.servers import cpu_seconds, rss_kib
from logsync.server import ws as ws_module
from logsync.server.ws import WebSocketProtocol
from logsync.settings import Settings
from logsync.websocket.frames import Opcode, close_payload
from tests.support.rawsocket import client_frame
from tests.support.server import ServerProcess
from tests.support.wsclient import RawClient

APP = "tests.interop.app:app"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
DEADLINE = 10.0


def address(server: ServerProcess) -> tuple[str, int]:
    host, port = server.http_url.split("//")[1].rstrip("/").rsplit(":", 1)
    return host, int(port)


def host_header(server: ServerProcess) -> str:
    return server.http_url.split("//")[1].rstrip("/")


def upgrade_request(host: str, headers: dict[str, str] | None = None) -> bytes:
    fields = {
        "Host": host,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
        **(headers or {}),
    }
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"GET / HTTP/1.1\r\n{lines}\r\n".encode()


class RawSocket:
    """A TCP connection to the server, written to byte by byte if need be."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, server: ServerProcess) -> RawSocket:
        reader, writer = await asyncio.open_connection(*address(server), limit=1 << 20)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    @classmethod
    async def websocket(cls, server: ServerProcess, **headers: str) -> RawSocket:
        """An upgraded socket (the 101 answer read)."""
        raw = await cls.open(server)
        head = await raw.request(upgrade_request(host_header(server), headers))
        assert head.startswith(b"HTTP/1.1 101 "), head
        return raw

    async def request(self, data: bytes) -> bytes:
        """Send ``data``; the answer's head (and the body, when it has a Content-Length)."""
        self.writer.write(data)
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), DEADLINE)
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                body = await self.reader.readexactly(int(line.split(b":")[1]))
                return head + body
        return head

    def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        self.writer.write(client_frame(opcode, payload, fin=fin))

    def send_json(self, message: list[Any]) -> None:
        self.send_frame(Opcode.TEXT, json.dumps(message).encode())

    async def read_frame(self, timeout: float = DEADLINE) -> tuple[int, bytes]:
        """The next server frame (never masked): ``(opcode, payload)``."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        return first & 0x0F, await asyncio.wait_for(self.reader.readexactly(length), timeout)

    async def read_message(self, timeout: float = DEADLINE) -> list[Any]:
        while True:
            opcode, payload = await self.read_frame(timeout)
            if opcode == Opcode.TEXT:
                message: list[Any] = json.loads(payload)
                return message
            if opcode == Opcode.CLOSE:
                raise ConnectionError(f"closed {int.from_bytes(payload[:2], 'big')}")

    async def connect(self, node_id: str) -> None:
        self.send_json(["connect", 5, node_id, 0, {"token": "secret", "subprotocol": 3}])
        while (await self.read_message())[0] != "connected":
            pass

    async def close_code(self, timeout: float = DEADLINE) -> int | None:
        """Read until the server's close frame; its code."""
        while True:
            opcode, payload = await self.read_frame(timeout)
            if opcode == Opcode.CLOSE:
                return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None

    async def eof(self, timeout: float = DEADLINE) -> None:
        """Wait until the server ends the connection (reads and drops what comes first)."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    if not await self.reader.read(65536):
                        return
                except ConnectionResetError:
                    return

    def close(self) -> None:
        self.writer.transport.abort()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def poll(predicate: Any, timeout: float, what: str) -> None:
    """Wait until ``predicate()`` holds, looking every 50 ms (the server's fd table and RSS
    change with nothing to await)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """Default limits, except a 1 s keep-alive and head deadline."""
    process = ServerProcess(APP, "--http-keepalive-ms", "1000", "--head-timeout-ms", "1000")
    try:
        yield process
    finally:
        process.stop()


# -- trickled frames -------------------------------------------------------------------------


async def test_a_trickled_frame_costs_little_cpu(server: ServerProcess) -> None:
    """Bound: a client that keeps a 4 MiB frame incomplete (4 x max_frame_bytes, allowed after
    `connect`) and feeds it 16 bytes every millisecond for 3 s uses under 25% of one core of the
    server, and a control client's ping is answered within 250 ms meanwhile.

    Measured (2 shared cores): 2.3% of a core, ping at most 0.6 ms; with the reader that copied
    the partial frame on every read, 100% of a core (ping at most 74 ms)."""
    pid = server.process.pid
    control = await RawClient.open(server.url)
    await control.connect("trickle:control:t1")
    attacker = await RawSocket.websocket(server)
    await attacker.connect("trickle:attacker:t1")
    frame = client_frame(Opcode.BINARY, os.urandom(4 << 20))
    cut = len(frame) - (128 << 10)  # 3 s at 16 bytes a millisecond sends 48 KiB of the rest
    attacker.writer.write(frame[:cut])
    await attacker.writer.drain()
    latencies: list[float] = []

    async def pings() -> None:
        while True:
            started = time.monotonic()
            await control.send(["ping", 1])
            await control.recv_until("pong", timeout=5)
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.1)

    pinger = asyncio.create_task(pings())
    cpu_before, started = cpu_seconds(pid), time.monotonic()
    pos = cut
    while time.monotonic() - started < 3:
        attacker.writer.write(frame[pos : pos + 16])
        pos += 16
        await asyncio.sleep(0.001)  # the attack's pace: a write per millisecond
    await attacker.writer.drain()
    fraction = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - started)
    pinger.cancel()
    sent = pos - cut
    print(f"trickle: {sent} bytes in 16-byte writes, server CPU {fraction:.1%}, ", end="")
    print(f"ping max {max(latencies) * 1000:.1f} ms over {len(latencies)}")
    assert fraction < 0.25, fraction
    assert latencies and max(latencies) < 0.25, latencies
    # the server still reads the attacker's socket: the rest of the frame is one big message
    attacker.writer.write(frame[pos:])
    error = await attacker.read_message()
    assert error[:2] == ["error", "wrong-format"]  # over max_frame_bytes: a Logux error
    attacker.close()
    await control.close()


# -- keep-alive and slow heads ---------------------------------------------------------------


async def test_idle_kept_alive_http_connections_are_closed(server: ServerProcess) -> None:
    """Bound: 200 sockets that each got one answer to a kept-alive `GET /health` and then stay
    idle are all closed by the server within 5 s (--http-keepalive-ms 1000), and the server's
    open file descriptors are back to what they were."""
    pid = server.process.pid
    baseline = open_fds(pid)
    sockets = await asyncio.gather(*(RawSocket.open(server) for _ in range(200)))
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    answers = await asyncio.gather(*(raw.request(request) for raw in sockets))
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"OK\n")
        assert b"connection: close" not in answer.lower()  # kept alive
    assert open_fds(pid) > baseline  # (all 200 unless this machine took 1 s to answer them)
    started = time.monotonic()
    await asyncio.gather(*(raw.eof(timeout=5) for raw in sockets))
    print(f"keep-alive: 200 idle sockets closed after {time.monotonic() - started:.2f} s", end="")
    print(f" (server fds {baseline} before)")
    await poll(lambda: open_fds(pid) <= baseline, 5, "server fds back to the baseline")
    for raw in sockets:
        raw.close()


async def test_a_partial_head_is_cut_on_a_new_and_on_a_kept_alive_connection(
    server: ServerProcess,
) -> None:
    """Bound: a socket that sends part of a request head and nothing more is closed within
    3 s (--head-timeout-ms 1000 for the first request, --http-keepalive-ms 1000 for a later
    one on a kept-alive connection)."""
    fresh = await RawSocket.open(server)
    fresh.writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    kept = await RawSocket.open(server)
    assert (await kept.request(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")).endswith(b"OK\n")
    kept.writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    started = time.monotonic()
    await asyncio.gather(fresh.eof(timeout=3), kept.eof(timeout=3))
    print(f"partial heads closed after {time.monotonic() - started:.2f} s")
    fresh.close()
    kept.close()


# -- before `connect` ------------------------------------------------------------------------


async def test_big_frames_before_connect_are_refused_unread(server: ServerProcess) -> None:
    """Bound: 20 sockets that each send 1 MiB frames before `connect` are each closed with
    1009, and the server's RSS grows by less than 50 MB (it reads no payload past the header)."""
    pid = server.process.pid
    rss_before = rss_kib(pid)
    payload = os.urandom(1 << 20)
    sockets = [await RawSocket.websocket(server) for _ in range(20)]
    for raw in sockets:
        for _ in range(3):
            raw.send_frame(Opcode.BINARY, payload)
    codes = await asyncio.gather(*(raw.close_code() for raw in sockets))
    assert codes == [1009] * 20
    await asyncio.gather(*(raw.eof() for raw in sockets))
    grown = (rss_kib(pid) - rss_before) / 1024
    print(f"pre-auth: 20 x 3 MiB sent, server RSS grew {grown:.1f} MB")
    assert grown < 50, grown
    for raw in sockets:
        raw.close()


async def test_the_preauth_frame_limit_is_exact_and_lifted_by_connect(
    server: ServerProcess,
) -> None:
    """Bound: before `connect`, a frame of 16 KiB + 1 byte closes with 1009 and one of 16 KiB
    does not; after it, a 100 KiB action (under max_frame_bytes, 1 MiB) is processed."""
    over = await RawSocket.websocket(server)
    over.send_frame(Opcode.TEXT, b" " * (16 * 1024 + 1))
    assert await over.close_code() == 1009
    over.close()
    at = await RawSocket.websocket(server)
    ping = b'["ping", 1]'
    at.send_frame(Opcode.TEXT, ping + b" " * (16 * 1024 - len(ping)))
    await at.connect("preauth:at:t1")
    at.close()
    client = await RawClient.open(server.url)
    await client.connect("preauth:big:t1")
    [wire_id] = await client.sync(1, {"type": "notify", "user": "nobody", "text": "a" * 100_000})
    assert (await client.answer(client.full_id(wire_id)))["type"] == "logux/processed"
    await client.close()


# -- close frames ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\x03", 1002),
        (close_payload(999, ""), 1002),
        (close_payload(1005, ""), 1002),
        (close_payload(1006, ""), 1002),
        (close_payload(2000, ""), 1002),
        (close_payload(5000, ""), 1002),
        (close_payload(1000, "") + b"\xff\xfe", 1007),
        (close_payload(1000, "bye"), 1000),
        (close_payload(4000, ""), 4000),
    ],
    ids=["1-byte", "999", "1005", "1006", "2000", "5000", "reason-not-utf8", "1000", "4000"],
)
async def test_close_frames_are_checked(
    server: ServerProcess, payload: bytes, expected: int
) -> None:
    """Bound (RFC 6455 §5.5.1, §7.4): the server answers a close frame with an invalid payload
    with 1002 (1007 for a reason that is not UTF-8), a valid one with its code, then closes."""
    raw = await RawSocket.websocket(server)
    raw.send_frame(Opcode.CLOSE, payload)
    assert await raw.close_code() == expected
    await raw.eof()
    raw.close()


# -- the upgrade -----------------------------------------------------------------------------


async def upgrade_status(server: ServerProcess, **headers: str) -> int:
    raw = await RawSocket.open(server)
    fields = {"Host": host_header(server), **headers}
    host = fields.pop("Host")
    head = await raw.request(upgrade_request(host, fields))
    raw.close()
    return int(head.split(b" ")[1])


async def test_upgrade_headers_are_token_lists(server: ServerProcess) -> None:
    """Bound: only `Upgrade: websocket` (a token, any case) with `Connection` listing `upgrade`
    is upgraded: `Upgrade: notwebsocket` gets 400."""
    assert await upgrade_status(server, Upgrade="notwebsocket") == 400
    assert await upgrade_status(server, Connection="keep-alive, notupgrade") == 400
    assert await upgrade_status(server, Connection="keep-alive, Upgrade") == 101
    assert await upgrade_status(server, Upgrade="WebSocket", Connection="upgrade") == 101


async def test_a_burst_of_connects_past_the_turns_bound_all_get_in() -> None:
    """Bound: with --upgrades-per-turn 2, 60 sockets that send their request head and a
    `connect` together, all at once, are all upgraded and connected: the heads past the bound
    wait for later turns (their sockets unread), and what followed each head is read after its
    upgrade."""
    server = ServerProcess(APP, "--upgrades-per-turn", "2")
    try:
        sockets = [await RawSocket.open(server) for _ in range(60)]
        host = host_header(server)
        for n, raw in enumerate(sockets):
            raw.writer.write(upgrade_request(host))
            raw.send_json(
                ["connect", 5, f"burst:b{n}:t1", 0, {"token": "secret", "subprotocol": 3}]
            )

        async def connected(raw: RawSocket) -> None:
            head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), DEADLINE)
            assert head.startswith(b"HTTP/1.1 101 "), head
            while (await raw.read_message())[0] != "connected":
                pass

        await asyncio.gather(*(connected(raw) for raw in sockets))
        for raw in sockets:
            raw.close()
    finally:
        server.stop()


async def test_origins_by_default_same_site_only(server: ServerProcess) -> None:
    """Bound: by default an upgrade whose Origin is another site is refused with 403; the
    same site's Origin, or none, is accepted."""
    host = host_header(server)
    assert await upgrade_status(server, Origin="https://evil.example") == 403
    assert await upgrade_status(server, Origin="null") == 403
    assert await upgrade_status(server, Origin=f"http://{host}") == 101
    assert await upgrade_status(server) == 101
    raw = await RawSocket.open(server)
    head = await raw.request(upgrade_request(host, {"Origin": "https://evil.example"}))
    assert head.startswith(b"HTTP/1.1 403 Forbidden") and b"allowed_origins" in head
    raw.close()


async def test_allowed_origins_lists_the_origins() -> None:
    """Bound: with --allowed-origins https://app.example, that origin is accepted and any
    other (the server's own site included) is refused with 403; a client with none is not."""
    server = ServerProcess(APP, "--allowed-origins", "https://app.example")
    try:
        host = host_header(server)
        assert await upgrade_status(server, Origin="https://app.example") == 101
        assert await upgrade_status(server, Origin="https://app.example.evil") == 403
        assert await upgrade_status(server, Origin=f"http://{host}") == 403
        assert await upgrade_status(server) == 101
    finally:
        server.stop()


# -- /metrics --------------------------------------------------------------------------------


@pytest.fixture
def metrics_server() -> Iterator[tuple[ServerProcess, str]]:
    server = ServerProcess(
        APP, "--metrics-listen", "127.0.0.1:0", "--metrics-token", "s3cret-token"
    )
    try:
        lines = [line for line in server.output if line.startswith("logsync metrics on ")]
        assert lines, server.output
        yield server, lines[0].split()[3]
    finally:
        server.stop()


async def test_metrics_on_their_own_address_behind_a_token(
    metrics_server: tuple[ServerProcess, str],
) -> None:
    """Bound: with --metrics-listen, the public port answers 404 for /metrics; the metrics
    address needs `Authorization: Bearer <--metrics-token>` (401 without it or with a wrong
    one) and then serves the limits."""
    server, metrics_url = metrics_server
    assert metrics_url.startswith("http://127.0.0.1:") and metrics_url.endswith("/metrics")
    async with aiohttp.ClientSession() as http:
        async with http.get(server.http_url + "metrics") as response:
            assert response.status == 404
        async with http.get(metrics_url) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = {"Authorization": "Bearer s3cret-tokeN"}
        async with http.get(metrics_url, headers=wrong) as response:
            assert response.status == 401
        right = {"Authorization": "Bearer s3cret-token"}
        async with http.get(metrics_url, headers=right) as response:
            assert response.status == 200
            text = await response.text()
    assert 'logsync_limit{setting="max_frame_bytes"}' in text


async def test_metrics_token_on_the_public_port() -> None:
    """Bound: with only --metrics-token, /metrics on the public port needs the token (401)."""
    server = ServerProcess(APP, "--metrics-token", "t0ken")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(server.http_url + "metrics") as response:
                assert response.status == 401
            headers = {"Authorization": "Bearer t0ken"}
            async with http.get(server.http_url + "metrics", headers=headers) as response:
                assert response.status == 200
                assert "logsync_limit" in await response.text()
    finally:
        server.stop()


# -- pause_reading / resume_reading, in process ----------------------------------------------


class FakeTransport:
    """The asyncio transport calls WebSocketProtocol makes, recorded."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.calls: list[str] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.calls.append("eof")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class FakeConnection:
    """Records what it receives; pauses its transport when it receives ``"pause"``."""

    def __init__(self, node: Any, transport: WebSocketProtocol, **_: Any) -> None:
        self.transport = transport
        self.received: list[str | bytes] = []
        self.authenticated = True
        self.closed = False
        self.remote = "127.0.0.1"
        self.session = self

    def next_deadline(self) -> None:
        return None

    def receive(self, frame: str | bytes) -> None:
        self.received.append(frame)
        if frame == "pause":
            self.transport.pause_reading()

    def error(self, error: Exception) -> None:
        self.received.append(f"error {error}")

    def send_offered(self) -> None:
        """Nothing is offered here (the transport asks at each flush)."""


class FakeNode:
    def __init__(self) -> None:
        self.settings = Settings()
        self.admission = self
        self.detached: list[Any] = []
        self.queued: set[Any] = set()  # transports with bytes queued (ServerNode.queued)

    def full(self) -> bool:
        return False

    def attach(self, conn: Any) -> None:
        pass

    def detach(self, conn: Any) -> None:
        self.detached.append(conn)


@pytest.fixture
def fake_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """WebSocketProtocol makes a FakeConnection after the upgrade."""
    monkeypatch.setattr(ws_module, "Connection", FakeConnection)


def opened(node: FakeNode) -> tuple[WebSocketProtocol, FakeTransport]:
    """A connection accepted by ``node``, nothing read yet."""
    transport = FakeTransport()
    proto = WebSocketProtocol(cast(Any, node), cast(Any, lambda: None))
    proto.connection_made(cast(Any, transport))
    return proto, transport


def upgraded(node: FakeNode) -> tuple[WebSocketProtocol, FakeTransport, FakeConnection]:
    proto, transport = opened(node)
    proto.data_received(upgrade_request("x"))
    assert transport.written.startswith(b"HTTP/1.1 101 ")
    return proto, transport, cast(FakeConnection, proto.conn)


def text(value: str) -> bytes:
    return client_frame(Opcode.TEXT, value.encode())


@pytest.mark.usefixtures("fake_connection")
async def test_pause_reading_holds_the_rest_until_resume() -> None:
    """Bound: once the connection pauses reading, it receives nothing more (not even the
    messages of the same read) until it resumes; then all of them, in order."""
    node = FakeNode()
    proto, transport, conn = upgraded(node)
    proto.data_received(text("a") + text("pause") + text("b") + text("c"))
    assert conn.received == ["a", "pause"]
    assert transport.calls == ["pause"] and proto.reading_paused
    proto.pause_reading()  # idempotent
    assert transport.calls == ["pause"]
    proto.resume_reading()
    proto.resume_reading()
    # the socket is read again only once the held messages have been handed over
    assert transport.calls == ["pause"] and conn.received == ["a", "pause"]
    await asyncio.sleep(0)
    assert conn.received == ["a", "pause", "b", "c"]
    assert transport.calls == ["pause", "resume"]


@pytest.mark.usefixtures("fake_connection")
async def test_a_pause_while_the_held_messages_are_handed_over_keeps_the_socket_unread() -> None:
    """Bound: the held messages never grow while paused. (The socket used to be read again
    before they were handed over; a connection that paused again meanwhile then held what
    arrived too, and under uvloop the held list grew by a read per pause: 80,000 messages and
    5 KB of RSS per action in a flood.)"""
    node = FakeNode()
    proto, transport, conn = upgraded(node)
    proto.data_received(text("pause") + text("b") + text("pause") + text("c"))
    assert conn.received == ["pause"]
    proto.resume_reading()
    await asyncio.sleep(0)
    assert conn.received == ["pause", "b", "pause"]
    assert transport.calls == ["pause"]  # paused again before the socket was read
    proto.resume_reading()
    await asyncio.sleep(0)
    assert conn.received == ["pause", "b", "pause", "c"]
    assert transport.calls == ["pause", "resume"]


@pytest.mark.usefixtures("fake_connection")
async def test_pause_and_resume_are_safe_once_closing() -> None:
    """Bound: pause/resume after the close (sent, or the socket gone) touch no transport."""
    node = FakeNode()
    proto, transport, conn = upgraded(node)
    proto.pause_reading()
    proto.close(1000, "bye")  # the client's close answer must still be read
    assert transport.calls == ["pause", "resume"]
    proto.pause_reading()
    assert transport.calls == ["pause", "resume"]
    transport.closing = True
    proto.connection_lost(None)
    proto.resume_reading()
    proto.pause_reading()
    assert transport.calls == ["pause", "resume"]
    assert node.detached == [conn]


@pytest.mark.usefixtures("fake_connection")
async def test_a_preauth_frame_over_the_limit_closes_before_its_payload() -> None:
    """Bound: before `connect`, a frame header announcing more than preauth_frame_bytes
    closes with 1009 at once: FIN after the close frame, and later bytes are dropped unread."""
    node = FakeNode()
    proto, transport, conn = upgraded(node)
    conn.authenticated = False
    big = client_frame(Opcode.TEXT, b"x" * (node.settings.preauth_frame_bytes + 1))
    transport.written.clear()
    proto.data_received(big[:8])
    assert transport.written.startswith(bytes((0x88, 2 + len("message too big"))) + b"\x03\xf1")
    assert transport.calls == ["eof"]
    proto.data_received(big[8:] + text("after"))
    assert conn.received == []


@pytest.mark.usefixtures("fake_connection")
async def test_pings_while_the_write_buffer_is_full_get_one_pong() -> None:
    """Bound: while the socket's write buffer is over its mark, pings add no pongs to it; the
    last one is answered once it drains (a client that pings and never reads holds 0 bytes)."""
    node = FakeNode()
    proto, transport, _ = upgraded(node)
    transport.written.clear()
    proto.pause_writing()
    proto.data_received(b"".join(client_frame(Opcode.PING, b"p%d" % i) for i in range(1000)))
    assert transport.written == b""
    proto.resume_writing()
    assert bytes(transport.written) == bytes((0x8A, 4)) + b"p999"


@pytest.mark.usefixtures("fake_connection")
async def test_upgrades_past_the_turns_bound_wait_for_the_next_turns() -> None:
    """Bound: at most ``upgrades_per_turn`` request heads are upgraded in one event-loop turn
    (a storm's thousands of connects would hold up every live message of that turn); the rest
    are upgraded oldest first in the next turns, unread meanwhile, with what they sent after
    the head kept for after the upgrade. A socket closed while it waits is skipped."""
    node = FakeNode()
    node.settings = Settings(upgrades_per_turn=2)
    sockets = []
    for n in range(6):
        proto, transport = opened(node)
        proto.data_received(upgrade_request("x") + text(f"first {n}"))
        sockets.append((proto, transport))

    def answered() -> list[int]:
        return [n for n, (_, t) in enumerate(sockets) if t.written.startswith(b"HTTP/1.1 101 ")]

    assert answered() == [0, 1]
    assert [t.calls for _, t in sockets] == [[], [], ["pause"], ["pause"], ["pause"], ["pause"]]
    sockets[3][0].data_received(text("second 3"))  # arrived before the pause took hold
    sockets[4][1].closing = True  # gone while it waits
    await asyncio.sleep(0)  # one turn
    assert answered() == [0, 1, 2, 3]
    assert sockets[3][1].calls == ["pause", "resume"]
    assert cast(FakeConnection, sockets[3][0].conn).received == ["first 3", "second 3"]
    await asyncio.sleep(0)
    assert answered() == [0, 1, 2, 3, 5]  # 4 was skipped without taking a place
    assert sockets[4][1].written == b"" and sockets[4][0].conn is None
    assert [cast(FakeConnection, p.conn).received for p, _ in sockets if p.conn] == [
        ["first 0"],
        ["first 1"],
        ["first 2"],
        ["first 3", "second 3"],
        ["first 5"],
    ]
    # the turn after an upgrade starts counting afresh: a new head is upgraded at once
    await asyncio.sleep(0)
    _, transport, _ = upgraded(node)
    assert transport.calls == []
