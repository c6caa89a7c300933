"""The catch-up budget's rules (logsync.engine.budget), without sockets: grants, the FIFO queue,
the one-chunk overdraft that prevents deadlock, releases and drops."""

from __future__ import annotations

import pytest

from logsync.engine.budget import DEFAULT_MAX, DEFAULT_MIN, Budget, default_limit


class Waker:
    """A wake callback that records who was woken, in order."""

    def __init__(self) -> None:
        self.order: list[str] = []

    def __call__(self, name: str) -> object:
        return lambda: self.order.append(name)


def test_grants_while_the_chunk_fits_and_charges_the_estimate() -> None:
    budget = Budget(100, min_estimate=30)
    woken = Waker()
    assert budget.ask("a", woken("a"))
    assert budget.ask("b", woken("b"))
    assert budget.ask("c", woken("c"))
    assert budget.used == 90
    assert budget.holding("a") == 30
    assert budget.fill == pytest.approx(0.9)
    assert budget.granted == 3
    assert budget.waits == 0


def test_waiters_are_served_in_order_as_bytes_are_released() -> None:
    budget = Budget(100, min_estimate=30)
    woken = Waker()
    for name in "abc":
        assert budget.ask(name, woken(name))
    budget.hold("a", 40)  # a's chunk left 40 bytes queued: 100 in use
    assert budget.ask("d", woken("d"))  # d holds nothing: the one overdraft
    assert budget.used == 130
    assert not budget.ask("e", woken("e"))
    assert not budget.ask("b", woken("b"))  # b wants its next chunk: behind e
    assert budget.waiting == 2
    assert budget.waits == 2
    budget.hold("c", 0)  # 100 in use: e does not fit, and d's overdraft is outstanding
    assert woken.order == []
    budget.hold("d", 0)  # 70 in use: e fits; then b does not (100 + 30)
    assert woken.order == ["e"]
    budget.hold("a", 0)  # 60 in use: b fits
    assert woken.order == ["e", "b"]
    assert budget.waiting == 0
    assert budget.used == budget.holding("b") + budget.holding("e") == 90


def test_a_newcomer_does_not_overtake_the_queue() -> None:
    budget = Budget(100, min_estimate=50)
    woken = Waker()
    assert budget.ask("a", woken("a"))
    budget.hold("a", 80)
    assert not budget.ask("a", woken("a"))  # holds bytes, its chunk does not fit: queued
    # b holds nothing and could overdraw, but a is first
    assert not budget.ask("b", woken("b"))
    budget.hold("a", 0)
    assert woken.order == ["a", "b"]  # a fits again; then b overdraws


def test_one_holder_with_nothing_may_overdraw_by_one_chunk_at_a_time() -> None:
    budget = Budget(100, min_estimate=50)
    woken = Waker()
    assert budget.ask("a", woken("a"))
    assert budget.ask("b", woken("b"))
    assert budget.used == 100
    # slow readers hold everything; c holds nothing: it may still read one chunk
    assert budget.ask("c", woken("c"))
    assert budget.used == 150  # the limit plus one chunk
    assert budget.peak == 150
    # d must wait: c's overdraft is outstanding
    assert not budget.ask("d", woken("d"))
    budget.hold("c", 20)  # c wrote its chunk, 20 bytes still queued: still c's overdraft
    assert woken.order == []
    budget.hold("c", 0)  # c drained: d may overdraw now
    assert woken.order == ["d"]
    assert budget.used <= budget.limit + budget.estimate


def test_a_holder_that_holds_bytes_does_not_overdraw() -> None:
    budget = Budget(100, min_estimate=60)
    woken = Waker()
    assert budget.ask("a", woken("a"))
    budget.hold("a", 70)
    assert not budget.ask("a", woken("a"))  # 70 + 60 > 100 and a holds bytes: it waits
    budget.hold("a", 0)  # its socket drained: its own turn comes
    assert woken.order == ["a"]


def test_a_limit_below_one_chunk_still_lets_everyone_through_one_at_a_time() -> None:
    budget = Budget(10, min_estimate=50)
    woken = Waker()
    assert budget.ask("a", woken("a"))  # an overdraft from an empty budget
    assert not budget.ask("b", woken("b"))
    budget.hold("a", 0)
    assert woken.order == ["b"]


def test_drop_returns_the_holding_and_leaves_the_queue() -> None:
    budget = Budget(100, min_estimate=50)
    woken = Waker()
    assert budget.ask("a", woken("a"))
    assert budget.ask("b", woken("b"))
    assert budget.ask("c", woken("c"))  # overdraft
    assert not budget.ask("d", woken("d"))
    assert not budget.ask("e", woken("e"))
    budget.drop("d")  # d closed while queued: never woken
    assert budget.waiting == 1
    budget.drop("c")  # the overdraft's holder closed: its bytes return, e may overdraw
    assert woken.order == ["e"]
    budget.drop("a")
    budget.drop("b")
    budget.drop("e")
    assert budget.used == 0
    assert budget.waiting == 0
    budget.drop("never-seen")  # harmless
    assert budget.used == 0


def test_estimate_follows_the_chunks_written() -> None:
    budget = Budget(1 << 20, min_estimate=100)
    budget.hold("a", 0, chunk=800)
    assert budget.estimate == 800  # a larger chunk: at once
    budget.hold("a", 0, chunk=0)  # no chunk: unchanged
    assert budget.estimate == 800
    budget.hold("a", 0, chunk=160)
    assert budget.estimate == 800 - (800 - 160) // 8  # decays by an eighth of the difference
    for _ in range(200):
        budget.hold("a", 0, chunk=10)
    assert budget.estimate == 100  # never below the floor


def test_reported_sizes_are_never_negative() -> None:
    budget = Budget(100)
    budget.hold("a", -5)
    assert budget.used == 0
    assert budget.holding("a") == 0


def test_a_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Budget(0)


def test_default_limit_is_a_clamped_fraction_of_physical_memory() -> None:
    gib = 1 << 30
    assert default_limit(24 * gib) == 24 << 20  # 1/1024
    assert default_limit(1 * gib) == DEFAULT_MIN  # small machines: the floor
    assert default_limit(1024 * gib) == DEFAULT_MAX  # large ones: the ceiling
    assert default_limit(0) == DEFAULT_MIN
    assert DEFAULT_MIN <= default_limit() <= DEFAULT_MAX  # this machine's
