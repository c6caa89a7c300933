"""Socket-level fuzzer: hostile input to a real ``logsync serve``, and checks that it stays correct.

    python -m loadtest.fuzz --inputs 100000 --seed 1                 # both codecs, fresh SQLite file
    python -m loadtest.fuzz --inputs 2000 --seed 7 --codec msgpack --store memory --json
    python -m loadtest.fuzz --inputs 500 --sockets 1 --seed 3         # one socket: inputs in order

It starts its own server (``logsync serve tests.interop.app:app`` on 127.0.0.1, a fresh SQLite file
by default, ``--bruteforce-failures`` raised so that refused tokens do not lock the fuzzer out) and
sends a bounded number of inputs (``--inputs``, and at most ``--max-seconds``):

* from a pool of WebSockets (``--sockets``; with ``--codec both`` half speak JSON text frames, half
  msgpack binary frames) that reconnect when the server closes them. Each socket life sends a few
  inputs before authenticating (held ``sync``/``ping``, ``error``, garbage, too many or too big
  messages), a ``connect`` (good, bad token, mutated node id / protocol / subprotocol / synced / options),
  then inputs after it: structure-aware mutations of valid Logux messages (``sync`` with mutated
  meta id/time/subprotocol, extra meta keys, ids claiming other clients' node ids; action payloads
  with huge and non-finite numbers, ints past 64 bits, 2**53+1, msgpack bins, ext types and
  non-string keys, lone UTF-16 surrogates, deep nesting, long strings; ``logux/subscribe`` with odd
  channel/since/filter; ``synced``/``ping`` with odd values; unknown types) and raw garbage;
* at a low rate (``--frame-share``), frame-level hostile input over raw TCP: unmasked frames,
  reserved bits, unknown opcodes, short or long control frames, 1-byte close payloads, 2**63-byte
  lengths, partial frames, invalid UTF-8 text, fragmented handshakes, bad upgrade requests.

Every input on a WebSocket is sent alone: the socket waits for its outcome (a ``ping`` barrier
answered with ``pong``; for a ``sync``, its ``synced`` and an answer for each of its ids) before
the next one, so outcomes are attributed exactly. Inputs are drawn from one ``random.Random`` per
socket, seeded from ``--seed``: the same seed sends the same inputs (timing decides only when a
socket reconnects, never what it sends next).

Checks, reported at the end (``--json``: one JSON line):

(a) no ``Traceback`` in the server's output (the first ones are kept, with the inputs in flight);
(b) the server process is alive at the end (and answers ``/health``);
(c) two control clients (authenticated, subscribed to ``chat/fuzzctl``, one action every
    ``--control-interval-ms`` each) keep working: every action gets ``logux/processed`` and
    ``synced``, each receives the other's actions; their round trip p50/p99;
(d) every fuzz action whose ``sync`` got ``synced`` was answered (``logux/processed`` or
    ``logux/undo``), checked per socket, by id;
(e) outcomes per input kind (processed, undo with reason, error + close, close code, ignored).

Exit status 1 when (a), (b) or (c) fails (and with ``--strict``, when (d) does).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import re
import shlex
import struct
import sys
import time
import traceback
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import orjson

from loadtest.client import BenchClient
from loadtest.fanout import percentile
from loadtest.servers import Servers, cpu_seconds, machine, rss_kib, source

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.support: the suite's raw client

from logsync.protocol.codec import codec_for  # noqa: E402
from logsync.protocol.ids import decompress_id  # noqa: E402
from tests.support.wsclient import RawClient  # noqa: E402

APP = "tests.interop.app:app"
TOKEN = "secret"
SUBPROTOCOL = 3
CONTROL_CHANNEL = "chat/fuzzctl"
FUZZ_CHANNEL = "chat/fuzz"
CONTROL_USER = "ctrl"
# Values the interop app fails on on purpose (its tracebacks would be noise): never generated.
FORBIDDEN = {"fail", "broken"}
META_KEYS = ["reasons", "added", "channels", "users", "nodes", "clients", "keepLast", "status"]
META_KEYS += ["indexes", "__proto__", "excludeClients", "tab", "z", ""]
PRE_KINDS = ["pre/sync", "pre/sync", "pre/ping", "pre/error", "pre/headers", "pre/garbage"]
PRE_KINDS += ["pre/unknown", "pre/too-many", "pre/too-big", "pre/debug", "pre/duilian"]
ANSWERS = ("logux/processed", "logux/undo")
OPEN_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0
BARRIER_TIMEOUT = 10.0
SYNC_TIMEOUT = 15.0
ANSWER_GRACE = 3.0  # after `synced`, how long an answer may still take (undos go through the log)
SUBSCRIBE_GRACE = 20.0
PRE_WAIT = 0.03  # after an input before auth, how long to look for the server closing
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d")


# -- values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawJson:
    """Text put as is into a JSON frame (invalid numbers, deep nesting)."""

    text: str


@dataclass(frozen=True)
class RawMsgpack:
    """Bytes put as is into a msgpack frame (invalid UTF-8 strings, reserved bytes, deep nesting)."""

    data: bytes


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def to_json(value: Any, ascii_only: bool = False) -> str:
    """JSON text of ``value``, including what JSON cannot carry: ``NaN``/``Infinity`` literals,
    ints of any size, lone surrogates as ``\\ud83d`` escapes; bytes as latin-1 strings."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=ascii_only or _has_surrogate(value))
    if isinstance(value, bytes | bytearray):
        return json.dumps(bytes(value).decode("latin-1"), ensure_ascii=ascii_only)
    if isinstance(value, RawJson):
        return value.text
    if isinstance(value, RawMsgpack):
        return json.dumps(value.data.decode("latin-1"))
    if isinstance(value, list | tuple):
        return "[" + ",".join(to_json(v, ascii_only) for v in value) + "]"
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            name = key.text if isinstance(key, RawJson) else to_json(str(key), ascii_only)
            if isinstance(key, str):
                name = to_json(key, ascii_only)
            items.append(f"{name}:{to_json(item, ascii_only)}")
        return "{" + ",".join(items) + "}"
    return json.dumps(str(value))


def _msgpack_str(data: bytes) -> bytes:
    size = len(data)
    if size < 32:
        head = bytes((0xA0 | size,))
    elif size < 256:
        head = bytes((0xD9, size))
    elif size < 65536:
        head = b"\xda" + struct.pack(">H", size)
    else:
        head = b"\xdb" + struct.pack(">I", size)
    return head + data


def to_msgpack(value: Any) -> bytes:
    """msgpack of ``value``; :class:`RawMsgpack` parts spliced in as is, strings with lone
    surrogates as (invalid) UTF-8 bytes, ints past 64 bits as floats."""
    raws: list[bytes] = []

    def marker(data: bytes) -> str:
        raws.append(data)
        return f"\x00raw{len(raws) - 1}\x00"

    def prep(v: Any) -> Any:
        if isinstance(v, RawMsgpack):
            return marker(v.data)
        if isinstance(v, RawJson):
            return v.text
        if isinstance(v, str) and _has_surrogate(v):
            return marker(_msgpack_str(v.encode("utf-8", "surrogatepass")))
        if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**64:
            return float(v)
        if isinstance(v, list | tuple):
            return [prep(x) for x in v]
        if isinstance(v, dict):
            return {
                (prep(k) if isinstance(k, str | RawMsgpack) else k): prep(x) for k, x in v.items()
            }
        return v

    packed = bytes(msgpack.packb(prep(value), use_bin_type=True))
    for i, data in enumerate(raws):
        packed = packed.replace(bytes(msgpack.packb(f"\x00raw{i}\x00")), data, 1)
    return packed


def decode_sent(frame: str | bytes) -> Any:
    """What the server decodes from a frame we sent (None when it can't): through the server's
    own codecs, so that what counts as a `sync` or a `ping` follows the server's decoding."""
    try:
        return codec_for(frame).decode(frame)
    except Exception:
        return None


def show(frame: str | bytes, limit: int = 300) -> str:
    """A printable, bounded form of a frame for the report."""
    text = frame if isinstance(frame, str) else "0x" + frame[: limit // 2].hex()
    return text if len(text) <= limit else f"{text[:limit]}…(+{len(text) - limit})"


NAN, INF = float("nan"), float("inf")
NUMBERS = [0, -1, 1, 2, 7, 2**31, 2**31 - 1, 2**32, 2**53, 2**53 + 1, -(2**53) - 1, 2**63 - 1]
NUMBERS += [2**63, 2**64 - 1, -(2**63), 1e300, -1e300, 1e-300, 5e-324, -0.0, 0.5, 1.5, -7.25]
NUMBERS += [1e16, 1.7976931348623157e308, True, False, None]
JSON_ONLY_NUMBERS: list[Any] = [2**64, -(2**63) - 1, 10**30, -(10**30), 2**200, NAN, INF, -INF]
JSON_ONLY_NUMBERS += [RawJson("1e400"), RawJson("-1e400"), RawJson("1" + "0" * 400), RawJson("-0")]
JSON_ONLY_NUMBERS += [RawJson("1E5"), RawJson("0.1e-400"), RawJson("01"), RawJson("+1")]
MSGPACK_ONLY_NUMBERS: list[Any] = [
    NAN,
    INF,
    -INF,
    RawMsgpack(b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x01"),
]
STRINGS = ["", " ", "a b", ":", "::", "a:b:c:d", "\x00", "x\x00y", "é", "日本語", "🎉", "\ud83d"]
STRINGS += ["\udc00", "\ud83d\ud83d", "\u202e", "\ufeff", "null", "__proto__", "constructor"]
STRINGS += ["logux/processed", "%s%s%n", "' OR 1=1 --", "../../etc/passwd", "\n\r\t", "\\"]
STRINGS += ["server:node1", "ctrl:a:1", "fuzz0:1:t", "0 ctrl:a:1 0", "1 2 3"]
MSGPACK_ODD: list[Any] = [
    b"",
    b"\x00\xff",
    b"bytes",
    msgpack.ExtType(5, b"x"),
    RawMsgpack(b"\xd6\xff\x00\x00\x00\x01"),  # a timestamp (ext type -1)
    msgpack.Timestamp(1, 5),
    RawMsgpack(b"\xc1"),  # the never-used byte
    RawMsgpack(b"\xa3\xff\xfe\xfd"),  # a str that is not UTF-8
    RawMsgpack(b"\xd9\x05ab"),  # a str shorter than it says
    RawMsgpack(b"\x81\x01\x02"),  # a map with an int key
    RawMsgpack(b"\x81\xc4\x01k\x01"),  # a map with a bytes key
]


class Gen:
    """Inputs for one socket, from its own seeded ``random.Random``."""

    def __init__(self, rng: random.Random, binary: bool, index: int, sockets: int) -> None:
        self.rng = rng
        self.binary = binary
        self.index = index
        self.sockets = sockets
        self.user = f"fuzz{index}"

    # -- primitives --------------------------------------------------------------------------

    def number(self) -> Any:
        rng = self.rng
        extra = MSGPACK_ONLY_NUMBERS if self.binary else JSON_ONLY_NUMBERS
        if rng.random() < 0.25:
            return rng.choice(extra)
        if rng.random() < 0.2:
            return rng.choice([rng.randint(-(2**70), 2**70), rng.uniform(-1e20, 1e20)])
        return rng.choice(NUMBERS)

    def long_string(self) -> str:
        rng = self.rng
        size = rng.choice([1001, 4096, 17_000, 70_000])
        return rng.choice("xé🎉") * size

    def string(self) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.5:
            text: str = rng.choice(STRINGS)
        elif r < 0.8:
            alphabet = "ab:/ _-0é\x01\u2028🎉"
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        elif r < 0.95:
            text = "".join(chr(rng.randint(1, 0x2FFFF)) for _ in range(rng.randint(1, 8)))
            text = "".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF) or "z"
        else:
            text = self.long_string()
        return "z" if text in FORBIDDEN or text.startswith("ctl:") else text

    def deep(self) -> Any:
        depth = self.rng.choice([64, 200, 254, 255, 256, 300, 513, 1000, 1100, 5000])
        if self.rng.random() < 0.5:
            if self.binary:
                return RawMsgpack(b"\x91" * depth + b"\xc0")
            return RawJson("[" * depth + "]" * depth)
        if self.binary:
            return RawMsgpack(b"\x81\xa1a" * depth + b"\xc0")
        return RawJson('{"a":' * depth + "null" + "}" * depth)

    def value(self, depth: int = 0) -> Any:
        rng = self.rng
        r = rng.random()
        if r < 0.35:
            return self.number()
        if r < 0.65:
            return self.string()
        if r < 0.72 and self.binary:
            return rng.choice(MSGPACK_ODD)
        if r < 0.76:
            return self.deep()
        if depth > 2:
            return None
        if r < 0.88:
            return [self.value(depth + 1) for _ in range(rng.randint(0, 4))]
        if r < 0.92:
            return list(range(rng.choice([100, 5000])))
        obj: dict[Any, Any] = {
            self.string(): self.value(depth + 1) for _ in range(rng.randint(0, 3))
        }
        if self.binary and rng.random() < 0.3:
            obj[rng.choice([1, -1, 1.5, None, b"k", True])] = self.value(depth + 1)
        return obj

    def mutate(self, value: Any, rounds: int = 0) -> Any:
        """``value`` with 1-3 structure-aware changes at random places in its tree."""
        rng = self.rng
        for _ in range(rounds or rng.choice([1, 1, 1, 2, 3])):
            value = self._mutate_once(value)
        return value

    def _mutate_once(self, value: Any) -> Any:
        rng = self.rng
        paths: list[tuple[Any, ...]] = []

        def walk(node: Any, path: tuple[Any, ...]) -> None:
            paths.append(path)
            if len(paths) > 200:
                return
            if isinstance(node, list):
                for i, item in enumerate(node):
                    walk(item, (*path, i))
            elif isinstance(node, dict):
                for key, item in node.items():
                    walk(item, (*path, key))

        walk(value, ())
        path = rng.choice(paths[1:] or paths)
        if not path:
            return self._change(value)
        parent = value
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        op = rng.random()
        if op < 0.55:
            parent[last] = self._change(parent[last])
        elif op < 0.7:
            del parent[last]
        elif op < 0.85:
            if isinstance(parent, list):
                parent.insert(rng.randint(0, len(parent)), self.value())
            else:
                parent[self.string()] = self.value()
        elif op < 0.93:
            parent[last] = rng.choice([[parent[last]], {"x": parent[last]}])
        elif isinstance(parent, list):
            parent.append(parent[last])
        else:
            parent[last] = None
        return value

    def _change(self, old: Any) -> Any:
        rng = self.rng
        if isinstance(old, str) and rng.random() < 0.4:
            choices: list[Callable[[], Any]] = [
                lambda: old + self.string(),
                lambda: old.upper(),
                lambda: old[: rng.randint(0, len(old))],
                lambda: old + "\ud83d",
                lambda: old * rng.randint(2, 50),
                lambda: old.encode("utf-8", "surrogatepass") if self.binary else old + " ",
            ]
            return rng.choice(choices)()
        if isinstance(old, int | float) and not isinstance(old, bool) and rng.random() < 0.4:
            return rng.choice([-old, old + 0.5, old * 2**40, self.number()])
        return self.value()

    # -- ids and metas -------------------------------------------------------------------------

    def other_node(self) -> str:
        rng = self.rng
        other = rng.randrange(self.sockets)
        return rng.choice(
            [
                f"{CONTROL_USER}:a:9",
                f"{CONTROL_USER}:b:9",
                f"fuzz{other}:1:t",
                "server:node1",
                f"fuzz{other}:x",
                f"{self.user}:other",
                "x",
                self.string() or "y",
            ]
        )

    def meta(self, seq: int) -> dict[str, Any]:
        """A valid wire meta: this node's id ``[0, seq]``, time 0."""
        return {"id": [0, seq], "time": 0}

    def mutated_meta(self, seq: int) -> dict[str, Any]:
        rng = self.rng
        meta: dict[str, Any] = self.meta(seq)
        for _ in range(rng.choice([1, 1, 2])):
            r = rng.random()
            if r < 0.25:
                meta["id"] = rng.choice(
                    [
                        [self.number(), seq],
                        [0, self.number()],
                        self.number(),
                        [0, self.other_node(), seq],
                        [self.number(), self.other_node(), self.number()],
                        [0, self.string(), seq],
                        [0, seq, 1],
                        [0],
                        [],
                        [0, None, seq],
                        self.string(),
                        self.value(),
                    ]
                )
            elif r < 0.45:
                meta["time"] = rng.choice([self.number(), self.string(), self.value()])
            elif r < 0.6:
                meta["subprotocol"] = rng.choice([self.number(), self.string(), self.value()])
            elif r < 0.8:
                key = rng.choice(META_KEYS)
                meta[key] = rng.choice([self.value(), ["x"], "all", 1])
            elif r < 0.9:
                if meta:
                    del meta[rng.choice(list(meta))]
            else:
                meta = self.mutate(meta)
        return meta

    # -- actions -------------------------------------------------------------------------------

    def action(self) -> dict[str, Any]:
        """A valid action of the interop app (some are refused by its rules)."""
        rng = self.rng
        text = rng.choice(["hello", "x", "🎉", "a" * 50])
        channels = [FUZZ_CHANNEL, CONTROL_CHANNEL, f"user/{self.user}", "user/other"]
        channels += ["chat/missing", "chat/secret", "nope", "chat/", "user/"]
        choices: list[Callable[[], dict[str, Any]]] = [
            lambda: {"type": "chat/message", "chat": "fuzz", "text": text},
            lambda: {"type": "chat/message", "chat": "fuzzctl", "text": text},
            lambda: {"type": "notify", "user": CONTROL_USER, "text": text},
            lambda: {"type": "notify", "user": f"fuzz{rng.randrange(self.sockets)}", "text": text},
            lambda: {"type": "counter/inc"},
            lambda: {"type": "CHANGE_NAME", "user": self.user, "name": text},
            lambda: {"type": "CHANGE_NAME", "user": "other", "name": text},
            lambda: {"type": "denied/action"},
            lambda: {"type": "logux/subscribe", "channel": rng.choice(channels)},
            lambda: {"type": "logux/unsubscribe", "channel": rng.choice(channels)},
            lambda: {"type": rng.choice(["unknown/type", "logux/whatever", "", " "])},
            lambda: {"type": rng.choice(ANSWERS), "id": f"1 {self.other_node()} 0", "reason": "x"},
        ]
        return rng.choice(choices)()

    def delivered_action(self) -> dict[str, Any]:
        """An action the app accepts and resends to other clients (controls among them)."""
        rng = self.rng
        return rng.choice(
            [
                {"type": "chat/message", "chat": "fuzz", "text": "poison"},
                {"type": "chat/message", "chat": "fuzzctl", "text": "poison"},
                {"type": "notify", "user": CONTROL_USER, "text": "poison"},
                {"type": "notify", "user": f"fuzz{rng.randrange(self.sockets)}", "text": "x"},
            ]
        )

    def subscribe_action(self) -> dict[str, Any]:
        rng = self.rng
        action: dict[str, Any] = {"type": "logux/subscribe", "channel": FUZZ_CHANNEL}
        for _ in range(rng.choice([1, 1, 2, 3])):
            r = rng.random()
            if r < 0.3:
                action["channel"] = rng.choice(
                    [
                        self.string(),
                        self.value(),
                        "chat/" + self.string(),
                        "user/" + self.string(),
                        "chat/" + "x" * rng.choice([511, 512, 513, 5000]),
                        CONTROL_CHANNEL,
                        f"user/{self.user}",
                    ]
                )
            elif r < 0.6:
                action["since"] = rng.choice(
                    [
                        {"id": self.string(), "time": self.number()},
                        {"id": f"1 {self.user}:1:t 1", "time": 0},
                        {"time": self.number()},
                        {"id": self.value()},
                        self.value(),
                        {"id": "0 server:node1 0", "time": -1},
                    ]
                )
            elif r < 0.8:
                action["filter"] = rng.choice([self.value(), {"a": self.value()}, {"": None}])
            else:
                action[rng.choice(["creating", "fields", "x", "type2"])] = self.value()
        if isinstance(action.get("channel"), str) and action["channel"].endswith(tuple(FORBIDDEN)):
            action["channel"] += "x"
        return action


# -- one input ---------------------------------------------------------------------------------


def is_ping(frame: str | bytes) -> bool:
    """Whether the server reads ``frame`` as a valid ``ping`` (answered with ``pong``)."""
    msg = decode_sent(frame)
    return (
        isinstance(msg, list)
        and len(msg) == 2
        and msg[0] == "ping"
        and isinstance(msg[1], int | float)
        and not isinstance(msg[1], bool)
    )


@dataclass
class Input:
    kind: str
    frames: list[str | bytes]
    connect: bool = False
    fresh_ids: bool = True  # its action ids were never sent before (else: a duplicate on purpose)
    pings: int = field(init=False)  # `ping` messages among the frames (each gets a `pong`)

    def __post_init__(self) -> None:
        self.pings = sum(1 for f in self.frames if is_ping(f))

    def shown(self) -> str:
        return " | ".join(show(f) for f in self.frames)


@dataclass
class PendingSync:
    """A `sync` we sent that the server decoded as one: its `added` and action ids."""

    input: Input
    added: Any
    wire_ids: list[Any]
    full_ids: set[str] | None = None
    synced: bool = False
    synced_at: float = 0.0


def same_number(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return (a is None and b is None) or _nan(a) or _nan(b)  # JSON carries NaN as null
    try:
        return bool(a == b) or (_nan(a) and _nan(b))
    except Exception:
        return False


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


class Life:
    """One WebSocket of a fuzz socket, from open to close: what the server said on it."""

    def __init__(self, raw: RawClient, node_id: str) -> None:
        self.raw = raw
        self.ws = raw.ws
        self.binary = raw.binary
        self.node_id = node_id
        self.base_time = 0
        self.connected = False
        self.closed = False
        self.close_code: int | None = None
        self.errors: list[list[Any]] = []
        self.pongs = 0
        self.pongs_expected = 0
        self.syncs: list[PendingSync] = []
        self.answers: dict[str, str] = {}  # full id → "processed" / "undo:<reason>"
        self.answer_log: list[str] = []  # ids of the answers, in arrival order
        self.matched: set[str] = set()  # answer ids attributed to an input
        self.settled: dict[str, str] = {}  # repr(added) → the `sync` settled with it
        self.anomalies: list[tuple[str, str]] = []
        self.added = 0
        self.seq = 0
        self.watermark: Any = 0
        self.changed = asyncio.Event()
        self.history: deque[str] = deque(maxlen=4)  # the last frames sent
        self.reader = asyncio.create_task(self._read())

    def encode(self, message: Any, binary: bool | None = None) -> str | bytes:
        binary = self.binary if binary is None else binary
        return to_msgpack(message) if binary else to_json(message)

    async def send(self, frame: str | bytes) -> bool:
        self.history.append(show(frame, 200))
        if self.closed or self.ws.closed:
            return False
        try:
            await self.raw.send_raw(frame)
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            return False
        return True

    async def _read(self) -> None:
        try:
            while True:
                msg = await self.ws.receive()
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    await self._handle_frame(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    self.anomalies.append(("socket-error", repr(msg.data)))
                    break
                elif msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                ):
                    break
                self.changed.set()
        except Exception as error:  # a client-side failure is reported, never fatal
            self.anomalies.append(("reader", repr(error)))
        finally:
            self.closed = True
            self.close_code = self.ws.close_code
            self.changed.set()

    async def _handle_frame(self, data: str | bytes) -> None:
        try:
            msg = orjson.loads(data) if isinstance(data, str) else msgpack.unpackb(data, raw=False)
        except Exception as error:
            self.anomalies.append(("undecodable-frame-from-server", f"{error}: {show(data)}"))
            return
        if not isinstance(msg, list) or not msg or not isinstance(msg[0], str):
            self.anomalies.append(("odd-message-from-server", show(data)))
            return
        kind = msg[0]
        if kind == "connected":
            self.connected = True
            try:
                self.base_time = int(msg[3][1])
            except Exception:
                self.anomalies.append(("odd-connected", show(data)))
        elif kind == "error":
            self.errors.append(msg)
        elif kind == "pong":
            self.pongs += 1
        elif kind == "synced":
            value = msg[1] if len(msg) > 1 else None
            for pending in self.syncs:
                if not pending.synced and same_number(pending.added, value):
                    pending.synced, pending.synced_at = True, time.monotonic()
                    break
            else:
                sent = " / ".join(self.history)
                before = self.settled.get(repr(value), "nothing")
                self.anomalies.append(
                    ("synced-for-nothing-sent", f"{show(data)} after {sent}; earlier: {before}")
                )
        elif kind == "sync":
            for action in msg[2::2]:
                if isinstance(action, dict) and action.get("type") in ANSWERS:
                    answer = "processed"
                    if action["type"] == "logux/undo":
                        answer = f"undo:{action.get('reason')}"
                    answer_id = action.get("id")
                    if isinstance(answer_id, str):
                        self.answers.setdefault(answer_id, answer)
                        self.answer_log.append(answer_id)
            self.watermark = msg[1]
            await self.send(self.encode(["synced", msg[1]]))
        elif kind == "ping":
            await self.send(self.encode(["pong", self.watermark]))

    async def wait(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``done()`` (True) or the socket closes / ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while not done():
            if self.closed:
                return done()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.5))
        return True

    def closed_outcome(self) -> str:
        if self.errors:
            return f"error:{self.errors[-1][1]}"
        return f"closed:{self.close_code}"

    def full_ids(self, pending: PendingSync) -> set[str] | None:
        ids = set()
        for wire in pending.wire_ids:
            try:
                ids.add(decompress_id(wire, self.base_time, self.node_id))
            except Exception:
                return None
        return ids

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.raw.close(), 5)
        self.reader.cancel()
        with contextlib.suppress(BaseException):
            await self.reader


# -- the fuzzer --------------------------------------------------------------------------------


@dataclass
class Report:
    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    examples: dict[tuple[str, str], str] = field(default_factory=dict)
    inputs: int = 0
    synced_actions: int = 0
    answered_actions: int = 0
    violations: list[dict[str, Any]] = field(default_factory=list)
    violation_count: int = 0
    unsynced: list[dict[str, Any]] = field(default_factory=list)
    unsynced_count: int = 0
    id_mismatches: int = 0
    anomalies: Counter[str] = field(default_factory=Counter)
    anomaly_examples: dict[str, str] = field(default_factory=dict)
    refused: int = 0
    current: dict[int, Input] = field(default_factory=dict)

    def record(self, inp: Input, outcome: str) -> None:
        self.outcomes[inp.kind][outcome] += 1
        self.examples.setdefault((inp.kind, outcome), inp.shown())

    def anomaly(self, kind: str, text: str) -> None:
        self.anomalies[kind] += 1
        self.anomaly_examples.setdefault(kind, text[-2000:] if "Traceback" in text else text[:500])


class Fuzzer:
    def __init__(self, args: argparse.Namespace, url: str) -> None:
        self.args = args
        self.url = url
        self.report = Report()
        self.deadline = time.monotonic() + args.max_seconds
        self.binary_of = self._codecs()

    def _codecs(self) -> list[bool]:
        n = self.args.sockets
        if self.args.codec == "json":
            return [False] * n
        if self.args.codec == "msgpack":
            return [True] * n
        return [i % 2 == 1 for i in range(n)]

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    async def run(self) -> None:
        args = self.args
        frames = round(args.inputs * args.frame_share) if args.frame_share > 0 else 0
        ws_inputs = args.inputs - frames
        quotas = [
            ws_inputs // args.sockets + (i < ws_inputs % args.sockets) for i in range(args.sockets)
        ]
        tasks = [asyncio.create_task(self.socket_loop(i, q)) for i, q in enumerate(quotas)]
        if frames:
            tasks.append(asyncio.create_task(self.frame_loop(frames)))
        await asyncio.gather(*tasks)

    # -- WebSocket inputs --------------------------------------------------------------------

    async def socket_loop(self, index: int, quota: int) -> None:
        rng = random.Random(f"{self.args.seed}/{index}")
        binary = self.binary_of[index]
        gen = Gen(rng, binary, index, self.args.sockets)
        sent = 0
        life_no = 0
        previous: tuple[str, Any] | None = None
        while sent < quota and not self.out_of_time():
            life_no += 1
            node_id = f"{gen.user}:{life_no}:t"
            reuse = previous is not None and rng.random() < 0.1
            if reuse and previous is not None:
                node_id = previous[0]
            try:
                raw = await asyncio.wait_for(RawClient.open(self.url, binary=binary), OPEN_TIMEOUT)
            except Exception as error:
                self.report.refused += 1
                self.report.anomaly("open-failed", repr(error))
                await asyncio.sleep(0.2 + rng.random() * 0.3)
                continue
            life = Life(raw, node_id)
            try:
                sent += await self.one_life(life, gen, quota - sent, reuse, previous)
            except Exception as error:  # a bug of the fuzzer itself: reported, the run goes on
                sent += 1
                self.report.anomaly("fuzzer-error", "".join(traceback.format_exception(error)))
            finally:
                self.report.current.pop(index, None)
                for kind, text in life.anomalies:
                    self.report.anomaly(kind, f"{node_id}: {text}")
                await life.close()
            if life.connected:
                previous = (node_id, life.watermark)

    async def one_life(
        self, life: Life, gen: Gen, budget: int, reuse: bool, previous: tuple[str, Any] | None
    ) -> int:
        rng, index = gen.rng, gen.index
        sent = 0
        # before `connect`
        pre_inputs: list[Input] = []
        for _ in range(min(budget - 1, rng.choice([0, 0, 0, 0, 0, 0, 1, 1, 2, 3]))):
            inp = self.pre_input(gen, life)
            self.report.current[index] = inp
            sent += 1
            for frame in inp.frames:
                await life.send(frame)
            life.pongs_expected += inp.pings
            await life.wait(lambda: False, PRE_WAIT)
            if life.closed:
                for pre in pre_inputs:
                    self.report.record(pre, "held, then closed: " + life.closed_outcome())
                self.report.record(inp, life.closed_outcome())
                return sent
            pre_inputs.append(inp)
        # `connect`
        inp = self.connect_input(gen, life, reuse, previous)
        self.report.current[index] = inp
        sent += 1
        for frame in inp.frames:
            await life.send(frame)
        await life.wait(lambda: life.connected, CONNECT_TIMEOUT)
        if not life.connected:
            outcome = life.closed_outcome() if life.closed else "no-answer"
            self.report.record(inp, outcome)
            for pre in pre_inputs:
                self.report.record(pre, "held, never handled: " + outcome)
            return sent
        self.report.record(inp, "connected")
        for pre in pre_inputs:
            self.report.record(pre, await self.settle(life, pre))
        # after it
        for _ in range(min(budget - sent, rng.randint(1, 60))):
            if self.out_of_time():
                break
            inp = self.post_input(gen, life)
            self.report.current[index] = inp
            sent += 1
            for frame in inp.frames:
                if not await life.send(frame):
                    break
            life.pongs_expected += inp.pings
            outcome = await self.settle(life, inp)
            self.report.record(inp, outcome)
            if life.closed or outcome == "no-pong":
                break  # (without its pong the barrier can't be trusted on this socket)
        return sent

    def note_syncs(self, life: Life, inp: Input) -> None:
        for frame in inp.frames:
            msg = decode_sent(frame)
            if (
                isinstance(msg, list)
                and len(msg) >= 2
                and len(msg) % 2 == 0
                and msg[0] == "sync"
                and isinstance(msg[1], int | float)
                and not isinstance(msg[1], bool)
                and all(isinstance(m, dict) for m in msg[3::2])
            ):
                wire_ids = [m.get("id") for m in msg[3::2]]
                life.syncs.append(PendingSync(inp, msg[1], wire_ids))

    async def settle(self, life: Life, inp: Input) -> str:
        """Wait for the outcome of ``inp`` (already sent) and return it."""
        report = self.report
        mine = [p for p in life.syncs if p.input is inp]
        if not life.connected:
            return life.closed_outcome() if life.closed else "no-answer"
        # a `ping` barrier: everything before it has been read and answered
        if not life.closed and await life.send(life.encode(["ping", 1])):
            life.pongs_expected += 1
        await life.wait(lambda: life.pongs >= life.pongs_expected, BARRIER_TIMEOUT)
        if life.closed and not mine:
            return life.closed_outcome()
        if not mine:
            if life.pongs < life.pongs_expected:
                return "no-pong"
            return "pong" if inp.pings else "ignored"
        for pending in mine:
            pending.full_ids = life.full_ids(pending)
        expected = set().union(*(p.full_ids or set() for p in mine))
        stray_from = max(0, len(life.answer_log) - 200)  # answers under ids we did not compute

        def answered(p: PendingSync) -> bool:
            return p.full_ids is not None and p.full_ids.issubset(life.answers)

        def settled() -> bool:
            return all(p.synced and answered(p) for p in mine)

        await life.wait(lambda: all(p.synced for p in mine) or settled(), SYNC_TIMEOUT)
        if all(p.synced for p in mine) and not settled():
            # a resubscription's answer comes after the channel history it replays
            await life.wait(settled, SUBSCRIBE_GRACE if inp.kind == "subscribe" else ANSWER_GRACE)
        outcomes = set()
        for pending in mine:
            life.syncs.remove(pending)
            life.settled[repr(pending.added)] = (
                f"{inp.kind} {inp.shown()[:200]} synced={pending.synced} closed={life.closed}"
            )
            count = len(pending.wire_ids)
            if not pending.synced:
                if life.closed:
                    outcomes.add(life.closed_outcome())
                    continue
                report.unsynced_count += 1
                if len(report.unsynced) < 20:
                    report.unsynced.append({"kind": inp.kind, "input": inp.shown()})
                outcomes.add("not-synced")
                continue
            report.synced_actions += count
            if pending.full_ids is None:
                outcomes.add("synced, ids not computable")
                continue
            got = [life.answers[i] for i in pending.full_ids if i in life.answers]
            missing = len(pending.full_ids) - len(got)
            if missing:
                strays = [
                    i
                    for i in life.answer_log[stray_from:]
                    if i not in expected and i not in life.matched
                ]
                if len(strays) >= missing:
                    report.id_mismatches += missing
                    got += [life.answers[i] for i in strays[:missing]]
                    life.matched.update(strays[:missing])
                    missing = 0
            life.matched.update(i for i in pending.full_ids if i in life.answers)
            report.answered_actions += len(got)
            if missing:
                if inp.fresh_ids:
                    report.violation_count += 1
                    if len(report.violations) < 20:
                        report.violations.append(
                            {
                                "kind": inp.kind,
                                "input": inp.shown(),
                                "missing": sorted(pending.full_ids - set(life.answers))[:5],
                                "closed": life.closed,
                            }
                        )
                    outcomes.add("synced-unanswered")
                else:
                    outcomes.add("synced, duplicate not answered again")
            outcomes.update(got)
        return "+".join(sorted(outcomes)) or "ignored"

    # -- input makers ------------------------------------------------------------------------

    def sync(self, life: Life, gen: Gen, kind: str, action: Any, meta: Any = None) -> Input:
        life.seq += 1
        life.added += 1
        message = ["sync", life.added, action, gen.meta(life.seq) if meta is None else meta]
        return Input(kind, [life.encode(message)])

    def pre_input(self, gen: Gen, life: Life) -> Input:
        rng = gen.rng
        kind = rng.choice(PRE_KINDS)
        if kind == "pre/sync":
            inp = self.sync(life, gen, kind, gen.action())
            self.note_syncs(life, inp)
            return inp
        if kind == "pre/ping":
            return Input(kind, [life.encode(["ping", rng.choice([0, 1, gen.number()])])])
        if kind == "pre/error":
            message = ["error", rng.choice(["timeout", "wrong-format", gen.string()]), gen.value()]
            return Input(kind, [life.encode(message)])
        if kind == "pre/headers":
            return Input(kind, [life.encode(["headers", {gen.string(): gen.value()}])])
        if kind == "pre/debug":
            return Input(kind, [life.encode(["debug", "error", gen.string()])])
        if kind == "pre/duilian":
            return Input(kind, [life.encode(["duilian", rng.choice(["金木水火土", gen.string()])])])
        if kind == "pre/unknown":
            return Input(kind, [life.encode([gen.string() or "x", gen.value()])])
        if kind == "pre/too-many":
            return Input(kind, [life.encode(["ping", i]) for i in range(101)])
        if kind == "pre/too-big":
            return Input(kind, [life.encode(["headers", {"x": "y" * 20_000}])])
        return Input(kind, [self.garbage(gen)])

    def connect_input(
        self, gen: Gen, life: Life, reuse: bool, previous: tuple[str, Any] | None
    ) -> Input:
        rng = gen.rng
        options: Any = {"token": TOKEN, "subprotocol": SUBPROTOCOL}
        message: list[Any] = ["connect", 5, life.node_id, 0, options]
        r = rng.random()
        if reuse and previous is not None:
            kind = "connect/reuse"
            message[3] = previous[1] if rng.random() < 0.7 else 0
        elif r < 0.7:
            kind = "connect/good"
        elif r < 0.77:
            kind = "connect/bad-token"
            options["token"] = rng.choice(
                ["", "wrong", "SECRET", "secret ", "secret\x00", "\ud83d"]
            )
        else:
            kind = "connect/mutated"
            part = rng.choice(
                ["node", "node", "protocol", "synced", "token", "sub", "options", "any"]
            )
            if part == "node":
                node = rng.choice(
                    [
                        "",
                        " ",
                        "a b",
                        gen.user,
                        f"{gen.user}:",
                        ":x",
                        "::",
                        "a:b:c:d:e",
                        "server:node1",
                        "server:x",
                        "x" * 10_000,
                        "日本:語:🎉",
                        f"{gen.user}:\ud83d:t",
                        gen.string(),
                        f"{CONTROL_USER}:fz{gen.index}:1",
                        f"{gen.user}:{life.node_id}",
                    ]
                )
                message[2] = node
                if (
                    isinstance(node, str)
                    and node.startswith(f"{CONTROL_USER}:")
                    and ":fz" not in node
                ):
                    message[2] = life.node_id  # never take over a control client's id
                life.node_id = message[2] if isinstance(message[2], str) else life.node_id
            elif part == "protocol":
                message[1] = rng.choice([4, 6, 5.5, 5.0, -1, 0, gen.number()])
            elif part == "synced":
                message[3] = rng.choice([-1, 0.5, 2**53 + 1, 2**63, gen.number()])
            elif part == "token":
                options["token"] = gen.value()
            elif part == "sub":
                options["subprotocol"] = rng.choice(
                    [1, 2, 4, 99, 0, -1, 3.5, "3", None, gen.number()]
                )
            elif part == "options":
                message[4] = rng.choice([gen.value(), None, [], {"token": TOKEN}, {}])
                if rng.random() < 0.5:
                    message = message[:4]
            else:
                message = gen.mutate(message)
                if isinstance(message, list) and len(message) > 2 and isinstance(message[2], str):
                    if message[2].startswith(f"{CONTROL_USER}:"):
                        message[2] = life.node_id
                    life.node_id = message[2]
            if isinstance(options, dict) and rng.random() < 0.2:
                options[gen.string()] = gen.value()
        frames = [life.encode(message)]
        decoded = decode_sent(frames[0])  # the node id as the server reads it (lone surrogates)
        if isinstance(decoded, list) and len(decoded) > 2 and isinstance(decoded[2], str):
            life.node_id = decoded[2]
        if rng.random() < 0.05:  # what comes in the same write as `connect`
            frames.append(life.encode(["connect", 5, life.node_id, 0, options]))
        return Input(kind, frames, connect=True)

    def post_input(self, gen: Gen, life: Life) -> Input:
        rng = gen.rng
        kinds = [
            ("sync/valid", 10),
            ("sync/meta", 14),
            ("sync/action", 14),
            ("sync/extra", 10),
            ("sync/multi", 6),
            ("sync/dup", 3),
            ("subscribe", 10),
            ("synced", 4),
            ("ping", 4),
            ("msg/other", 6),
            ("msg/mutated", 8),
            ("garbage", 5),
            ("codec-switch", 2),
            ("deep", 2),
            ("long", 2),
        ]
        kind = rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        inp = self._post(kind, gen, life)
        self.note_syncs(life, inp)
        return inp

    def _post(self, kind: str, gen: Gen, life: Life) -> Input:
        rng = gen.rng
        if kind == "sync/valid":
            return self.sync(life, gen, kind, gen.action())
        if kind == "sync/meta":
            life.seq += 1
            return self.sync(life, gen, kind, gen.action(), gen.mutated_meta(life.seq))
        if kind == "sync/action":
            return self.sync(life, gen, kind, gen.mutate(gen.action()))
        if kind == "sync/extra":
            action = gen.delivered_action()
            for _ in range(rng.randint(1, 3)):
                action[gen.string() or "k"] = gen.value()
            meta = gen.meta(life.seq + 1)
            if rng.random() < 0.3:
                meta["subprotocol"] = gen.value()
            return self.sync(life, gen, kind, action, meta)
        if kind == "sync/multi":
            life.added += 1
            message: list[Any] = ["sync", life.added]
            for _ in range(rng.randint(2, 20)):
                life.seq += 1
                r = rng.random()
                action = gen.action() if r < 0.6 else gen.mutate(gen.action())
                meta = gen.meta(life.seq) if r < 0.8 else gen.mutated_meta(life.seq)
                if rng.random() < 0.1 and len(message) > 2:
                    meta = dict(message[-1])  # the same id twice in one `sync`
                message += [action, meta]
            return Input(kind, [life.encode(message)])
        if kind == "sync/dup":
            life.added += 1
            seq = rng.randint(1, max(1, life.seq))
            message = ["sync", life.added, gen.action(), gen.meta(seq)]
            return Input(kind, [life.encode(message)], fresh_ids=False)
        if kind == "subscribe":
            return self.sync(life, gen, kind, gen.subscribe_action())
        if kind == "synced":
            value = rng.choice([gen.number(), life.added + 1000, -1, life.watermark, gen.value()])
            return Input(kind, [life.encode(["synced", value])])
        if kind == "ping":
            value = rng.choice([gen.number(), 0, gen.value()])
            msg = ["ping", value] if rng.random() < 0.8 else ["ping", value, gen.value()]
            return Input(kind, [life.encode(msg)])
        if kind == "msg/other":
            message = rng.choice(
                [
                    ["error", gen.string(), gen.value()],
                    ["error", gen.value()],
                    ["headers", gen.value()],
                    ["headers", {"env": "development", gen.string(): gen.value()}],
                    ["debug", "error", gen.value()],
                    ["duilian", gen.value()],
                    ["connected", 5, "server:x", [0, 0], {}],
                    ["pong", gen.number()],
                    ["connect", 5, life.node_id, 0, {"token": TOKEN}],
                    [gen.string() or "z", gen.value()],
                    ["sync"],
                    ["sync", gen.number()],
                    [rng.choice(["SYNC", "Sync", "sync ", "ping\x00"]), 1],
                ]
            )
            return Input(kind, [life.encode(message)])
        if kind == "msg/mutated":
            life.seq += 1
            life.added += 1
            base = rng.choice(
                [
                    ["sync", life.added, gen.action(), gen.meta(life.seq)],
                    ["synced", 1],
                    ["ping", 1],
                    ["error", "timeout"],
                    ["headers", {}],
                ]
            )
            mutated = gen.mutate(base, rng.choice([1, 2, 3]))
            return Input(kind, [life.encode(mutated)])
        if kind == "garbage":
            return Input(kind, [self.garbage(gen)])
        if kind == "codec-switch":
            message = ["sync", life.added + 1, gen.action(), gen.meta(life.seq + 1)]
            life.added, life.seq = life.added + 1, life.seq + 1
            return Input(kind, [life.encode(message, binary=not life.binary)])
        if kind == "deep":
            if rng.random() < 0.5:
                return Input(kind, [life.encode(gen.deep())])
            action = gen.delivered_action()
            action["deep"] = gen.deep()
            return self.sync(life, gen, kind, action)
        # long
        action = gen.delivered_action()
        target = rng.choice(["text", "chat", "type", "extra"])
        action["x" if target == "extra" else target] = gen.long_string()
        if target == "chat":
            action["type"] = "chat/message"
        return self.sync(life, gen, kind, action)

    def garbage(self, gen: Gen) -> str | bytes:
        rng = gen.rng
        r = rng.random()
        if r < 0.3:
            return "".join(chr(rng.randint(1, 0x7FF)) for _ in range(rng.randint(0, 50)))
        if r < 0.55:
            return rng.randbytes(rng.randint(0, 64))
        if r < 0.8:  # a valid frame, cut short
            full = to_json(["sync", 1, {"type": "counter/inc"}, {"id": [0, 1], "time": 0}])
            packed = to_msgpack(["sync", 1, {"type": "counter/inc"}, {"id": [0, 1], "time": 0}])
            if gen.binary:
                return packed[: rng.randint(0, len(packed) - 1)]
            return full[: rng.randint(0, len(full) - 1)]
        return rng.choice(
            [
                "",
                "null",
                "[]",
                "{}",
                '["ping"]',
                "[1]",
                '[null,"x"]',
                '["ping",1]garbage',
                '["ping",1] ',
                "\ufeff[]",
                '["ping", 1, ]',
                "[" * 2000,
                b"",
                b"\x90",
                b"\xc0",
                b"\x91\xa4ping",
            ]
        )

    # -- frame-level inputs over raw TCP ------------------------------------------------------

    async def frame_loop(self, count: int) -> None:
        rng = random.Random(f"{self.args.seed}/frames")
        gap = max(0.0, self.args.frame_gap_ms / 1000)
        for _ in range(count):
            if self.out_of_time():
                break
            kind, data, close_after = frame_case(rng)
            inp = Input(kind, [data if isinstance(data, bytes) else data.encode()])
            try:
                outcome = await asyncio.wait_for(self.tcp_exchange(data, close_after), 15)
            except TimeoutError:
                outcome = "no-close-in-15s"
            self.report.record(inp, outcome)
            await asyncio.sleep(gap)

    async def tcp_exchange(self, data: bytes, close_after: float) -> str:
        host, port = self.url.removeprefix("ws://").rstrip("/").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            upgrade = not data.startswith((b"GET ", b"POST ", b"\x00", b"HTTP", b"get "))
            if upgrade:
                writer.write(upgrade_request(port))
                await writer.drain()
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                if not head.startswith(b"HTTP/1.1 101"):
                    return "upgrade-refused:" + head.split(b"\r\n", 1)[0].decode(errors="replace")
            writer.write(data)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            received = bytearray()
            deadline = time.monotonic() + (close_after if close_after else 6.0)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    what = describe_server_bytes(received, upgrade)
                    return f"{what}, open: we closed" if close_after else f"{what}, no close in 6 s"
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), left)
                except TimeoutError:
                    continue
                except ConnectionError:
                    return describe_server_bytes(received, upgrade) + ", reset"
                if not chunk:
                    return describe_server_bytes(received, upgrade) + ", closed"
                received += chunk
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)


def upgrade_request(port: str, extra: str = "") -> bytes:
    return (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def client_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """A client frame, optionally broken: reserved bits, unmasked, a length that lies."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    size = len(payload) if length is None else length
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head = bytes((first, mask_bit | size))
    elif size < 1 << 16:
        head = bytes((first, mask_bit | 126)) + struct.pack(">H", size)
    else:
        head = bytes((first, mask_bit | 127)) + struct.pack(">Q", size)
    if not masked:
        return head + payload
    key = b"\x1f\x2e\x3d\x4c"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame_case(rng: random.Random) -> tuple[str, bytes, float]:
    """(kind, bytes to send after the upgrade, seconds after which we close if the server has
    not; 0: wait for the server)."""
    connect = json.dumps(
        ["connect", 5, "frames:1:t", 0, {"token": TOKEN, "subprotocol": 3}]
    ).encode()
    ping = b'["ping",1]'
    text, binary, close, pingop, cont = 1, 2, 8, 9, 0
    cases: list[tuple[str, Callable[[], bytes], float]] = [
        ("frame/unmasked", lambda: client_frame(text, connect, masked=False), 0),
        ("frame/reserved-bits", lambda: client_frame(text, connect, rsv=rng.randint(1, 7)), 0),
        ("frame/unknown-opcode", lambda: client_frame(rng.choice([3, 4, 7, 11, 15]), b"x"), 0),
        ("frame/close-1-byte", lambda: client_frame(close, b"\x03"), 0),
        (
            "frame/close-odd-code",
            lambda: client_frame(
                close, struct.pack(">H", rng.choice([0, 999, 1005, 1006, 5000, 65535]))
            ),
            0,
        ),
        ("frame/close-bad-utf8", lambda: client_frame(close, b"\x03\xe8\xff\xfe"), 0),
        ("frame/close-empty", lambda: client_frame(close, b""), 0),
        ("frame/control-too-long", lambda: client_frame(pingop, b"p" * 126), 0),
        ("frame/control-fragmented", lambda: client_frame(pingop, b"p", fin=False), 0),
        (
            "frame/ping-125",
            lambda: client_frame(pingop, b"p" * 125) + client_frame(close, b"\x03\xe8"),
            0,
        ),
        ("frame/continuation-of-nothing", lambda: client_frame(cont, b"x"), 0),
        (
            "frame/new-message-inside-fragmented",
            lambda: client_frame(text, b"[", fin=False) + client_frame(text, b"1]"),
            0,
        ),
        ("frame/length-2**63", lambda: client_frame(text, b"", length=2**63 - 1), 0),
        ("frame/length-2**64-1", lambda: client_frame(binary, b"", length=2**64 - 1), 0),
        ("frame/length-5MiB", lambda: client_frame(text, b"", length=5 << 20), 0),
        ("frame/header-only", lambda: client_frame(text, connect)[:2], 0.3),
        ("frame/partial-payload", lambda: client_frame(text, connect)[:-5], 0.3),
        ("frame/one-byte", lambda: b"\x81", 0.3),
        (
            "frame/text-not-utf8",
            lambda: client_frame(
                text, rng.choice([b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b'["\xe9"]'])
            ),
            0,
        ),
        ("frame/empty-text", lambda: client_frame(text, b""), 0),
        ("frame/empty-binary", lambda: client_frame(binary, b""), 0),
        ("frame/random-bytes", lambda: rng.randbytes(rng.randint(1, 200)), 0.5),
        (
            "frame/fragmented-connect",
            lambda: (
                b"".join(
                    client_frame(
                        text if i == 0 else cont, connect[i : i + 1], fin=i == len(connect) - 1
                    )
                    for i in range(len(connect))
                )
                + client_frame(text, ping)
                + client_frame(close, b"\x03\xe8")
            ),
            0,
        ),
        (
            "frame/ping-inside-fragments",
            lambda: (
                client_frame(text, connect[:10], fin=False)
                + client_frame(pingop, b"hi")
                + client_frame(cont, connect[10:])
                + client_frame(close, b"\x03\xe8")
            ),
            0,
        ),
        (
            "frame/non-minimal-length",
            lambda: (
                bytes((0x81, 0x80 | 126))
                + struct.pack(">H", len(ping))
                + b"\0\0\0\0"
                + ping
                + client_frame(close, b"\x03\xe8")
            ),
            0,
        ),
        (
            "frame/after-close",
            lambda: client_frame(close, b"\x03\xe8") + client_frame(text, connect),
            0,
        ),
        ("frame/pong-unsolicited", lambda: client_frame(10, b"x") + client_frame(close, b""), 0),
        (
            "http/no-key",
            lambda: (
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            ),
            1,
        ),
        (
            "http/version-8",
            lambda: (
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
            ),
            1,
        ),
        ("http/huge-header", lambda: b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 1),
        ("http/garbage-request-line", lambda: b"\x00\x01\x02 / HTTP/9\r\n\r\n", 1),
        (
            "http/post-upgrade",
            lambda: b"POST / HTTP/1.1\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello",
            1,
        ),
        ("http/lowercase-get", lambda: b"get / http/1.1\r\n\r\n", 1),
    ]
    kind, make, close_after = rng.choice(cases)
    return kind, make(), close_after


def describe_server_bytes(data: bytes | bytearray, upgraded: bool) -> str:
    """What the server sent on a raw socket before closing it: its frames' opcodes and the close
    code, or the HTTP status."""
    if not upgraded:
        line = bytes(data).split(b"\r\n", 1)[0].decode(errors="replace")
        return f"http:{line[9:12] or 'nothing'}"
    kinds = []
    pos = 0
    while pos + 2 <= len(data):
        opcode, size = data[pos] & 0x0F, data[pos + 1] & 0x7F
        header = 2
        if size == 126:
            size, header = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
        elif size == 127:
            size, header = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
        payload = bytes(data[pos + header : pos + header + size])
        if opcode == 8:
            kinds.append(
                f"close {int.from_bytes(payload[:2], 'big') if len(payload) >= 2 else ''}".strip()
            )
        elif opcode in (1, 2):
            msg = decode_sent(payload.decode(errors="replace") if opcode == 1 else payload)
            kinds.append(str(msg[0]) if isinstance(msg, list) and msg else "frame")
        else:
            kinds.append({9: "ping", 10: "pong"}.get(opcode, f"op{opcode}"))
        pos += header + size
    return ", ".join(dict.fromkeys(kinds)) or "nothing"


# -- the control clients -----------------------------------------------------------------------


class Control:
    """An authenticated client subscribed to the control channel, sending one action every
    ``interval`` s and expecting ``logux/processed`` and ``synced`` for each, and receiving its
    peer's actions."""

    def __init__(self, name: str, peer: str, interval: float) -> None:
        self.name, self.peer, self.interval = name, peer, interval
        self.client: BenchClient | None = None
        self.runner: asyncio.Task[None] | None = None
        self.sent: dict[str, float] = {}  # full id → sent at
        self.added_sent: dict[int, float] = {}
        self.processed: dict[str, float] = {}  # full id → round trip
        self.synced: set[float] = set()
        self.undone: list[dict[str, Any]] = []
        self.peer_texts: set[str] = set()
        self.texts_sent: list[str] = []
        self.added = 0
        self.closed_reason: str | None = None
        self.subscribed = asyncio.Event()
        self.subscribe_id = ""

    async def start(self, http: aiohttp.ClientSession, url: str) -> None:
        self.client = await BenchClient.open(
            http,
            url,
            f"{CONTROL_USER}:{self.name}:1",
            on_action=self.on_action,
            on_synced=self.on_synced,
        )
        await self.client.handshake(TOKEN, SUBPROTOCOL)
        self.runner = asyncio.create_task(self.client.run())
        self.added += 1
        self.subscribe_id = await self.client.sync(
            self.added, {"type": "logux/subscribe", "channel": CONTROL_CHANNEL}
        )
        await asyncio.wait_for(self.subscribed.wait(), 15)

    def on_action(self, client: BenchClient, action: dict[str, Any], meta: dict[str, Any]) -> None:
        kind = action.get("type")
        if kind in ANSWERS:
            answer_id = action.get("id")
            if answer_id == self.subscribe_id:
                if kind == "logux/processed":
                    self.subscribed.set()
                else:
                    self.undone.append(action)
            elif answer_id in self.sent:
                if kind == "logux/processed":
                    self.processed.setdefault(answer_id, time.perf_counter() - self.sent[answer_id])
                else:
                    self.undone.append(action)
        elif kind == "chat/message":
            text = action.get("text")
            if isinstance(text, str) and text.startswith(f"ctl:{self.peer}:"):
                self.peer_texts.add(text)

    def on_synced(self, client: BenchClient, value: float) -> None:
        self.synced.add(value)

    async def send_loop(self, stop: asyncio.Event) -> None:
        assert self.client is not None
        n = 0
        next_at = time.perf_counter()
        while not stop.is_set() and self.runner is not None and not self.runner.done():
            n += 1
            self.added += 1
            text = f"ctl:{self.name}:{n}"
            sent_at = time.perf_counter()
            try:
                full = await self.client.sync(
                    self.added, {"type": "chat/message", "chat": "fuzzctl", "text": text}
                )
            except Exception as error:
                self.closed_reason = f"send failed: {error!r}"
                return
            self.sent[full] = sent_at
            self.added_sent[self.added] = sent_at
            self.texts_sent.append(text)
            next_at += self.interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.perf_counter()))

    def alive(self) -> bool:
        return self.runner is not None and not self.runner.done()

    def done(self, peer: Control) -> bool:
        return (
            len(self.processed) + len(self.undone) >= len(self.sent)
            and all(a in self.synced for a in self.added_sent)
            and set(peer.texts_sent) <= self.peer_texts
        )

    async def stop(self) -> None:
        if self.client is not None:
            if self.runner is not None and self.runner.done():
                self.closed_reason = self.closed_reason or f"closed: {self.client.closed_reason}"
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.close(), 5)
        if self.runner is not None:
            self.runner.cancel()
            with contextlib.suppress(BaseException):
                await self.runner

    def summary(self, peer: Control) -> dict[str, Any]:
        latencies = sorted(round(v * 1_000_000) for v in self.processed.values())
        return {
            "sent": len(self.sent),
            "processed": len(self.processed),
            "undone": len(self.undone),
            "undo_examples": self.undone[:3],
            "missing_processed": len(self.sent) - len(self.processed) - len(self.undone),
            "missing_synced": sum(1 for a in self.added_sent if a not in self.synced),
            "peer_sent": len(peer.texts_sent),
            "peer_missing": len(set(peer.texts_sent) - self.peer_texts),
            "p50_ms": percentile(latencies, 0.5) / 1000 if latencies else None,
            "p99_ms": percentile(latencies, 0.99) / 1000 if latencies else None,
            "max_ms": latencies[-1] / 1000 if latencies else None,
            "closed": self.closed_reason,
        }


# -- the run -----------------------------------------------------------------------------------


class TracebackWatch:
    """Reads the server's output as it comes: counts ``Traceback`` lines, keeps the first few
    with the inputs in flight when each appeared."""

    def __init__(self, output: list[str], report: Report, keep: int = 5) -> None:
        self.output = output
        self.report = report
        self.keep = keep
        self.pos = 0
        self.count = 0
        self.samples: list[dict[str, Any]] = []
        self.kinds: Counter[str] = Counter()
        self.pending: list[int] = []  # output positions of tracebacks whose text is incomplete

    def scan(self, final: bool = False) -> None:
        lines = self.output
        end = len(lines)
        for i in range(self.pos, end):
            if "Traceback" in lines[i]:
                self.count += 1
                self.pending.append(i)
                if len(self.samples) < self.keep:
                    suspects = [
                        f"{inp.kind}: {inp.shown()}" for inp in self.report.current.values()
                    ]
                    self.samples.append({"at": i, "suspects": suspects})
        self.pos = end
        still = []
        for start in self.pending:
            block = self._block(start, end)
            if block is None and not final:
                still.append(start)
                continue
            block = block or self._block(start, end, force=True) or []
            last = next((b.strip() for b in reversed(block) if b.strip()), "?")
            self.kinds[last[:300]] += 1
            for sample in self.samples:
                if sample["at"] == start:
                    before = lines[start - 1].rstrip() if start > 0 else ""
                    sample["log"] = before[:500]
                    sample["traceback"] = "".join(block)[-3000:]
        self.pending = still

    def _block(self, start: int, end: int, force: bool = False) -> list[str] | None:
        for j in range(start + 1, min(end, start + 200)):
            if LOG_RECORD.match(self.output[j]) or "Traceback" in self.output[j]:
                return self.output[start:j]
        if force or end - start >= 200:
            return self.output[start : min(end, start + 200)]
        return None


async def health(url: str) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                "http" + url.removeprefix("ws") + "health", timeout=aiohttp.ClientTimeout(5)
            ) as response,
        ):
            return response.status == 200
    except Exception:
        return False


async def run(args: argparse.Namespace) -> dict[str, Any]:
    serve_args = ["--bruteforce-failures", str(args.bruteforce_failures), *args.serve_arg]
    servers = Servers(APP, store=args.store, serve_args=serve_args, tmp_prefix="logsync-fuzz-")
    servers.start()
    node = servers.nodes[0]
    url, pid = servers.urls[0], servers.pids[0]
    fuzzer = Fuzzer(args, url)
    watch = TracebackWatch(node.output, fuzzer.report)
    stop = asyncio.Event()
    controls = [
        Control("a", "b", args.control_interval_ms / 1000),
        Control("b", "a", args.control_interval_ms / 1000),
    ]
    problems: list[str] = []
    rss_start = rss_kib(pid)
    cpu_start = cpu_seconds(pid)
    started = time.monotonic()
    seconds = 0.0
    alive = healthy = False
    exit_code: int | None = None

    async def watcher() -> None:
        while not stop.is_set():
            watch.scan()
            await asyncio.sleep(0.1)

    try:
        async with aiohttp.ClientSession() as http:
            for control in controls:
                await control.start(http, url)
            senders = [asyncio.create_task(c.send_loop(stop)) for c in controls]
            watching = asyncio.create_task(watcher())
            try:
                await fuzzer.run()
            finally:
                seconds = time.monotonic() - started
                stop.set()
                await asyncio.gather(*senders, return_exceptions=True)
                # the last control actions get their answers
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not all(
                    c.done(p) for c, p in zip(controls, controls[::-1], strict=True)
                ):
                    if not all(c.alive() for c in controls):
                        break
                    await asyncio.sleep(0.05)
                for control in controls:
                    await control.stop()
                await watching
        alive = node.process.poll() is None
        healthy = await health(url)
        cpu = cpu_seconds(pid) if alive else math.nan
        rss_end = rss_kib(pid)
    finally:
        exit_code = servers.nodes[0].stop() if servers.nodes else None
        await asyncio.sleep(0.2)
        watch.scan(final=True)
        servers.stop()
    report = fuzzer.report
    control_summary = {c.name: c.summary(p) for c, p in zip(controls, controls[::-1], strict=True)}
    if watch.count:
        problems.append(f"(a) {watch.count} traceback(s) in the server's output")
    if not alive:
        problems.append(f"(b) the server died (exit {exit_code})")
    elif not healthy:
        problems.append("(b) the server did not answer /health at the end")
    for name, summary in control_summary.items():
        for key in ("missing_processed", "missing_synced", "peer_missing", "undone"):
            if summary[key]:
                problems.append(f"(c) control {name}: {key} = {summary[key]}")
        if summary["closed"]:
            problems.append(f"(c) control {name}: {summary['closed']}")
    strict_problems = []
    if report.violation_count:
        strict_problems.append(f"(d) {report.violation_count} synced action batch(es) not answered")
    if args.strict:
        problems += strict_problems
    all_latencies = sorted(round(v * 1_000_000) for c in controls for v in c.processed.values())
    inputs = sum(sum(c.values()) for c in report.outcomes.values())
    return {
        "ok": not problems,
        "problems": problems,
        "warnings": [] if args.strict else strict_problems,
        "inputs": inputs,
        "seconds": round(seconds, 2),
        "inputs_per_s": round(inputs / seconds, 1) if seconds else None,
        "tracebacks": watch.count,
        "traceback_kinds": dict(watch.kinds.most_common(20)),
        "traceback_samples": watch.samples,
        "server_alive": alive,
        "server_healthy": healthy,
        "server_exit_code": exit_code,
        "server_cpu_s": round(cpu - cpu_start, 2) if not math.isnan(cpu) else None,
        "server_rss_kib": {"start": rss_start, "end": rss_end},
        "control": {
            **control_summary,
            "p50_ms": percentile(all_latencies, 0.5) / 1000 if all_latencies else None,
            "p99_ms": percentile(all_latencies, 0.99) / 1000 if all_latencies else None,
        },
        "answers": {
            "synced_actions": report.synced_actions,
            "answered_actions": report.answered_actions,
            "unanswered_batches": report.violation_count,
            "unanswered_samples": report.violations,
            "answered_under_other_id": report.id_mismatches,
            "never_synced_batches": report.unsynced_count,
            "never_synced_samples": report.unsynced,
        },
        "outcomes": {kind: dict(c.most_common()) for kind, c in sorted(report.outcomes.items())},
        "examples": {f"{k} => {o}": text for (k, o), text in sorted(report.examples.items())},
        "anomalies": dict(report.anomalies),
        "anomaly_examples": report.anomaly_examples,
        "open_failures": report.refused,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.fuzz", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--inputs", type=int, default=10_000, help="inputs to send (default 10000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--codec", choices=["json", "msgpack", "both"], default="both")
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--sockets", type=int, default=8, help="fuzz sockets at once (default 8)")
    parser.add_argument("--max-seconds", type=float, default=900, help="wall-clock bound (900)")
    parser.add_argument(
        "--frame-share", type=float, default=0.02, help="share of inputs sent over raw TCP (0.02)"
    )
    parser.add_argument(
        "--frame-gap-ms", type=float, default=20, help="pause between raw TCP inputs"
    )
    parser.add_argument("--control-interval-ms", type=float, default=100)
    parser.add_argument(
        "--bruteforce-failures",
        type=int,
        default=1_000_000,
        help="the server's --bruteforce-failures (default 1000000: refused tokens never lock 127.0.0.1 out)",
    )
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="extra `logsync serve` argument (repeat)"
    )
    parser.add_argument("--strict", action="store_true", help="also fail on check (d)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary line")
    return parser


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def table(result: dict[str, Any]) -> str:
    lines = [
        f"inputs {result['inputs']} in {result['seconds']} s ({result['inputs_per_s']}/s); "
        f"server CPU {result['server_cpu_s']} s, RSS {result['server_rss_kib']['start']} → "
        f"{result['server_rss_kib']['end']} KiB",
        f"(a) tracebacks: {result['tracebacks']}",
    ]
    for kind, count in result["traceback_kinds"].items():
        lines.append(f"      {count:6} x {kind}")
    lines.append(
        f"(b) server alive: {result['server_alive']}, /health: {result['server_healthy']}, "
        f"exit on SIGTERM: {result['server_exit_code']}"
    )
    control = result["control"]
    lines.append(f"(c) control round trip p50 {control['p50_ms']} ms, p99 {control['p99_ms']} ms")
    for name in ("a", "b"):
        c = control[name]
        lines.append(
            f"      {name}: sent {c['sent']}, processed {c['processed']}, undone {c['undone']}, "
            f"missing processed {c['missing_processed']}, missing synced {c['missing_synced']}, "
            f"peer's missing {c['peer_missing']}/{c['peer_sent']}, closed: {c['closed']}"
        )
    answers = result["answers"]
    lines.append(
        f"(d) actions synced {answers['synced_actions']}, answered {answers['answered_actions']}, "
        f"synced-unanswered batches {answers['unanswered_batches']}, never synced "
        f"{answers['never_synced_batches']}, answered under another id "
        f"{answers['answered_under_other_id']}"
    )
    lines.append("(e) outcomes per input kind:")
    for kind, outcomes in result["outcomes"].items():
        total = sum(outcomes.values())
        parts = ", ".join(f"{o} {n}" for o, n in list(outcomes.items())[:8])
        more = f", … {len(outcomes) - 8} more" if len(outcomes) > 8 else ""
        lines.append(f"  {kind:38} {total:7}  {parts}{more}")
    if result["anomalies"]:
        lines.append("anomalies: " + ", ".join(f"{k} {v}" for k, v in result["anomalies"].items()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.sockets < 1 or args.inputs < 1:
        raise SystemExit("--sockets and --inputs must be positive")
    result = asyncio.run(run(args))
    output = {
        "command": ("python -m loadtest.fuzz " + shlex.join(argv)).strip(),
        "parameters": {k: v for k, v in vars(args).items() if k != "json"},
        "machine": machine(),
        "source": source(),
        "result": result,
    }
    if args.json:
        print(json.dumps(_clean(output), default=str))
    else:
        print(f"$ {output['command']}")
        print(table(result))
        for sample in result["traceback_samples"][:3]:
            print("--- traceback", sample.get("log", ""))
            print(sample.get("traceback", "").rstrip())
            print("    inputs in flight:")
            for suspect in sample["suspects"]:
                print(f"      {suspect[:400]}")
        for problem in result["problems"]:
            print(f"! {problem}")
        for warning in result["warnings"]:
            print(f"? {warning}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
