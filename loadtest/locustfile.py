"""Locust users that speak Logux v5 over WebSocket (``pip install -e '.[load]'``).

    locust -f loadtest/locustfile.py --headless -u 200 -r 50 -t 60s \\
        --host ws://127.0.0.1:31337/ --csv out/storm

The server runs the interop app (``logsync serve tests.interop.app:app``, or
``node tests/interop/js/reference-server.mjs``): token ``secret``, subprotocol 3, channel
``chat/:id``, ``chat/message {chat, text}`` resent to the channel, ``notify {user, text}`` resent to
that user and kept.

Frames are encoded with the project's codec and ids made with :mod:`logsync.protocol.ids`; the
socket is ``websocket-client``, which is blocking and so cooperates with gevent's monkey-patching
(locust patches on import). Each user runs a reader greenlet that acknowledges every ``sync``.

User classes (pick with ``locust ... ChatUser StormUser``; all by default, weighted):

- ``ChatUser`` (weight 6): subscribes to ``chat/<n>``, sends a ``chat/message`` every 0.5-2 s;
  reports ``send→synced`` and the end-to-end latency of messages from other users.
- ``StormUser`` (weight 3): goes offline for 2-10 s, comes back with its ``synced`` watermark and
  reports ``reconnect→caught-up`` (every ``notify`` sent to it while away received) and
  handshake refusals (close 1013 / HTTP 503, retried after the hint).
- ``SlowConsumer`` (weight 1): subscribes to a busy chat, reads slowly and does not acknowledge
  for a while; reports how many ``sync`` it received unacknowledged before the server stopped
  pushing.
"""

from __future__ import annotations

import contextlib
import random
import re
import threading
import time
from typing import Any

import gevent
import websocket
from locust import User, between, events, task
from locust.exception import StopUser

from logsync.protocol import PROTOCOL_VERSION
from logsync.protocol.codec import JSON
from logsync.protocol.ids import compress_id

TOKEN = "secret"
SUBPROTOCOL = 3
CHATS = 10
HINT = re.compile(r"try again in (\d+(?:\.\d+)?) s")
_counter = iter(range(1, 1 << 62))
_lock = threading.Lock()


def next_index() -> int:
    with _lock:
        return next(_counter)


class Refused(Exception):
    def __init__(self, hint: float) -> None:
        super().__init__(f"refused, retry in {hint:g} s")
        self.hint = hint


class LoguxSocket:
    """One WebSocket speaking Logux v5 with the project's codec, from gevent."""

    def __init__(self, url: str, node_id: str) -> None:
        self.url = url
        self.node_id = node_id
        self.ws: websocket.WebSocket | None = None
        self.base_time = 0
        self.server_id = ""
        self.seq = 0
        self.sent = 0  # `added` numbers of our own sync messages
        self.watermark: float = 0

    def open(self, synced: float = 0, timeout: float = 30) -> None:
        try:
            self.ws = websocket.create_connection(
                self.url, timeout=timeout, enable_multithread=True
            )
        except websocket.WebSocketBadStatusException as error:
            if error.status_code == 503:
                headers = error.resp_headers or {}
                hint = headers.get("retry-after", headers.get("Retry-After", 1))
                raise Refused(float(hint)) from error
            raise
        self.send(
            [
                "connect",
                PROTOCOL_VERSION,
                self.node_id,
                synced,
                {"token": TOKEN, "subprotocol": SUBPROTOCOL},
            ]
        )
        while True:
            msg = self.receive()
            if msg is None:
                found = HINT.search(self.close_reason)
                raise Refused(float(found.group(1)) if found else 1.0)
            if msg[0] == "connected":
                self.server_id = msg[2]
                self.base_time = int(msg[3][1])
                self.ws.settimeout(None)
                return
            if msg[0] == "error":
                raise ConnectionError(repr(msg))

    close_reason = ""

    def send(self, message: list[Any]) -> None:
        assert self.ws is not None
        self.ws.send(JSON.encode(message))

    def receive(self) -> list[Any] | None:
        assert self.ws is not None
        try:
            opcode, data = self.ws.recv_data()
        except (websocket.WebSocketConnectionClosedException, OSError):
            return None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            self.close_reason = data[2:].decode("utf-8", "replace") if len(data) > 2 else ""
            return None
        decoded: list[Any] = JSON.decode(data.decode() if isinstance(data, bytes) else data)
        return decoded

    def sync(self, action: dict[str, Any]) -> int:
        now = int(time.time() * 1000)
        full = f"{now} {self.node_id} {self.seq}"
        self.seq += 1
        self.sent += 1
        meta = {"id": compress_id(full, self.base_time, self.node_id), "time": now - self.base_time}
        self.send(["sync", self.sent, action, meta])
        return self.sent

    def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                self.ws.close()
            self.ws = None


def fire(request_type: str, name: str, started: float, error: Exception | None = None) -> None:
    events.request.fire(
        request_type=request_type,
        name=name,
        response_time=(time.time() - started) * 1000,
        response_length=0,
        exception=error,
        context={},
    )


class LoguxUser(User):
    abstract = True

    def on_start(self) -> None:
        self.index = next_index()
        self.node_id = f"{type(self).__name__.lower()}{self.index}:1"
        self.user = self.node_id.split(":")[0]
        self.socket: LoguxSocket | None = None
        self.reader: gevent.Greenlet | None = None
        self.acked: dict[int, float] = {}
        self.connect()

    def on_stop(self) -> None:
        self.disconnect()

    def connect(self, synced: float = 0) -> None:
        started = time.time()
        for _ in range(20):
            socket = LoguxSocket(self.host, self.node_id)
            try:
                socket.open(synced)
            except Refused as refused:
                fire("logux", "handshake refused (retried)", started, refused)
                gevent.sleep(refused.hint * random.uniform(1.0, 1.5))
                continue
            except Exception as error:
                fire("logux", "handshake", started, error)
                raise StopUser() from error
            fire("logux", "handshake", started)
            self.socket = socket
            self.reader = gevent.spawn(self.read, socket)
            return
        raise StopUser()

    def disconnect(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None
        if self.reader is not None:
            self.reader.kill(block=False)
            self.reader = None

    def read(self, socket: LoguxSocket) -> None:
        while True:
            msg = socket.receive()
            if msg is None:
                return
            kind = msg[0]
            if kind == "sync":
                socket.watermark = max(socket.watermark, msg[1])
                for i in range(2, len(msg), 2):
                    self.on_action(msg[i])
                self.before_ack()
                socket.send(["synced", msg[1]])
            elif kind == "synced":
                started = self.acked.pop(int(msg[1]), None)
                if started is not None:
                    fire("logux", "send → synced", started)
            elif kind == "ping":
                socket.send(["pong", socket.watermark])

    def on_action(self, action: dict[str, Any]) -> None:
        pass

    def before_ack(self) -> None:
        pass

    def send(self, action: dict[str, Any]) -> None:
        if self.socket is None:
            return
        started = time.time()
        added = self.socket.sync(action)
        self.acked[added] = started

    def subscribe(self, channel: str) -> None:
        self.send({"type": "logux/subscribe", "channel": channel})


class ChatUser(LoguxUser):
    """Steady chat: one message every 0.5-2 s to its chat, reads everyone else's."""

    weight = 6
    wait_time = between(0.5, 2)

    def on_start(self) -> None:
        super().on_start()
        self.chat = f"load{random.randrange(CHATS)}"
        self.subscribe(f"chat/{self.chat}")

    def on_action(self, action: dict[str, Any]) -> None:
        if action.get("type") == "chat/message":
            text = action.get("text", "")
            if text.startswith("t"):
                sent = int(text[1:]) / 1e6
                fire("logux", "chat delivery", sent)

    @task
    def say(self) -> None:
        self.send({"type": "chat/message", "chat": self.chat, "text": f"t{int(time.time() * 1e6)}"})


class StormUser(LoguxUser):
    """Offline/reconnect cycles: while it is away, another connection sends it ``notify``
    actions; on return it reports how long until it has them all."""

    weight = 3
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.received = 0
        super().on_start()

    def on_action(self, action: dict[str, Any]) -> None:
        if action.get("type") == "notify" and action.get("user") == self.user:
            self.received += 1

    @task
    def offline_cycle(self) -> None:
        assert self.socket is not None
        watermark = self.socket.watermark
        self.disconnect()
        missed = random.randint(5, 20)
        producer = LoguxSocket(self.host, f"{self.user}producer:{next_index()}")
        try:
            producer.open()
            for k in range(missed):
                producer.sync({"type": "notify", "user": self.user, "text": str(k)})
            gevent.sleep(random.uniform(2, 10))
        except Exception as error:
            fire("logux", "storm producer", time.time(), error)
        finally:
            producer.close()
        self.received = 0
        started = time.time()
        self.connect(watermark)
        deadline = started + 30
        while self.received < missed and time.time() < deadline:
            gevent.sleep(0.01)
        if self.received >= missed:
            fire("logux", "reconnect → caught up", started)
        else:
            fire("logux", "reconnect → caught up", started, TimeoutError(f"{self.received}"))


class SlowConsumer(LoguxUser):
    """Subscribes to a busy chat, reads slowly and withholds ``synced`` for a while."""

    weight = 1
    wait_time = between(5, 10)

    def on_start(self) -> None:
        self.unacked = 0
        self.holding_until = 0.0
        super().on_start()
        self.subscribe(f"chat/load{random.randrange(CHATS)}")

    def before_ack(self) -> None:
        # never acknowledge for a while, then read 10 messages a second
        while time.time() < self.holding_until:
            self.unacked += 1
            gevent.sleep(max(0.0, self.holding_until - time.time()))
        gevent.sleep(0.1)

    @task
    def hold(self) -> None:
        self.holding_until = time.time() + random.uniform(3, 8)
        started = time.time()
        gevent.sleep(self.holding_until - started)
        fire("logux", "slow consumer hold", started)
