"""Fuzz of the protocol core: hostile frames through the codecs and the Session, as a connection
feeds them, checking what "validated at the door" promises.

Valid messages (connect, sync with ordinary and subscribe actions, synced, ping, ...) are mutated
with huge floats, NaN, infinities, big ints, bytes, deep lists, wrong types, long strings and lone
surrogates, encoded as JSON text (the way ``JSON.stringify`` escapes) or msgpack bytes, sometimes
corrupted, and fed with handshakes and timers in between. Checked: nothing raises but the codecs'
``ProtocolError``; every accepted action round-trips both codecs and has a valid id, an int time and
an int subprotocol; every action of every ``sync`` is in ``entries`` or ``refused`` exactly once;
everything the session sends (and the actions it accepted, sent back) encodes with both codecs.

A few hundred examples by default; ``--hypothesis-profile=fuzz-long`` or ``LOGSYNC_FUZZ_EXAMPLES``
for long runs (see conftest.py).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from logsync.protocol.codec import JSON, MSGPACK, Codec
from logsync.protocol.events import (
    ActionsReceived,
    CloseRequested,
    ConnectRequested,
    Event,
)
from logsync.protocol.messages import ProtocolError, validate
from logsync.protocol.schema import MAX_ECHO, MAX_SAFE, parse_action_id, wire_id
from logsync.protocol.session import Session, State
from tests.protocol.conftest import FUZZ_LONG_EXAMPLES

SERVER = "server:fuzz"


def _fuzz_settings() -> settings:
    base = settings(
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    examples = os.environ.get("LOGSYNC_FUZZ_EXAMPLES")
    if examples:
        return settings(base, max_examples=int(examples), database=None)
    if settings.get_current_profile_name() == "fuzz-long":
        return settings(base, max_examples=FUZZ_LONG_EXAMPLES, database=None)
    return settings(base, max_examples=150)


FUZZ = _fuzz_settings()
# A long run takes minutes: no per-test timeout then (pytest-timeout's 0 is none).
pytestmark = pytest.mark.timeout(0 if FUZZ.max_examples > 1000 else 120)

# --- hostile values -----------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")
EDGES: list[Any] = [
    1e300, -1e300, 1e308, -1e308, 1e-300, NAN, INF, -INF,
    2**53 - 1, 2**53, 2**53 + 1, -(2**53), 2**63, 2**64 - 1, -(2**63), 2**64, 2**70, -(2**70),
    0, -1, 0.5, 5.0, -0.0, True, False, None,
    "", " ", "a b", "a\tb", "\x00", "\ud83d", "x\udc00y", "\ud83d\ude00", ":", "a:b:c:d", "a::b",
    "1 a 0", "1e300 a 0", "0 10:abc:tab 0", "logux/subscribe", "logux/unsubscribe",
    b"", b"\x00\xff",
]  # fmt: skip
# Containers are built afresh for every draw: mutations change them in place.
CONTAINERS = [list, dict, lambda: [1e300, 0], lambda: [0, "n", 0], lambda: {"time": 1e300}]
surrogates = st.integers(0xD800, 0xDFFF).map(chr)
scalars = st.one_of(
    st.sampled_from(EDGES),
    st.sampled_from(CONTAINERS).map(lambda make: make()),
    st.integers(),
    st.floats(),
    st.binary(max_size=8),
    st.text(max_size=12),
    st.lists(surrogates | st.characters(), max_size=6).map("".join),
    st.sampled_from([257, 513, 1025, 65_537]).map(lambda n: "x" * n),  # past the length bounds
)
KEYS = ["type", "time", "id", "channel", "since", "filter", "subprotocol", "token", "added"]
keys = st.sampled_from(KEYS) | st.text(max_size=6) | surrogates


def _deep(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


hostile = st.one_of(
    st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4)
        ),
        max_leaves=5,
    ),
    st.integers(200, 1100).map(_deep),  # around orjson's and msgpack's depth limits
)

# --- valid messages to mutate -------------------------------------------------------------------

CLIENT = "10:abc:tab"
SEEDS: list[list[Any]] = [
    ["connect", 5, CLIENT, 0, {"token": "secret", "subprotocol": 1}],
    ["connect", 5, "anon", 3],
    [
        "sync", 3,
        {"type": "chat/send", "text": "hello", "room": "r1"}, {"time": 0, "id": 0},
        {"type": "logux/subscribe", "channel": "users/1", "since": {"id": f"1 {CLIENT} 0", "time": 1}},
        {"time": -5, "id": [-5, 1]},
        {"type": "B", "n": [1, 2.5, None]}, {"time": 1, "id": [1, "10:abc:other", 2], "subprotocol": 1},
    ],
    ["sync", 1, {"type": "logux/unsubscribe", "channel": "c", "filter": {}}, {"time": 2, "id": 2}],
    ["synced", 2],
    ["ping", 1],
    ["pong", 1],
    ["headers", {"lang": "fr"}],
    ["error", "timeout", 5000],
    ["debug", "error", "x"],
    ["duilian", "金木水火土"],
    ["connected", 5, "server:x", [1, 2]],
]  # fmt: skip


def _slots(value: Any, depth: int = 0) -> list[tuple[Any, Any]]:
    """Every (container, key) place in a message, down to four levels."""
    places: list[tuple[Any, Any]] = []
    if depth > 4:
        return places
    if isinstance(value, list):
        for i, item in enumerate(value):
            places.append((value, i))
            places.extend(_slots(item, depth + 1))
    elif isinstance(value, dict):
        for key, item in value.items():
            places.append((value, key))
            places.extend(_slots(item, depth + 1))
    return places


@st.composite
def mutated_messages(draw: st.DrawFn) -> Any:
    # Syncs half the time: their actions are where validation is finest.
    seed = draw(st.sampled_from(SEEDS[2:4]) | st.sampled_from(SEEDS))
    msg = json.loads(json.dumps(seed, ensure_ascii=False))
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        kind = draw(st.sampled_from(["replace"] * 6 + ["delete", "add", "add", "whole"]))
        if kind == "whole" or not isinstance(msg, list):
            return draw(hostile)
        places = [place for place in _slots(msg) if place != (msg, 0)]  # "whole" changes the name
        if msg[0] == "sync" and draw(st.booleans()):
            # inside the actions, where a mistake refuses one action instead of the frame
            places = [
                p for a in msg[2::2] if isinstance(a, dict) for p in [(a, k) for k in a] + _slots(a)
            ]
        if not places:
            continue
        container, key = draw(st.sampled_from(places))
        if kind == "replace":
            container[key] = draw(hostile)
        elif kind == "delete":
            del container[key]
        elif isinstance(container, list):
            container.insert(key, draw(hostile))
        else:
            container[draw(keys)] = draw(hostile)
    return msg


# --- frames -------------------------------------------------------------------------------------


def _for_msgpack(value: Any) -> Any:
    """What msgpack can carry of a value: ints beyond 64 bits as floats, surrogates replaced."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else float(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, list):
        return [_for_msgpack(v) for v in value]
    if isinstance(value, dict):
        return {_for_msgpack(k): _for_msgpack(v) for k, v in value.items()}
    return value


@st.composite
def frames(draw: st.DrawFn) -> tuple[Codec, str | bytes]:
    msg = draw(mutated_messages())
    if draw(st.booleans()):
        # As JSON.stringify writes it: lone surrogates as \\u escapes; NaN and big ints as text.
        try:
            text = json.dumps(msg, allow_nan=True, default=lambda b: b.hex())
        except RecursionError:
            text = "[" * 2000
        if draw(st.integers(0, 9)) == 0 and text:
            cut = draw(st.integers(0, len(text) - 1))
            bad = draw(st.sampled_from(["", "\\", '"', "[", "}", "\\ud800"]))
            text = text[:cut] + bad + text[cut + 1 :]
        return JSON, text.encode() if draw(st.booleans()) else text
    try:
        data = msgpack.packb(msg, use_bin_type=True)
    except (OverflowError, UnicodeEncodeError, ValueError):
        try:
            data = msgpack.packb(_for_msgpack(msg), use_bin_type=True)
        except (RecursionError, ValueError):  # deeper than msgpack packs
            data = b"\x91" * 2000 + b"\x90"
    if draw(st.integers(0, 9)) == 0 and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    return MSGPACK, data


steps = st.one_of(
    frames(),
    frames(),
    frames(),
    st.just("accept"),
    st.tuples(st.just("timer"), st.integers(0, 100_000)),
)

# --- the checks ---------------------------------------------------------------------------------


def _round_trips_literally(value: Any) -> None:
    assert orjson.loads(orjson.dumps(value)) == value
    assert msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False) == value


def _check_ints_are_safe(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, int) and not isinstance(item, bool):
            assert -MAX_SAFE < item < MAX_SAFE


def _check_id(meta: dict[str, Any]) -> None:
    parsed = parse_action_id(meta["id"])
    assert 0 <= parsed.ms <= MAX_SAFE
    assert 0 <= parsed.seq <= MAX_SAFE


class Driver:
    """Feeds a session as a connection does and checks each outcome."""

    def __init__(self, now: int) -> None:
        self.session = Session(SERVER, now=now, timeout_ms=70_000, connect_timeout_ms=5_000)
        self.now = now
        self.held_syncs: list[list[Any]] = []
        self.frames = 0

    def frame(self, codec: Codec, frame: str | bytes) -> None:
        self.frames += 1
        session = self.session
        try:
            msg = codec.decode(frame)
        except ProtocolError as error:
            assert error.type == "wrong-format"
            assert isinstance(error.options, str)
            assert len(error.options) <= max(MAX_ECHO, 2 + 2 * 256)
            self.check(session.send_error(error), [])
            return
        is_sync = validate(msg, "") is None and msg[0] == "sync"
        held_before = session.state is not State.CONNECTED
        events = session.receive(msg, codec.describe(frame), self.now, size=len(frame))
        if is_sync and session.state is not State.CLOSED:
            if held_before:
                self.held_syncs.append(msg)
            else:
                assert [type(e) for e in events] == [ActionsReceived]
        self.check(events, [msg] if is_sync and not held_before else [])

    def accept(self) -> None:
        if self.session.state is not State.AUTHENTICATING:
            if self.session.state is State.CLOSED:
                self.held_syncs = []
            return
        held, self.held_syncs = self.held_syncs, []
        events = self.session.accept(self.now, {"subprotocol": 1}, {"env": "development"})
        self.check(events, held)

    def timer(self, delta: int) -> None:
        self.now += delta
        self.check(self.session.on_timer(self.now), [])

    def check(self, events: list[Event], syncs: list[list[Any]]) -> None:
        session = self.session
        received = [e for e in events if isinstance(e, ActionsReceived)]
        closes = [e for e in events if isinstance(e, CloseRequested)]
        assert len(closes) <= 1
        if closes:
            assert events[-1] is closes[0]
            assert session.state is State.CLOSED
        # Each sync handled gives one event, in order; a bad id closes before its event.
        assert len(received) <= len(syncs)
        if len(received) < len(syncs):
            assert closes
        for done, msg in zip(received, syncs, strict=False):
            self.check_actions(done, msg)
        for outcome in events:
            event(f"event {type(outcome).__name__}")
        if any(isinstance(e, ConnectRequested) for e in events):
            assert session.node is not None
            assert session.subprotocol is None or 0 <= session.subprotocol <= MAX_SAFE
        self.check_outgoing()

    def check_actions(self, done: ActionsReceived, msg: list[Any]) -> None:
        session = self.session
        assert session.node is not None
        expected = Counter(
            wire_id(msg[i + 1]["id"], session.base_time, session.node.node_id)
            for i in range(2, len(msg), 2)
        )
        assert (
            Counter(meta["id"] for _, meta in done.entries)
            + Counter(meta["id"] for _, meta, _ in done.refused)
            == expected
        )
        actions = [msg[i] for i in range(2, len(msg), 2)]
        if done.entries:
            event("accepted an action")
        if done.refused:
            event("refused an action")
        for action, meta in done.entries:
            assert any(action is sent for sent in actions)
            _round_trips_literally(action)
            _check_ints_are_safe(action)
            _check_id(meta)
            assert type(meta["time"]) is int and 0 <= meta["time"] <= MAX_SAFE
            if "subprotocol" in meta:
                assert type(meta["subprotocol"]) is int
                assert 0 <= meta["subprotocol"] <= MAX_SAFE
        for action, meta, details in done.refused:
            assert isinstance(details, str) and details
            _round_trips_literally(action)
            _check_id(meta)
            _round_trips_literally(details)
        # What was accepted can be delivered, and the undo of what was refused can be sent.
        session.send_sync(1, done.entries, self.now)
        undos = [
            (
                {"type": "logux/undo", "id": m["id"], "reason": "error", "action": a, "details": d},
                {"id": f"{self.now} {SERVER} 0", "time": self.now},
            )
            for a, m, d in done.refused
        ]
        session.send_sync(None, undos, self.now)

    def check_outgoing(self) -> None:
        for out in self.session.take_outgoing():
            _round_trips_literally(out)
            if out[:2] == ["error", "wrong-format"]:
                assert len(out[2]) <= MAX_ECHO


@FUZZ
@given(
    start=st.sampled_from([0, 1_000, 1_700_000_000_000, MAX_SAFE - 100]),
    handshake=st.sampled_from(["none", "connect", "accepted"]),
    script=st.lists(steps, min_size=1, max_size=8),
)
def test_hostile_frames_are_validated_at_the_door(
    start: int, handshake: str, script: list[Any]
) -> None:
    driver = Driver(start)
    if handshake != "none":
        driver.frame(JSON, f'["connect",5,"{CLIENT}",0,{{"token":"t","subprotocol":2}}]')
        if handshake == "accepted":
            driver.accept()
    for step in script:
        if step == "accept":
            driver.accept()
        elif step[0] == "timer":
            driver.timer(step[1])
        else:
            driver.frame(*step)
        driver.now += 1
    driver.accept()
    driver.timer(10**9)  # a ping, or the timeout
    driver.timer(10**9)  # the ping's timeout
    assert driver.session.state is State.CLOSED


@FUZZ
@given(msg=mutated_messages())
def test_mutated_messages_on_a_connected_session(msg: Any) -> None:
    # Straight to the session (no codec): values no codec produces, such as 2**70 or surrogates.
    driver = Driver(1_700_000_000_000)
    driver.frame(JSON, f'["connect",5,"{CLIENT}",0]')
    driver.accept()
    is_sync = validate(msg, "") is None and msg[0] == "sync"
    events = driver.session.receive(msg, repr(msg), driver.now)
    driver.check(events, [msg] if is_sync and driver.session.state is not State.CLOSED else [])
