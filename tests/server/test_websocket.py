"""The WebSocket endpoint over real sockets: handshake, errors, bad input, isolation between clients."""

from __future__ import annotations

import asyncio
import signal
import ssl
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest

from logsync.protocol.ids import is_first_older
from tests.support.redis import start_redis
from tests.support.server import ServerProcess
from tests.support.tls import self_signed
from tests.support.wsclient import RawClient


async def test_health_and_hello_page(shared_server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(shared_server.http_url + "health") as response:
            assert response.status == 200
            assert await response.text() == "OK\n"
        async with http.get(shared_server.http_url) as response:
            assert response.status == 200
            assert "Logux" in await response.text()


async def test_plain_http_and_bad_upgrades_on_the_websocket_port(
    shared_server: ServerProcess,
) -> None:
    host, port = shared_server.http_url.split("//")[1].rstrip("/").split(":")
    upgrade = (
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {}\r\n\r\n"
    )

    async def exchange(*requests: str) -> bytes:
        """Send each request once the answer to the previous one has arrived; all answers."""
        reader, writer = await asyncio.open_connection(host, int(port))
        answers = b""
        for request in requests:
            writer.write(request.encode())
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = await asyncio.wait_for(reader.read(4096), timeout=10)
                assert chunk, answers + answer
                answer += chunk
            answers += answer
        writer.close()
        return answers

    # an unsupported version is refused in HTTP, with the version to use
    refused = await exchange(upgrade.format(8))
    assert refused.startswith(b"HTTP/1.1 426 ") and b"Sec-WebSocket-Version: 13" in refused
    # kept-alive plain HTTP is served by the web app; an upgrade later on it is refused
    kept = await exchange("GET /health HTTP/1.1\r\nHost: x\r\n\r\n", upgrade.format(13))
    assert kept.startswith(b"HTTP/1.1 200 OK") and b"HTTP/1.1 400 Bad Request" in kept
    # and a fresh connection upgrades
    assert (await exchange(upgrade.format(13))).startswith(b"HTTP/1.1 101 ")


async def test_handshake_answers_connected_with_times_and_subprotocol(
    shared_server: ServerProcess,
) -> None:
    client = await RawClient.open(shared_server.url)
    before = int(time.time() * 1000)
    connected = await client.connect("hs:c1:t1")
    after = int(time.time() * 1000)
    assert connected[0:2] == ["connected", 5]
    assert connected[2].startswith("server:")
    start, end = connected[3]
    assert before <= start <= end <= after
    assert connected[4] == {"subprotocol": 3}
    await client.close()


async def test_wrong_token_gets_wrong_credentials_and_close(shared_server: ServerProcess) -> None:
    client = await RawClient.open(shared_server.url)
    await client.send(["connect", 5, "bad:c1:t1", 0, {"token": "nope", "subprotocol": 3}])
    assert await client.recv() == ["error", "wrong-credentials"]
    assert await client.closed() is not None
    await client.close()


async def test_reserved_server_user_is_refused(shared_server: ServerProcess) -> None:
    client = await RawClient.open(shared_server.url)
    await client.send(["connect", 5, "server:c1:t1", 0, {"token": "secret", "subprotocol": 3}])
    assert await client.recv() == ["error", "wrong-credentials"]
    await client.close()


async def test_old_protocol_and_subprotocol_are_refused(shared_server: ServerProcess) -> None:
    client = await RawClient.open(shared_server.url)
    await client.send(["connect", 4, "old:c1:t1", 0, {"token": "secret", "subprotocol": 3}])
    assert await client.recv() == ["error", "wrong-protocol", {"supported": 5, "used": 4}]
    await client.close()
    client = await RawClient.open(shared_server.url)
    await client.send(["connect", 5, "old:c2:t1", 0, {"token": "secret", "subprotocol": 1}])
    assert await client.recv() == ["error", "wrong-subprotocol", {"supported": 2, "used": 1}]
    await client.close()


async def test_malformed_json_gets_wrong_format_with_raw_text(shared_server: ServerProcess) -> None:
    client = await RawClient.open(shared_server.url)
    await client.send_raw('["connect", 5, ')
    assert await client.recv() == ["error", "wrong-format", '["connect", 5, ']
    assert await client.closed() is not None
    await client.close()


@pytest.mark.parametrize(
    "frame", ['["synced",07]', '["synced",-1]', '["synced",1e999]', '["synced",99999999999999999]']
)
async def test_a_synced_the_decoder_would_refuse_is_wrong_format(
    shared_server: ServerProcess, frame: str
) -> None:
    client = await RawClient.open(shared_server.url)
    await client.connect("syncedshape:c:t1")
    await client.send_raw('["synced",1]')  # taken, nothing said
    await client.send_raw(frame)
    error = await client.recv()
    assert error[:2] == ["error", "wrong-format"], error
    await client.close()


async def test_unknown_message_gets_unknown_message(shared_server: ServerProcess) -> None:
    client = await RawClient.open(shared_server.url)
    await client.send(["hello", 1])
    assert await client.recv() == ["error", "unknown-message", "hello"]
    await client.close()


async def test_wrong_shape_after_auth_closes_only_that_client(shared_server: ServerProcess) -> None:
    good = await RawClient.open(shared_server.url)
    await good.connect("iso:good:t1")
    bad = await RawClient.open(shared_server.url)
    await bad.connect("iso:bad:t1")
    await bad.send(["sync", 1, {"type": 5}, {"id": 1, "time": 0}])
    error = await bad.recv()
    assert error[:2] == ["error", "wrong-format"]
    assert await bad.closed() is not None
    [wire_id] = await good.sync(1, {"type": "counter/inc"})
    answer = await good.answer(good.full_id(wire_id))
    assert answer["type"] == "logux/processed"
    await good.close()
    await bad.close()


async def test_oversized_frame_gets_error_and_close_others_unaffected(
    shared_server: ServerProcess,
) -> None:
    good = await RawClient.open(shared_server.url)
    await good.connect("big:good:t1")
    big = await RawClient.open(shared_server.url)
    await big.connect("big:big:t1")
    await big.sync(1, {"type": "notify", "user": "x", "text": "a" * 5000})
    error = await big.recv()
    assert error[0:2] == ["error", "wrong-format"]
    assert "4096" in error[2]
    assert await big.closed() is not None
    [wire_id] = await good.sync(1, {"type": "notify", "user": "x", "text": "small"})
    assert (await good.answer(good.full_id(wire_id)))["type"] == "logux/processed"
    await good.close()
    await big.close()


async def test_messages_before_auth_are_held_and_replayed(shared_server: ServerProcess) -> None:
    client = await RawClient.open(shared_server.url)
    client.node_id = "held:c1:t1"
    await client.send(["ping", 1])
    await client.send(["connect", 5, "held:c1:t1", 0, {"token": "secret", "subprotocol": 3}])
    connected = await client.recv()
    assert connected[0] == "connected"
    assert await client.recv() == ["pong", 0]
    await client.close()


async def test_ping_is_answered_with_the_connection_watermark(shared_server: ServerProcess) -> None:
    client = await RawClient.open(shared_server.url)
    await client.connect("ping:c1:t1")
    [wire_id] = await client.sync(1, {"type": "counter/inc"})
    await client.answer(client.full_id(wire_id))
    await client.send(["ping", 999_999])
    pong, before = await client.recv_until("pong")
    sent = [m[1] for m in before if m[0] == "sync"]
    # never the client's own value, never more than the highest `added` this client was sent
    assert pong[1] != 999_999
    assert pong[1] >= 1
    assert all(value <= pong[1] for value in sent)
    await client.close()


async def test_msgpack_binary_frames(shared_server: ServerProcess) -> None:
    client = await RawClient.open(shared_server.url, binary=True)
    connected = await client.connect("bin:c1:t1")
    assert connected[0] == "connected"
    [wire_id] = await client.sync(1, {"type": "counter/inc"})
    answer = await client.answer(client.full_id(wire_id))
    assert answer["type"] == "logux/processed"
    await client.send_raw(b"\xc1")  # never valid msgpack
    error, _ = await client.recv_until("error")
    assert error[:2] == ["error", "wrong-format"]
    await client.close()
    assert msgpack  # the codec really is msgpack (decoded by RawClient)


async def test_foreign_id_and_extra_meta_are_denied(shared_server: ServerProcess) -> None:
    client = await RawClient.open(shared_server.url)
    await client.connect("meta:c1:t1")
    await client.send(
        ["sync", 1, {"type": "counter/inc"}, {"id": [0, "other:c9:t1", 0], "time": 0}]
    )
    undo = await client.answer(f"{client.base_time} other:c9:t1 0")
    assert undo["type"] == "logux/undo"
    assert undo["reason"] == "denied"
    [wire_id] = await client.sync(2, {"type": "counter/inc"}, meta={"reasons": ["x"]})
    undo = await client.answer(client.full_id(wire_id))
    assert undo["reason"] == "denied"
    await client.close()


async def test_time_far_in_future_is_undone_with_a_reason(shared_server: ServerProcess) -> None:
    client = await RawClient.open(shared_server.url)
    await client.connect("future:c1:t1")
    await client.send(["sync", 1, {"type": "counter/inc"}, {"id": [0, 1], "time": 3_600_000}])
    undo = await client.answer(client.full_id([0, 1]))
    assert undo["reason"] == "error"
    assert "ahead of the server clock" in undo["details"]
    await client.close()


async def test_synced_answers_each_sync(shared_server: ServerProcess) -> None:
    client = await RawClient.open(shared_server.url)
    await client.connect("ack:c1:t1")
    await client.sync(7, {"type": "notify", "user": "nobody", "text": "x"})
    synced, _ = await client.recv_until("synced")
    assert synced == ["synced", 7]
    await client.close()


async def test_new_connection_with_same_client_replaces_old(shared_server: ServerProcess) -> None:
    first = await RawClient.open(shared_server.url)
    await first.connect("zombie:c1:t1")
    second = await RawClient.open(shared_server.url)
    await second.connect("zombie:c1:t2")
    assert await first.closed() is not None
    [wire_id] = await second.sync(1, {"type": "counter/inc"})
    assert (await second.answer(second.full_id(wire_id)))["type"] == "logux/processed"
    await first.close()
    await second.close()


async def test_bruteforce_locks_an_ip_after_three_failures() -> None:
    server = ServerProcess("tests.interop.app:app")
    try:
        for _ in range(3):
            client = await RawClient.open(server.url)
            await client.send(
                ["connect", 5, "brute:c1:t1", 0, {"token": "wrong", "subprotocol": 3}]
            )
            assert await client.recv() == ["error", "wrong-credentials"]
            await client.close()
        client = await RawClient.open(server.url)
        await client.send(["connect", 5, "brute:c1:t1", 0, {"token": "secret", "subprotocol": 3}])
        assert await client.recv() == ["error", "wrong-credentials"]
        await client.close()
    finally:
        server.stop()


async def test_development_mode_sends_env_header_and_debug() -> None:
    server = ServerProcess("tests.interop.app:app", "--env", "development")
    try:
        client = await RawClient.open(server.url)
        await client.send(["connect", 5, "dev:c1:t1", 0, {"token": "secret", "subprotocol": 3}])
        assert await client.recv() == ["headers", {"env": "development"}]
        assert (await client.recv())[0] == "connected"
        await client.sync(1, {"type": "denied/action"})
        debug, _ = await client.recv_until("debug")
        assert debug[1] == "error"
        assert "denied" in debug[2]
        await client.close()
    finally:
        server.stop()


async def test_sigterm_shuts_down_gracefully() -> None:
    server = ServerProcess("tests.interop.app:app")
    client = await RawClient.open(server.url)
    await client.connect("bye:c1:t1")
    closed = asyncio.create_task(client.closed())
    code = await asyncio.get_running_loop().run_in_executor(None, server.stop, signal.SIGTERM)
    assert code == 0
    assert await closed == 1001
    await client.close()


async def test_huge_frame_is_refused_before_it_is_read(shared_server: ServerProcess) -> None:
    client = await RawClient.open(shared_server.url)
    await client.connect("huge:c1:t1")
    await client.send_raw("x" * 100_000)
    assert await client.closed() == 1009
    await client.close()


async def test_tls_serves_wss(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = ServerProcess("tests.interop.app:app", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert server.url.startswith("wss://")
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        client = await RawClient.open(server.url, ssl=context)
        assert (await client.connect("tls:c1:t1"))[0] == "connected"
        await client.close()
        # plain HTTPS requests are handed over to the web app on the same TLS socket
        async with (
            aiohttp.ClientSession() as http,
            http.get(server.http_url + "health", ssl=context) as response,
        ):
            assert response.status == 200 and await response.text() == "OK\n"
    finally:
        server.stop()


async def test_reaction_sorts_after_a_cause_from_a_clock_running_ahead(
    shared_server: ServerProcess,
) -> None:
    client = await RawClient.open(shared_server.url)
    await client.connect("skew:c1:t1")
    ahead = 30_000  # within --max-future-ms, so accepted
    await client.send(["sync", 1, {"type": "counter/inc"}, {"id": [0, 1], "time": ahead}])
    cause = (client.base_time + ahead, client.full_id([0, 1]))
    while True:
        msg = await client.recv()
        if msg[0] == "sync" and msg[2]["type"] == "counter/value":
            meta = client.full_meta(msg[3])
            break
    assert is_first_older(cause, (meta["time"], meta["id"]))
    assert meta["time"] > cause[0]
    await client.close()


async def test_brute_force_lock_uses_the_client_address_behind_a_trusted_proxy() -> None:
    server = ServerProcess("tests.interop.app:app", "--trusted-proxies", "127.0.0.1/32")

    async def attempt(address: str, token: str) -> list[Any]:
        client = await RawClient.open(
            server.url, headers={"X-Forwarded-For": f"203.0.113.9, {address}"}
        )
        await client.send(["connect", 5, "proxied:c1:t1", 0, {"token": token, "subprotocol": 3}])
        answer = await client.recv()
        await client.close()
        return answer

    try:
        for _ in range(3):
            assert await attempt("198.51.100.1", "wrong") == ["error", "wrong-credentials"]
        # that client is locked; another one behind the same load balancer is not
        assert await attempt("198.51.100.1", "secret") == ["error", "wrong-credentials"]
        assert (await attempt("198.51.100.2", "secret"))[0] == "connected"
    finally:
        server.stop()


class KeptAlive:
    """One plain HTTP/1.1 connection, kept alive across requests. Opened before a shutdown, it is
    still served during it (the listening socket is closed first; open connections are not)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, http_url: str) -> KeptAlive:
        host, port = http_url.split("//")[1].rstrip("/").split(":")
        return cls(*await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout=10))

    async def get(self, path: str) -> tuple[int, str]:
        """Status and body of ``GET path`` on this connection."""
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout=10)
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
        body = await asyncio.wait_for(
            self.reader.readexactly(int(headers["content-length"])), timeout=10
        )
        return int(lines[0].split(" ")[1]), body.decode()

    def close(self) -> None:
        self.writer.close()


OK = (200, "OK\n")


async def test_readiness_fails_while_stopping_but_liveness_answers() -> None:
    server = ServerProcess("tests.interop.app:app")
    http: KeptAlive | None = None
    try:
        http = await KeptAlive.open(server.http_url)
        assert await http.get("/health") == OK
        assert await http.get("/health/live") == OK
        # This client does not answer the server's close frame (autoclose off), so the shutdown
        # stays in `node.stop()` (waiting for it, up to the close timeout) until it does.
        client = await RawClient.open(server.url, autoclose=False)
        await client.connect("stopping:c1:t1")
        server.process.send_signal(signal.SIGTERM)
        # the close frame comes from node.stop(), after it has set `stopping`
        assert await client.closed() == 1001
        assert await http.get("/health") == (503, "stopping\n")
        assert await http.get("/health/live") == OK
        await client.close()  # answers the close frame: the shutdown goes on
        code = await asyncio.get_running_loop().run_in_executor(None, server.process.wait, 20)
        assert code == 0
    finally:
        if http is not None:
            http.close()
        server.stop()


async def test_readiness_fails_while_the_store_is_down_but_liveness_answers(
    tmp_path: Path,
) -> None:
    redis = start_redis(tmp_path)
    try:
        server = ServerProcess(
            "tests.interop.app:app", store=f"{redis.url}?prefix=t{uuid.uuid4().hex[:8]}"
        )
        try:
            async with aiohttp.ClientSession() as http:

                async def get(path: str) -> tuple[int, str]:
                    async with http.get(server.http_url + path.lstrip("/")) as response:
                        return response.status, await response.text()

                client = await RawClient.open(server.url)
                await client.connect("storedown:c1:t1")
                assert await get("/health") == OK
                assert await get("/health/live") == OK

                await asyncio.get_running_loop().run_in_executor(None, redis.stop)
                # a write now is refused; once it is, the node knows its store is down
                action = {"type": "chat/message", "chat": "down", "text": "lost?"}
                [wire_id] = await client.sync(1, action)
                undo = await client.answer(client.full_id(wire_id), timeout=60)
                assert undo["type"] == "logux/undo" and "unavailable" in undo["details"]
                assert await get("/health") == (503, "log store or broker unavailable\n")
                assert await get("/health/live") == OK

                await asyncio.get_running_loop().run_in_executor(None, redis.start)
                # the node finds the store back by probing it on its own: nothing to await here
                # but its answer, so ask again (bounded) until it is ready
                deadline = time.monotonic() + 30
                while (status := await get("/health")) != OK:
                    assert status == (503, "log store or broker unavailable\n")
                    assert await get("/health/live") == OK
                    assert time.monotonic() < deadline, "/health never became 200 again"
                    await asyncio.sleep(0.05)
                assert await get("/health/live") == OK
                await client.close()
        finally:
            server.stop()
    finally:
        redis.stop()
