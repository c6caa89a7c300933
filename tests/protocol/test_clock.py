"""The hybrid logical clock: every stamp sorts after everything made or observed before it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from logsync.protocol.clock import HybridClock
from logsync.protocol.ids import ActionId, is_first_older

NODE = "server:x"


def test_follows_wall_time_when_ahead() -> None:
    clock = HybridClock(NODE)
    assert clock.next(1000) == (1000, 0)
    assert clock.next(1005) == (1005, 0)


def test_same_or_earlier_wall_time_bumps_seq() -> None:
    clock = HybridClock(NODE)
    assert clock.next(1000) == (1000, 0)
    assert clock.next(1000) == (1000, 1)
    assert clock.next(900) == (1000, 2)  # wall clock went backwards
    assert clock.next(1001) == (1001, 0)


def test_observed_future_time_moves_the_clock_past_it() -> None:
    clock = HybridClock(NODE)
    clock.observe(5000)  # a client whose clock runs ahead
    assert clock.next(1000) == (5001, 0)
    assert clock.next(1000) == (5001, 1)
    assert clock.next(6000) == (6000, 0)


def test_observed_time_equal_to_last_moves_one_ms_beyond() -> None:
    clock = HybridClock(NODE)
    assert clock.next(1000) == (1000, 0)
    clock.observe(1000)
    assert clock.next(1000) == (1001, 0)


def test_observed_past_time_does_not_move_the_clock() -> None:
    clock = HybridClock(NODE)
    assert clock.next(1000) == (1000, 0)
    clock.observe(10)
    assert clock.next(1000) == (1000, 1)


def test_next_id_uses_node_and_returns_time() -> None:
    clock = HybridClock(NODE)
    action_id, time = clock.next_id(1234)
    assert action_id == "1234 server:x 0"
    assert time == 1234
    assert ActionId.parse(action_id) == ActionId(1234, NODE, 0)
    action_id, time = clock.next_id(1234)
    assert (action_id, time) == ("1234 server:x 1", 1234)


client_nodes = st.sampled_from(["zzz:a:b", "a", "10:abc:tab", "server:x", "server:w", "~", "0"])
server_nodes = st.sampled_from(["server:x", "server:zz", "a", "node"])
ms_values = st.integers(min_value=-1_000, max_value=10**13)
ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("observe"),
            st.one_of(
                ms_values,
                st.integers(min_value=900, max_value=1_100),  # collisions with wall time
            ),
            client_nodes,
            st.integers(min_value=0, max_value=2**31),
        ),
        st.tuples(
            st.just("next"),
            st.one_of(
                ms_values,
                st.integers(min_value=900, max_value=1_100),
            ),
            st.just(""),
            st.just(0),
        ),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(server=server_nodes, steps=ops)
def test_every_stamp_is_newer_than_all_made_or_observed_before(
    server: str, steps: list[tuple[str, int, str, int]]
) -> None:
    clock = HybridClock(server)
    seen: list[tuple[float, str]] = []  # (time, id) made or observed so far
    newest: tuple[float, str] | None = None
    for op, ms, client, seq in steps:
        if op == "observe":
            clock.observe(ms)
            seen.append((ms, f"{ms} {client} {seq}"))
        else:
            action_id, time = clock.next_id(ms)
            stamp = (time, action_id)
            assert ActionId.parse(action_id).node_id == server
            assert ActionId.parse(action_id).ms == time
            for earlier in seen:
                assert is_first_older(earlier, stamp), (earlier, stamp)
            if newest is not None:
                assert is_first_older(newest, stamp)
            newest = stamp
            seen.append(stamp)


@settings(max_examples=200, deadline=None)
@given(walls=st.lists(st.integers(min_value=0, max_value=10**13), min_size=1, max_size=50))
def test_without_observations_the_clock_never_falls_behind_wall_time(walls: list[int]) -> None:
    clock = HybridClock(NODE)
    high = 0
    for wall in walls:
        ms, _seq = clock.next(wall)
        high = max(high, wall)
        assert ms == high  # never behind the highest wall time, never invents a future one
