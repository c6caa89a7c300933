"""Property tests: the session never raises on hostile input, codecs raise only ProtocolError,
and what the server reports as sent (`sync` added, `pong`, `ping`) never runs ahead of the log.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logsync.protocol.codec import JSON, MSGPACK
from logsync.protocol.events import (
    ActionsReceived,
    CloseRequested,
    ConnectRequested,
    ErrorReceived,
    HeadersReceived,
    SyncedReceived,
)
from logsync.protocol.ids import decompress_id
from logsync.protocol.messages import VALIDATORS, ProtocolError
from logsync.protocol.schema import echo
from logsync.protocol.session import Session, State
from tests.protocol.helpers import (
    ACCEPT_AT,
    CLIENT,
    SERVER,
    authenticating_session,
    connected_session,
    new_session,
)
from tests.protocol.test_messages import VALID

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Session-feeding tests draw deep structures (slow to generate): fewer, still varied, examples.
FEED_PROPS = settings(PROPS, max_examples=100)
EVENT_TYPES = (
    ActionsReceived,
    CloseRequested,
    ConnectRequested,
    ErrorReceived,
    HeadersReceived,
    SyncedReceived,
)

# --- strategies ---------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=8,
)
# msgpack can also carry non-finite floats and bytes.
msgpack_scalars = json_scalars | st.floats() | st.binary(max_size=8)
msgpack_values = st.recursive(
    msgpack_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=8,
)
type_names = st.sampled_from(sorted(VALIDATORS)) | st.text(max_size=10)
messages_like = st.builds(
    lambda name, args: [name, *args], type_names, st.lists(json_values, max_size=5)
)
# Fields that reach the interesting checks: metas, ids, option objects.
wire_ids = (
    st.integers()
    | st.floats()
    | st.lists(st.integers() | st.floats(), min_size=2, max_size=2)
    | st.tuples(st.integers(), st.text(max_size=5), st.integers()).map(list)
)
metas = st.fixed_dictionaries(
    {"time": st.integers() | st.floats(), "id": wire_ids},
    optional={"subprotocol": json_values, "added": json_values},
)
syncs = st.builds(
    lambda added, entries: ["sync", added, *[x for entry in entries for x in entry]],
    st.integers() | st.floats(allow_nan=False),
    st.lists(st.tuples(st.fixed_dictionaries({"type": st.text(max_size=5)}), metas), max_size=3),
)
connect_options = st.dictionaries(
    st.sampled_from(["token", "subprotocol", "other"]), msgpack_values, max_size=3
)
connects = st.builds(
    lambda proto, node, synced, options: ["connect", proto, node, synced, options],
    st.sampled_from([5, 4, 6, 5.0]),
    st.text(max_size=12),
    st.integers() | st.floats(allow_nan=False),
    connect_options,
)


def make_session(state: str) -> Session:
    if state == "await-connect":
        return new_session()
    if state == "authenticating":
        return authenticating_session()[0]
    return connected_session()


states = st.sampled_from(["await-connect", "authenticating", "connected"])


def feed(session: Session, msgs: list[Any], now: int = ACCEPT_AT + 1) -> None:
    """Feed messages, checking after each that the outcome is events or error + close."""
    for msg in msgs:
        was_closed = session.state is State.CLOSED
        session.take_outgoing()
        events = session.receive(msg, repr(msg), now)
        out = session.take_outgoing()
        assert all(isinstance(event, EVENT_TYPES) for event in events)
        if was_closed:
            assert events == []
            assert out == []
            continue
        closes = [e for e in events if isinstance(e, CloseRequested)]
        errors = [m for m in out if m[0] == "error"]
        if closes:
            # error + close: exactly one close, last, with an `error` of that type sent —
            # except for the client's own `error` before auth, which closes without an answer.
            assert len(closes) == 1
            assert events[-1] is closes[0]
            if closes[0].reason == "error before auth":
                assert errors == []
                assert isinstance(events[0], ErrorReceived)
            else:
                assert errors
                assert errors[-1][1] == closes[0].reason
            assert session.state is State.CLOSED
        else:
            assert errors == []
            assert session.state is not State.CLOSED
        now += 1
    # Whatever happened, the session can still be finished without raising.
    if session.state is State.AUTHENTICATING:
        session.accept(now, {})
    session.on_timer(now + 10**9)
    session.take_outgoing()


# --- (a) arbitrary values and lists -------------------------------------------------------------


@FEED_PROPS
@given(state=states, msgs=st.lists(json_values | messages_like, min_size=1, max_size=5))
def test_arbitrary_json_values_never_raise(state: str, msgs: list[Any]) -> None:
    feed(make_session(state), msgs)


@FEED_PROPS
@given(
    state=states,
    msgs=st.lists(msgpack_values | messages_like | syncs | connects, min_size=1, max_size=5),
)
def test_arbitrary_msgpack_values_and_near_messages_never_raise(
    state: str, msgs: list[Any]
) -> None:
    feed(make_session(state), msgs)


@FEED_PROPS
@given(msgs=st.lists(syncs | messages_like, max_size=4), accept_at=st.integers(0, 10**13))
def test_held_messages_replayed_by_accept_never_raise(msgs: list[Any], accept_at: int) -> None:
    session, _ = authenticating_session()
    for msg in msgs:
        session.receive(msg, repr(msg), ACCEPT_AT)
    session.take_outgoing()
    if session.state is State.CLOSED:
        return
    events = session.accept(accept_at, {})
    out = session.take_outgoing()
    assert out[0][0] == "connected"
    closes = [e for e in events if isinstance(e, CloseRequested)]
    assert len(closes) <= 1
    if closes:
        assert events[-1] is closes[0]
        assert out[-1][:2] == ["error", closes[0].reason]


# --- (b) mutated valid messages -----------------------------------------------------------------


VALID_BY_TYPE: dict[str, list[list[Any]]] = {}
for _msg in VALID:
    VALID_BY_TYPE.setdefault(_msg[0], []).append(_msg)
MUTATIONS = ["truncate", "drop", "replace", "append", "insert", "nested"]


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    # Pick the type first so every message type is mutated equally often.
    kind_of_message = draw(st.sampled_from(sorted(VALID_BY_TYPE)))
    msg = json.loads(json.dumps(draw(st.sampled_from(VALID_BY_TYPE[kind_of_message]))))
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(MUTATIONS))
        if kind == "truncate":
            del msg[draw(st.integers(0, len(msg))) :]
        elif kind == "drop" and msg:
            del msg[draw(st.integers(0, len(msg) - 1))]
        elif kind == "replace" and msg:
            msg[draw(st.integers(0, len(msg) - 1))] = draw(msgpack_values)
        elif kind == "append":
            msg.append(draw(msgpack_values))
        elif kind == "insert":
            msg.insert(draw(st.integers(0, len(msg))), draw(msgpack_values))
        elif kind == "nested":
            containers = [v for v in msg if isinstance(v, dict | list)]
            if containers:
                target = draw(st.sampled_from(containers))
                if isinstance(target, dict):
                    key = draw(st.sampled_from([*target, "type", "time", "id", "token"]))
                    target[key] = draw(msgpack_values | wire_ids)
                elif target:
                    target[draw(st.integers(0, len(target) - 1))] = draw(msgpack_values)
    return msg


@FEED_PROPS
@given(state=states, msgs=st.lists(mutated(), min_size=1, max_size=5))
def test_mutated_valid_messages_never_raise(state: str, msgs: list[Any]) -> None:
    feed(make_session(state), msgs)


ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    2**70,
    -(2**70),
    float("nan"),
    float("inf"),
    float("-inf"),
    "",
    "x",
    " ",
    "a b",
    [],
    [1],
    [1, 2],
    [1, "n", 2],
    {},
    {"type": "A"},
    b"\x00",
]
NESTED_KEYS = ["type", "time", "id", "token", "subprotocol"]


def single_mutations(msg: list[Any]) -> list[Any]:
    """Every prefix, every one-element drop and every one-element replacement with an odd value,
    at the top level and one level down (dict values and list elements)."""

    def copy() -> list[Any]:
        return list(json.loads(json.dumps(msg)))

    out: list[Any] = [msg[:n] for n in range(len(msg))]
    for i in range(len(msg)):
        dropped = copy()
        del dropped[i]
        out.append(dropped)
        for odd in ODD_VALUES:
            replaced = copy()
            replaced[i] = odd
            out.append(replaced)
        if isinstance(msg[i], dict):
            for key in {*msg[i], *NESTED_KEYS}:
                for odd in ODD_VALUES:
                    nested = copy()
                    nested[i][key] = odd
                    out.append(nested)
        elif isinstance(msg[i], list):
            for j in range(len(msg[i])):
                for odd in ODD_VALUES:
                    nested = copy()
                    nested[i][j] = odd
                    out.append(nested)
    return out


def test_every_single_mutation_of_every_valid_message_is_handled() -> None:
    """Exhaustive and deterministic companion of the hypothesis test above."""
    fed = 0
    for msg in VALID:
        for variant in single_mutations(msg):
            for state in ("await-connect", "authenticating", "connected"):
                feed(make_session(state), [variant])
                fed += 1
    assert fed > 10_000


# --- (c) codecs on arbitrary input --------------------------------------------------------------


@PROPS
@given(frame=st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_protocol_error(frame: bytes) -> None:
    for codec in (JSON, MSGPACK):
        try:
            value = codec.decode(frame)
        except ProtocolError as error:
            assert error.type == "wrong-format"
            assert isinstance(error.options, str)
        else:
            feed(connected_session(), [value])  # decoded values go through the session safely


@FEED_PROPS
@given(frame=st.text(max_size=64) | messages_like.map(json.dumps))
def test_arbitrary_text_raises_only_protocol_error(frame: str) -> None:
    for codec in (JSON, MSGPACK):
        try:
            value = codec.decode(frame)
        except ProtocolError as error:
            assert error.type == "wrong-format"
            assert error.options == echo(frame)  # the frame quoted back, at most MAX_ECHO chars
        else:
            assert codec is JSON  # msgpack never takes text frames
            feed(connected_session(), [value])


@FEED_PROPS
@given(msg=messages_like)
def test_both_codecs_round_trip_messages(msg: list[Any]) -> None:
    # 64-bit integers and finite floats: what both JSON (orjson) and msgpack carry.
    assert MSGPACK.decode(MSGPACK.encode(msg)) == msg
    assert JSON.decode(JSON.encode(msg)) == msg


# --- (d) sent `added` never runs ahead ----------------------------------------------------------

server_ops = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.none() | st.integers(0, 1000)),
        st.tuples(st.just("ping"), st.integers(0, 10**6)),  # client's ping value is ignored
        st.tuples(st.just("synced"), st.integers(0, 1000)),
        st.tuples(st.just("timer"), st.integers(0, 100_000)),
    ),
    max_size=40,
)


@PROPS
@given(ops=server_ops)
def test_sync_pong_and_ping_values_never_exceed_the_highest_added(
    ops: list[tuple[str, Any]],
) -> None:
    session = connected_session()
    now = ACCEPT_AT
    highest = 0
    last_reported = 0
    unacked: list[float] = []  # model: sync values not yet covered by a later `synced`
    for op, value in ops:
        now += 1
        if op == "send":
            if value is not None:
                highest = max(highest, value)
            entry = ({"type": "A"}, {"id": f"{now} {SERVER} 0", "time": now})
            session.send_sync(value, [entry], now)
        elif op == "ping":
            session.receive(["ping", value], "", now)
        elif op == "synced":
            session.receive(["synced", value], "", now)
            while unacked and unacked[0] <= value:
                unacked.pop(0)
        else:
            now += value
            session.on_timer(now)
            if session.state is State.CLOSED:
                break
        for msg in session.take_outgoing():
            if msg[0] in ("sync", "pong", "ping"):
                assert msg[1] <= highest, msg
                assert msg[1] >= last_reported, msg  # never goes back either
                last_reported = msg[1]
            if msg[0] == "sync":
                unacked.append(msg[1])
        assert session.watermark == highest
        assert session.unacked_syncs == len(unacked)


@PROPS
@given(
    base=st.integers(0, 10**13),
    entries=st.lists(
        st.tuples(
            st.integers(-(10**6), 10**6),
            st.sampled_from([SERVER, CLIENT, "server:other", "7:x"]),
            st.integers(0, 50),
            st.integers(-(10**6), 10**6),
        ),
        max_size=6,
    ),
)
def test_sent_ids_decompress_back_on_the_client(
    base: int, entries: list[tuple[int, str, int, int]]
) -> None:
    session, _ = authenticating_session()
    session.accept(base, {})
    session.take_outgoing()
    originals = [
        ({"type": "A"}, {"id": f"{base + ms} {node} {seq}", "time": base + time})
        for ms, node, seq, time in entries
    ]
    session.send_sync(1, originals, base)
    (msg,) = session.take_outgoing()
    # The client's side of A.4: base_time = connected[3][1], remote node = the server.
    for i, (_action, meta) in enumerate(originals):
        wire = msg[3 + 2 * i]
        assert decompress_id(wire["id"], base, SERVER) == meta["id"]
        assert wire["time"] + base == meta["time"]
