"""The delivery state machine without sockets or an event loop: entries, reads and answers in,
what to send out — the invariants of DESIGN.md's "Catch-up" checked call by call."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logsync.engine import Subscription
from logsync.engine.delivery import (
    SEND_OFFERED,
    Delivery,
    FellBehind,
    Output,
    SendAnswer,
    SendEntries,
    SendSynced,
    Skipped,
    State,
)
from logsync.log import Entry, ReadResult

OWN = ("client:u:c", "node:u:c:t", "user:u")


def KEEPING_UP(live_window: int, high_water: int) -> bool:
    return False


def BEHIND(live_window: int, high_water: int) -> bool:
    return True


def offered(d: Delivery, e: Entry, behind: Any = KEEPING_UP) -> list[Output]:
    """``d.offer(e)``, with the live-push marker spelled out as the entry it stands for."""
    return [
        SendEntries([e], from_log=False) if o is SEND_OFFERED else o for o in d.offer(e, behind)
    ]


def entry(added: int, index: str = "client:u:c", origin: str = "other:x:1", **action: Any) -> Entry:
    return Entry(
        added, f"{added} {origin} 0", added, {"type": "a", **action}, [index], [], None, "processed"
    )


def delivery(subscriptions: dict[str, Subscription] | None = None, **limits: int) -> Delivery:
    settings = {"chunk": 3, "live_window": 4, "high_water": 1000, **limits}
    return Delivery("u:c", OWN, subscriptions if subscriptions is not None else {}, **settings)


def sent(outputs: list[Output]) -> list[int]:
    """The ``added`` of every entry sent, in order."""
    return [e.added for out in outputs if isinstance(out, SendEntries) for e in out.entries]


def read_all(d: Delivery, log: list[Entry]) -> list[Output]:
    """Drive the machine's reads against ``log`` until it is live again (bounded)."""
    out: list[Output] = []
    for _ in range(100):
        if not d.reading:
            return out
        read = d.next_read(["client:u:c"])
        after = [e for e in log if e.added > read.after]
        page = after[: read.limit]
        more = len(after) > read.limit
        out += d.read_done(ReadResult(page, page[-1].added if page else read.after, more))
    raise AssertionError("the catch-up never ended")


def test_an_up_to_date_peer_goes_live_without_reading() -> None:
    d = delivery()
    assert d.start(10, up_to_date=True) == []
    assert d.state is State.LIVE and not d.reading
    assert sent(offered(d, entry(11))) == [11]
    assert d.cursor == 11


def test_an_entry_offered_before_start_sends_the_peer_to_the_log() -> None:
    d = delivery()
    d.offer(entry(11), KEEPING_UP)
    d.start(10, up_to_date=True)
    assert d.reading
    assert sent(read_all(d, [entry(11)])) == [11]
    assert d.live


def test_catch_up_reads_in_chunks_and_goes_live_at_the_end() -> None:
    d = delivery()
    d.start(0)
    log = [entry(n) for n in range(1, 8)]
    out = read_all(d, log)
    chunks = [[e.added for e in o.entries] for o in out if isinstance(o, SendEntries)]
    assert chunks == [[1, 2, 3], [4, 5, 6], [7]]
    assert all(o.from_log for o in out if isinstance(o, SendEntries))
    assert d.live and d.cursor == 7


def test_an_entry_offered_during_a_read_is_read_before_going_live() -> None:
    d = delivery()
    d.start(0)
    read = d.next_read(["client:u:c"])
    assert d.offer(entry(2), KEEPING_UP) == []  # not live: only marks the peer dirty
    out = d.read_done(ReadResult([entry(1)], 1, False))
    assert sent(out) == [1] and d.reading  # dirty: one more read
    assert sent(read_all(d, [entry(1), entry(2)])) == [2]
    assert read.after == 0 and d.live


@pytest.mark.parametrize(("unacked", "buffered"), [(4, 0), (0, 1000)])
def test_a_peer_that_falls_behind_is_served_from_the_log(unacked: int, buffered: int) -> None:
    d = delivery()
    d.start(0, up_to_date=True)
    out = d.offer(entry(1), lambda window, high: unacked >= window or buffered >= high)
    assert out == [FellBehind()] and d.reading and d.cursor == 0
    assert sent(read_all(d, [entry(1), entry(2)])) == [1, 2]


def test_answers_wait_for_their_barrier_and_keep_their_order() -> None:
    d = delivery()
    d.start(0)
    processed = {"type": "logux/processed", "id": "1 u:c:t 0"}
    assert d.answer_after(2, processed, {"id": "x", "time": 1}) == []
    assert d.synced_after(0, 7) == []  # behind the processed, although its barrier is passed
    out = read_all(d, [entry(1), entry(2)])
    kinds = [type(o).__name__ for o in out]
    assert kinds == ["SendEntries", "SendAnswer", "SendSynced"]
    assert isinstance(out[1], SendAnswer) and out[1].action == processed
    assert out[2] == SendSynced(7)


def test_a_live_peer_gets_an_answer_at_once_when_nothing_is_held() -> None:
    d = delivery()
    d.start(5, up_to_date=True)
    assert d.synced_after(5, 1) == [SendSynced(1)]
    assert d.synced_after(6, 2) == []  # the undo at 6 has not gone out yet
    assert offered(d, entry(6))[-1] == SendSynced(2)


def test_entries_not_for_the_peer_move_the_cursor_unsent() -> None:
    d = delivery()
    d.start(0, up_to_date=True)
    assert d.offer(entry(1, index="channel:elsewhere"), KEEPING_UP) == []
    assert d.cursor == 1
    # its own action on its user index is not sent back to it
    assert d.offer(entry(2, index="user:u", origin="u:c:t"), KEEPING_UP) == []
    assert sent(offered(d, entry(3, index="user:u"))) == [3]


def test_an_undeliverable_entry_is_skipped_and_reported() -> None:
    d = delivery()
    d.start(0, up_to_date=True)
    bad = Entry(1, f"{10**20} x:y:z 0", 1, {"type": "a"}, ["client:u:c"], [], None, "processed")
    assert d.offer(bad, KEEPING_UP) == [Skipped(bad)]
    assert d.cursor == 1
    assert sent(offered(d, entry(2))) == [2]


def test_a_resubscription_replays_only_its_channel_below_the_cursor() -> None:
    subs = {"chat": Subscription(from_added=0, filters={"{}": None})}
    d = delivery(subs)
    d.start(0, up_to_date=True)
    for n in (1, 2):
        d.offer(entry(n), KEEPING_UP)  # 1 sent live; 2 (a channel entry, below) counted as seen
    d.replay_channel("chat", 0)  # the channel's history after 0, though the cursor is at 2
    assert d.reading and d.cursor == 0
    log = [entry(1), entry(2, index="channel:chat"), entry(3), entry(4, index="channel:chat")]
    out = read_all(d, log)
    # below the rewind's end (2) only the channel is replayed; above it, everything for the peer
    assert sent(out) == [2, 3, 4]


def test_calls_in_the_wrong_state_raise() -> None:
    d = delivery()
    d.start(0, up_to_date=True)
    with pytest.raises(RuntimeError):
        d.next_read(["client:u:c"])
    with pytest.raises(RuntimeError):
        d.start(0)
    d.close()
    assert d.offer(entry(1), KEEPING_UP) == [] and d.answer_after(0, {"type": "x"}, {}) == []


@given(
    st.lists(
        st.tuples(st.sampled_from(["offer", "read", "behind", "answer"]), st.integers(1, 40)),
        max_size=60,
    )
)
def test_whatever_happens_each_entry_goes_out_once_in_increasing_added(
    steps: list[tuple[str, int]],
) -> None:
    """Offers (in order, as the broker hands them), reads, slow clients and answers in any
    interleaving: what is sent is strictly increasing, without duplicates, and once everything
    was read everything was sent; answers go out in the order given."""
    d = delivery()
    d.start(0)
    log: list[Entry] = []
    out: list[Output] = []
    answers = 0
    for step, _ in steps:
        if step in ("offer", "behind"):
            log.append(entry(len(log) + 1))
            out += offered(d, log[-1], BEHIND if step == "behind" else KEEPING_UP)
        elif step == "read" and d.reading:
            read = d.next_read(["client:u:c"])
            page = [e for e in log if e.added > read.after][: read.limit]
            more = len([e for e in log if e.added > read.after]) > read.limit
            out += d.read_done(ReadResult(page, page[-1].added if page else read.after, more))
        elif step == "answer":
            answers += 1
            out += d.synced_after(len(log), answers)
    out += read_all(d, log)
    added = sent(out)
    assert added == sorted(set(added))
    assert added == [e.added for e in log]
    assert [o.added for o in out if isinstance(o, SendSynced)] == list(range(1, answers + 1))
