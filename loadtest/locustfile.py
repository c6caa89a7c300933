"""Locust users that speak Logux v5 over WebSocket (``pip install -e '.[load]'``).

    locust -f loadtest/locustfile.py --headless -u 200 -r 50 -t 60s \\
        --host ws://127.0.0.1:31337/ --csv out/mixed

The server runs the interop app (``logsync serve tests.interop.app:app``, or
``node tests/interop/js/reference-server.mjs``): token ``secret``, subprotocol 3, channel
``chat/:id``, ``chat/message {chat, text}`` resent to the channel, ``notify {user, text}`` resent to
that user and kept.

Frames are encoded with the project's codec and ids made with :mod:`logsync.protocol.ids`; the
socket is ``websocket-client``, which is blocking and so cooperates with gevent's monkey-patching
(locust patches on import). Each user runs a reader greenlet that acknowledges every ``sync``.

User classes (pick with ``locust ... ChatUser StormUser``; all by default, weighted):

- ``ChatUser`` (weight 6): subscribes to ``chat/load<n>`` (``n`` below ``--chats``), sends a
  ``chat/message`` every 0.5-2 s; reports ``send → synced`` and the end-to-end latency of messages
  from other users, and fails ``chat: gap`` / ``chat: duplicate`` when one sender's messages do
  not arrive one after the other.
- ``StormUser`` (weight 3): goes offline while a second connection sends it 5-20 ``notify``
  (waiting for each to be acknowledged), then comes back with its ``synced`` watermark at the next
  multiple of ``--storm-period`` seconds (every StormUser offline at that moment reconnects at
  the same instant), plus a random delay within ``--storm-jitter-ms``. Reports
  ``reconnect → caught up``: a success when exactly the missed actions arrived, each once, in
  order; a failure naming what was lost, duplicated or out of order otherwise.
- ``SlowConsumer`` (weight 1): subscribes to ``chat/load0`` (the busiest: ChatUsers take the chats
  in turn), withholds ``synced`` for ``--slow-hold-min``-``--slow-hold-max`` s, then reads 10
  ``sync`` a second; reports ``slow consumer → caught up`` once it has every message the chat's
  senders had acknowledged when the hold ended, with no gap and no duplicate.

Every entry is of type ``logux``; anything that is not exactly-once and in order, a
``logux/undo``, or a refused handshake that could not get in is a failure, so a run with zero
failures in ``--csv``'s ``_stats.csv`` delivered everything it checked. A handshake refused by
flow control and retried after the server's hint is a success named
``handshake refused (retried)``.
"""

from __future__ import annotations

import contextlib
import math
import random
import re
import threading
import time
from typing import Any

import gevent
import gevent.event
import websocket
from locust import User, between, events, task
from locust.exception import StopUser

from logsync.protocol import PROTOCOL_VERSION
from logsync.protocol.codec import JSON
from logsync.protocol.ids import compress_id

TOKEN = "secret"
SUBPROTOCOL = 3
HINT = re.compile(r"try again in (\d+(?:\.\d+)?) s")
WAIT_S = 30.0  # how long a user waits for what it is owed before it reports a failure
STORM_MIN_OFFLINE_S = 1.0
# Unique per locust process: the server keeps `notify` actions per user, so user ids of two runs
# against one server must not meet.
RUN = f"{random.getrandbits(24):06x}"
_counter = iter(range(1, 1 << 62))
_lock = threading.Lock()

# chat → sender → newest seq sent / acknowledged (`synced`), over this process's ChatUsers
SENT: dict[str, dict[str, int]] = {}
ACCEPTED: dict[str, dict[str, int]] = {}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--chats", type=int, default=10, help="ChatUser: chats chat/load0…")
    parser.add_argument(
        "--storm-period",
        type=float,
        default=10.0,
        help="StormUser: reconnect at the next multiple of this many seconds (all together)",
    )
    parser.add_argument(
        "--storm-jitter-ms",
        type=float,
        default=0.0,
        help="StormUser: plus a random delay within this many ms (0: no jitter)",
    )
    parser.add_argument(
        "--storm-cycles",
        type=int,
        default=0,
        help="StormUser: offline cycles per user, then one 'storm user: every cycle caught up' "
        "entry and idle (0: cycles until the run ends)",
    )
    parser.add_argument("--slow-hold-min", type=float, default=3.0, help="SlowConsumer: s")
    parser.add_argument("--slow-hold-max", type=float, default=8.0, help="SlowConsumer: s")


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
        self.close_reason = ""

    def open(self, synced: float = 0, timeout: float = WAIT_S) -> None:
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

    def send(self, message: list[Any]) -> None:
        if self.ws is None:
            raise ConnectionError(f"{self.node_id}: the socket is closed")
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

    def make_sync(self, *actions: dict[str, Any]) -> tuple[list[Any], int, list[str]]:
        """A ``sync`` of ``actions``, its number and the actions' full ids."""
        self.sent += 1
        ids = []
        message: list[Any] = ["sync", self.sent]
        for action in actions:
            now = int(time.time() * 1000)
            full = f"{now} {self.node_id} {self.seq}"
            self.seq += 1
            ids.append(full)
            wire_id = compress_id(full, self.base_time, self.node_id)
            message += [action, {"id": wire_id, "time": now - self.base_time}]
        return message, self.sent, ids

    def sync(self, *actions: dict[str, Any]) -> tuple[int, list[str]]:
        """Send ``actions`` in one ``sync``; its number and the actions' full ids."""
        message, added, ids = self.make_sync(*actions)
        self.send(message)
        return added, ids

    def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                self.ws.close()
            self.ws = None


def fire(name: str, started: float, error: Exception | str | None = None, length: int = 0) -> None:
    events.request.fire(
        request_type="logux",
        name=name,
        response_time=(time.time() - started) * 1000,
        response_length=length,
        exception=AssertionError(error) if isinstance(error, str) else error,
        context={},
    )


def wait_until(condition: Any, timeout: float, wake: gevent.event.Event) -> bool:
    """True once ``condition()`` holds; ``wake`` is set by the reader whenever it got something."""
    deadline = time.time() + timeout
    while not condition():
        left = deadline - time.time()
        if left <= 0:
            return False
        wake.clear()
        if not condition():
            wake.wait(min(left, 1.0))
    return True


class LoguxUser(User):
    abstract = True

    def on_start(self) -> None:
        self.index = next_index()
        self.user = f"{type(self).__name__.lower()}{self.index}x{RUN}"
        self.node_id = f"{self.user}:1"
        self.socket: LoguxSocket | None = None
        self.reader: gevent.Greenlet | None = None
        self.acked: dict[int, tuple[float, str]] = {}  # sync number → (sent at, entry name)
        self.subscription = ""  # id of the last logux/subscribe sent
        self.processed: set[str] = set()
        self.received = gevent.event.Event()
        self.connect()

    def on_stop(self) -> None:
        self.disconnect()

    @property
    def options(self) -> Any:
        return self.environment.parsed_options

    def connect(self, synced: float = 0) -> None:
        started = time.time()
        for _ in range(20):
            socket = LoguxSocket(self.host, self.node_id)
            try:
                socket.open(synced)
            except Refused as refused:
                fire("handshake refused (retried)", started)
                gevent.sleep(refused.hint * random.uniform(1.0, 1.5))
                continue
            except Exception as error:
                fire("handshake", started, error)
                raise StopUser() from error
            fire("handshake", started)
            self.socket = socket
            self.reader = gevent.spawn(self.read, socket)
            return
        fire("handshake", started, "refused 20 times")
        raise StopUser()

    def disconnect(self) -> None:
        # the reader first, so that it never writes to a closing socket
        if self.reader is not None:
            self.reader.kill(block=True, timeout=5)
            self.reader = None
        if self.socket is not None:
            self.socket.close()
            self.socket = None

    def read(self, socket: LoguxSocket) -> None:
        """Until the socket closes (a send failing there too)."""
        with contextlib.suppress(ConnectionError, OSError, websocket.WebSocketException):
            self.read_messages(socket)

    def read_messages(self, socket: LoguxSocket) -> None:
        while True:
            msg = socket.receive()
            if msg is None:
                return
            kind = msg[0]
            if kind == "sync":
                socket.watermark = max(socket.watermark, msg[1])
                for i in range(2, len(msg), 2):
                    action = msg[i]
                    if action.get("type") == "logux/processed":
                        self.processed.add(action.get("id", ""))
                        self.on_processed(action.get("id", ""))
                    elif action.get("type") == "logux/undo":
                        fire("logux/undo", time.time(), f"{action.get('reason')}: {action}")
                    else:
                        self.on_action(action)
                self.received.set()
                self.before_ack()
                socket.send(["synced", msg[1]])
            elif kind == "synced":
                sent = self.acked.pop(int(msg[1]), None)
                if sent is not None:
                    fire(sent[1], sent[0])
                    self.on_synced(int(msg[1]))
            elif kind == "ping":
                socket.send(["pong", socket.watermark])

    def on_action(self, action: dict[str, Any]) -> None:
        pass

    def on_synced(self, added: int) -> None:
        pass

    def on_processed(self, action_id: str) -> None:
        pass

    def before_ack(self) -> None:
        pass

    def send(self, action: dict[str, Any], name: str = "send → synced") -> tuple[int, str]:
        assert self.socket is not None
        message, added, ids = self.socket.make_sync(action)
        # recorded before the answer can come
        self.acked[added] = (time.time(), name)
        if action["type"] == "logux/subscribe":
            self.subscription = ids[0]
        self.socket.send(message)
        return added, ids[0]

    def subscribe(self, channel: str) -> None:
        """Subscribe and wait for the ``logux/processed`` that answers it."""
        started = time.time()
        _, action_id = self.send({"type": "logux/subscribe", "channel": channel}, "subscribe")
        if not wait_until(lambda: action_id in self.processed, WAIT_S, self.received):
            fire("subscribe → processed", started, f"no answer to subscribing to {channel}")
            raise StopUser()
        fire("subscribe → processed", started)


class ChatUser(LoguxUser):
    """Steady chat: one message every 0.5-2 s to its chat, reads everyone else's."""

    weight = 6
    wait_time = between(0.5, 2)

    def on_start(self) -> None:
        self.seq = 0
        self.pending: dict[int, int] = {}  # sync number → seq
        self.last: dict[str, int] = {}  # sender → newest seq received
        super().on_start()
        self.chat = f"load{self.index % max(1, self.options.chats)}"
        self.subscribe(f"chat/{self.chat}")

    def on_action(self, action: dict[str, Any]) -> None:
        if action.get("type") != "chat/message":
            return
        sender, seq, sent_us = parse_chat_text(action.get("text", ""))
        if not sender:
            return
        fire("chat delivery", sent_us / 1e6)
        previous = self.last.get(sender)
        if previous is not None and seq != previous + 1:
            what = "duplicate" if seq <= previous else "gap"
            fire(f"chat: {what}", time.time(), f"{sender}: {seq} after {previous}")
        self.last[sender] = max(seq, previous if previous is not None else seq)

    def on_synced(self, added: int) -> None:
        seq = self.pending.pop(added, None)
        if seq is not None:
            ACCEPTED.setdefault(self.chat, {})[self.user] = seq

    @task
    def say(self) -> None:
        self.seq += 1
        SENT.setdefault(self.chat, {})[self.user] = self.seq
        assert self.socket is not None
        self.pending[self.socket.sent + 1] = self.seq
        text = f"{self.user}/{self.seq}/{int(time.time() * 1e6)}"
        self.send({"type": "chat/message", "chat": self.chat, "text": text})


def parse_chat_text(text: str) -> tuple[str, int, int]:
    """``sender/seq/µs`` of a ChatUser's message; ``("", 0, 0)`` for anything else."""
    parts = text.split("/")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return "", 0, 0
    return parts[0], int(parts[1]), int(parts[2])


class StormUser(LoguxUser):
    """Offline/reconnect cycles: while it is away, another connection sends it ``notify``
    actions; it comes back together with every other StormUser offline then, and reports how
    long until it has them all, each once and in order."""

    weight = 3
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.cycle = 0
        self.got: list[str] = []
        self.problems: list[str] = []  # one per cycle that was not exactly once and in order
        super().on_start()

    def on_action(self, action: dict[str, Any]) -> None:
        if action.get("type") == "notify" and action.get("user") == self.user:
            self.got.append(str(action.get("text")))

    def produce(self, texts: list[str]) -> bool:
        """Send ``texts`` as ``notify`` to this user from another connection; True once the
        server acknowledged them (``synced``)."""
        started = time.time()
        producer = LoguxSocket(self.host, f"producer{self.index}x{RUN}:{self.cycle}")
        try:
            producer.open(timeout=WAIT_S)
            assert producer.ws is not None
            producer.ws.settimeout(WAIT_S)
            added, _ = producer.sync(
                *({"type": "notify", "user": self.user, "text": t} for t in texts)
            )
            while True:
                msg = producer.receive()
                if msg is None:
                    raise ConnectionError(f"closed before synced: {producer.close_reason}")
                if msg[0] == "synced" and msg[1] == added:
                    return True
                if msg[0] == "sync":
                    for i in range(2, len(msg), 2):
                        if msg[i].get("type") == "logux/undo":
                            raise RuntimeError(f"undo: {msg[i]}")
                    producer.send(["synced", msg[1]])
        except Exception as error:
            fire("storm producer", started, error)
            return False
        finally:
            producer.close()

    @task
    def offline_cycle(self) -> None:
        cycles = self.options.storm_cycles
        if cycles and self.cycle >= cycles:
            return  # done: stays connected and idle until the run ends
        self.reconnect_cycle()
        if cycles and self.cycle == cycles:
            fire(
                "storm user: every cycle caught up",
                time.time(),
                "; ".join(self.problems) or None,
                length=cycles,
            )

    def reconnect_cycle(self) -> None:
        assert self.socket is not None
        watermark = self.socket.watermark
        self.disconnect()
        self.cycle += 1
        texts = [f"{self.cycle}:{k}" for k in range(random.randint(5, 20))]
        if not self.produce(texts):
            self.problems.append(f"cycle {self.cycle}: the producer failed")
            self.connect(watermark)
            return
        period = max(self.options.storm_period, 0.1)
        back_at = math.ceil((time.time() + STORM_MIN_OFFLINE_S) / period) * period
        back_at += random.uniform(0, self.options.storm_jitter_ms / 1000)
        gevent.sleep(max(0.0, back_at - time.time()))
        self.got = []
        started = time.time()
        self.connect(watermark)
        wait_until(lambda: len(self.got) >= len(texts), WAIT_S, self.received)
        gevent.sleep(0)  # let the reader finish the sync it is in
        problem = exactly_once_in_order(texts, self.got)
        if problem:
            self.problems.append(f"cycle {self.cycle}: {problem}")
        fire("reconnect → caught up", started, problem or None, length=len(self.got))


def exactly_once_in_order(expected: list[str], got: list[str]) -> str:
    """What is wrong with ``got`` as a delivery of ``expected``; ``""`` when nothing is."""
    lost = [t for t in expected if t not in got]
    duplicated = len(got) - len(set(got))
    unexpected = [t for t in got if t not in expected]
    problems = []
    if lost:
        problems.append(f"lost {len(lost)} of {len(expected)}")
    if duplicated:
        problems.append(f"{duplicated} duplicated")
    if unexpected:
        problems.append(f"unexpected {unexpected[:3]}")
    if not problems and got != expected:
        problems.append("out of order")
    return ", ".join(problems)


class SlowConsumer(LoguxUser):
    """Subscribes to the busiest chat, withholds ``synced`` for a while, then reads slowly; must
    still get every message of the chat, once and in order."""

    weight = 1
    wait_time = between(5, 10)

    def on_start(self) -> None:
        self.holding_until = 0.0
        self.last: dict[str, int] = {}  # sender → newest seq received
        self.baseline: dict[str, int] | None = None
        self.chat = "load0"
        super().on_start()
        self.subscribe(f"chat/{self.chat}")

    def on_processed(self, action_id: str) -> None:
        if action_id == self.subscription:
            # what the chat's senders send from now on is appended after the subscription, so
            # it is owed to this consumer
            self.baseline = dict(SENT.get(self.chat, {}))

    def on_action(self, action: dict[str, Any]) -> None:
        if action.get("type") != "chat/message":
            return
        sender, seq, _ = parse_chat_text(action.get("text", ""))
        if not sender:
            return
        previous = self.last.get(sender)
        if previous is None:  # the first: at most one after what was sent before subscribing
            baseline = self.baseline if self.baseline is not None else {sender: seq}
            previous = min(baseline.get(sender, 0), seq - 1)
        if seq != previous + 1:
            what = "duplicate" if seq <= previous else "gap"
            fire(f"slow consumer: {what}", time.time(), f"{sender}: {seq} after {previous}")
        self.last[sender] = max(seq, previous)

    def before_ack(self) -> None:
        # no `synced` while holding, then 10 `sync` a second
        if time.time() < self.holding_until:
            gevent.sleep(self.holding_until - time.time())
        gevent.sleep(0.1)

    def owed(self, target: dict[str, int]) -> dict[str, int]:
        baseline = self.baseline or {}
        return {
            sender: seq
            for sender, seq in target.items()
            if seq > baseline.get(sender, 0) and self.last.get(sender, 0) < seq
        }

    @task
    def hold(self) -> None:
        options = self.options
        self.holding_until = time.time() + random.uniform(
            options.slow_hold_min, max(options.slow_hold_min, options.slow_hold_max)
        )
        gevent.sleep(max(0.0, self.holding_until - time.time()))
        started = time.time()
        target = dict(ACCEPTED.get(self.chat, {}))
        if wait_until(lambda: not self.owed(target), WAIT_S, self.received):
            fire("slow consumer → caught up", started, length=sum(target.values()))
        else:
            fire("slow consumer → caught up", started, f"still owed {self.owed(target)}")
