"""Delivery to one streaming peer, without I/O: which log entries it is sent, in what order, and
when its answers may follow them. Feed it what happens — :meth:`Delivery.start`,
:meth:`Delivery.offer` (an appended entry), :meth:`Delivery.read_done` (a chunk read from the
log), :meth:`Delivery.answer_after` / :meth:`Delivery.synced_after` (answers to the client's
actions) — and carry out what each call returns: :class:`SendEntries`, :class:`SendAnswer`,
:class:`SendSynced`, :class:`Skipped`, :class:`FellBehind`, and :data:`SEND_OFFERED` for the
live push of the entry just offered. While :attr:`Delivery.reading` is
true, the driver asks :meth:`Delivery.next_read` what to read (once the client has acknowledged
and its buffer drained) and feeds the result back.

Rules:
- Everything sent from the log goes out in strictly increasing ``added``; ``cursor`` is the
  position up to which every entry was sent or judged not for this peer, so the ``sync`` value the
  client stores is a true watermark.
- LIVE: an offered entry above the cursor is sent at once (the driver may put the entries of
  one event-loop turn in one ``sync``, in order, ahead of anything else it sends), unless the
  client is behind — ``live_window`` unacknowledged messages or ``high_water`` bytes buffered —
  which moves it to CATCHING_UP ("the log is the buffer").
- CATCHING_UP: offered entries only mark it ``dirty``; the log is read after the cursor in chunks
  of ``chunk``. A chunk with nothing more after it, read while nothing was offered, makes it LIVE.
- A resubscription's history below the cursor rewinds the cursor; below the rewind's end only
  the replayed channels are sent (everything else went out already).
- Answers outside the log wait, in order, until the cursor has passed their barrier: an answer
  never overtakes the entries it follows, nor a ``synced`` its ``processed``.
- NEW before :meth:`start`, CLOSED after :meth:`close`: entries and answers are then ignored;
  reading when not CATCHING_UP raises.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from logsync.engine.peer import Subscription
from logsync.log import Entry, ReadResult


class State(enum.Enum):
    NEW = "new"
    LIVE = "live"
    CATCHING_UP = "catching-up"
    CLOSED = "closed"


@dataclass(slots=True)
class SendEntries:
    """Send these entries in one ``sync`` whose value is the last one's ``added``."""

    entries: list[Entry]
    from_log: bool


@dataclass(slots=True)
class SendOffered:
    """Send the entry just given to :meth:`Delivery.offer`, alone in its ``sync`` (the live
    push: one shared instance, so a fan-out's deliveries allocate nothing here)."""


SEND_OFFERED = SendOffered()


@dataclass(slots=True)
class SendAnswer:
    """Send an action that is not in the log (``logux/processed``, a direct undo)."""

    action: dict[str, Any]
    meta: dict[str, Any]


@dataclass(slots=True)
class SendSynced:
    """Acknowledge the client's ``sync`` of ``added``."""

    added: float


@dataclass(slots=True)
class Skipped:
    """An entry addressed to this peer cannot be encoded: it was passed over (report it)."""

    entry: Entry


@dataclass(slots=True)
class FellBehind:
    """A live peer stopped keeping up and is now served from the log."""


Output = SendEntries | SendOffered | SendAnswer | SendSynced | Skipped | FellBehind


@dataclass(slots=True)
class Read:
    """Read ``indexes`` of the log after ``after``, at most ``limit`` entries."""

    indexes: list[str]
    after: int
    limit: int


class Delivery:
    """One peer's delivery state; see the module docstring for the rules.

    ``own``: the peer's ``client:…``, ``node:…`` (and ``user:…``) indexes; ``subscriptions``: its
    channels (the mapping the subscriptions stage keeps, read here)."""

    __slots__ = (
        "_held",
        "_rewinds",
        "chunk",
        "client_id",
        "cursor",
        "dirty",
        "high_water",
        "live_window",
        "own",
        "state",
        "subscriptions",
    )

    def __init__(
        self,
        client_id: str,
        own: tuple[str, ...],
        subscriptions: Mapping[str, Subscription],
        *,
        chunk: int,
        live_window: int,
        high_water: int,
    ) -> None:
        self.client_id = client_id
        self.own = own
        self.subscriptions = subscriptions
        self.chunk = chunk
        self.live_window = live_window
        self.high_water = high_water
        self.state = State.NEW
        self.cursor = 0
        self.dirty = False
        # answers waiting for the cursor: (barrier, action, meta) or (barrier, None, added). A
        # list, not a deque: an empty deque costs 760 bytes, a tenth of an idle connection, and
        # few answers are ever held at once.
        self._held: list[tuple[int, dict[str, Any] | None, Any]] = []
        # channel history to send that lies below the cursor: (channel, after, up to)
        self._rewinds: list[tuple[str, int, int]] = []

    @property
    def live(self) -> bool:
        return self.state is State.LIVE

    @property
    def reading(self) -> bool:
        """Whether the driver should read the log for this peer."""
        return self.state is State.CATCHING_UP

    # -- inputs ------------------------------------------------------------------------------

    def start(self, synced: int, *, up_to_date: bool = False) -> list[Output]:
        """After the handshake: catch up from the client's ``synced`` value, then go live.

        ``up_to_date``: the client has the log's head and every later entry will be offered;
        unless one was offered already, it goes live without reading the log."""
        if self.state is not State.NEW:
            raise RuntimeError(f"delivery already started ({self.state.value})")
        self.cursor = synced
        if up_to_date and not self.dirty:
            self.state = State.LIVE
            return self._release(lambda barrier: True)
        self._catch_up()
        return []

    def offer(self, entry: Entry, behind: Callable[[int, int], bool]) -> list[Output]:
        """An appended entry that may concern this peer. ``behind(live_window, high_water)``
        tells whether the client is not keeping up — that many ``sync`` messages unacknowledged,
        or that many bytes queued for it — and is asked only for an entry that would be sent."""
        if entry.added <= self.cursor:
            return _NOTHING
        if self.state is not State.LIVE:
            if self.state is not State.CLOSED:
                self.dirty = True
            return _NOTHING
        if not self.should_deliver(entry):
            self.cursor = entry.added
            return _NOTHING
        if not entry.deliverable:
            self.cursor = entry.added
            return [Skipped(entry)]
        if behind(self.live_window, self.high_water):
            self._catch_up()
            return [FellBehind()]
        self.cursor = entry.added
        if not self._held:
            return ONLY_SEND_OFFERED
        return [SEND_OFFERED, *self._release(lambda barrier: barrier <= self.cursor)]

    def catch_up(self) -> None:
        """Serve the peer from the log from its cursor (entries may have been missed)."""
        if self.state is not State.CLOSED:
            self._catch_up()

    def replay_channel(self, channel: str, after: int) -> None:
        """Send ``channel``'s history after ``after``, even where the cursor has passed it."""
        if self.state is State.CLOSED:
            return
        if after < self.cursor:
            self._rewinds.append((channel, after, self.cursor))
            self.cursor = after
        # Live delivery only pushes what is appended from now on: read the history.
        self._catch_up()

    def next_read(self, indexes: list[str]) -> Read:
        """What to read next (``indexes``: the peer's own and its channels'); call
        :meth:`read_done` with the result."""
        if self.state is not State.CATCHING_UP:
            raise RuntimeError(f"nothing to read while {self.state.value}")
        self.dirty = False
        return Read(indexes, self.cursor, self.chunk)

    def read_done(self, result: ReadResult) -> list[Output]:
        """A chunk read after the cursor: send what is for this peer; turn live at the end."""
        if self.state is not State.CATCHING_UP:
            return []
        out: list[Output] = []
        batch = []
        for entry in result.entries:
            if not self._deliver_in_catch_up(entry):
                continue
            if entry.deliverable:
                batch.append(entry)
            else:
                out.append(Skipped(entry))
        if result.entries:
            self.cursor = max(self.cursor, result.entries[-1].added)
        if batch:
            out.append(SendEntries(batch, from_log=True))
        out += self._release(lambda barrier: barrier <= self.cursor)
        self._rewinds = [r for r in self._rewinds if r[2] > self.cursor]
        if not result.more and not self.dirty:
            self._rewinds.clear()
            self.state = State.LIVE
            out += self._release(lambda barrier: True)
        return out

    def answer_after(
        self, barrier: int, action: dict[str, Any], meta: dict[str, Any]
    ) -> list[Output]:
        """An action outside the log, to send once every entry up to ``barrier`` went out."""
        return self._send_or_hold(barrier, action, meta)

    def synced_after(self, barrier: int, added: float) -> list[Output]:
        """The client's ``sync`` of ``added`` is answered: acknowledge it after the answers held
        before it and the entries up to ``barrier`` (a logged undo)."""
        return self._send_or_hold(barrier, None, added)

    def close(self) -> None:
        """The peer is gone: nothing more in or out."""
        self.state = State.CLOSED
        self._held.clear()

    # -- who receives what -------------------------------------------------------------------

    def should_deliver(self, entry: Entry) -> bool:
        """Whether this client receives ``entry`` (B.4 of the protocol notes).

        Addressed to its node or client: always. Otherwise never its own actions nor excluded
        clients; then its user, and channels it subscribed to before the entry, through filters.
        """
        channels, addressed = entry.routing
        client_id = self.client_id
        if addressed:  # (else none of the peer's own indexes can be among them)
            indexes = entry.indexes
            own = self.own
            if own[0] in indexes or own[1] in indexes:
                return True
            if entry.origin_client == client_id or client_id in entry.exclude_clients:
                return False
            if len(own) == 3 and own[2] in indexes:
                return True
        elif entry.origin_client == client_id or client_id in entry.exclude_clients:
            return False
        subscriptions, added = self.subscriptions, entry.added
        for name in channels:
            sub = subscriptions.get(name)
            if sub is not None and added > sub.from_added and sub.accepts(entry):
                return True
        return False

    def _deliver_in_catch_up(self, entry: Entry) -> bool:
        if not self._rewinds or entry.added > max(r[2] for r in self._rewinds):
            return self.should_deliver(entry)
        # Below a rewind's end this client has had everything but the replayed channels.
        if entry.origin_client == self.client_id or self.client_id in entry.exclude_clients:
            return False
        for channel, after, upto in self._rewinds:
            if after < entry.added <= upto and f"channel:{channel}" in entry.indexes:
                sub = self.subscriptions.get(channel)
                if sub is not None and sub.accepts(entry):
                    return True
        return False

    # -- internals ---------------------------------------------------------------------------

    def _catch_up(self) -> None:
        self.state = State.CATCHING_UP
        self.dirty = True  # a read under way must be followed by another before going live

    def _send_or_hold(
        self, barrier: int, action: dict[str, Any] | None, value: Any
    ) -> list[Output]:
        if self.state is State.CLOSED:
            return []
        if self.state is State.LIVE and self.cursor >= barrier and not self._held:
            return [_answer(action, value)]
        self._held.append((barrier, action, value))
        return []

    def _release(self, ready: Callable[[int], bool]) -> list[Output]:
        held = self._held
        ready_count = 0
        while ready_count < len(held) and ready(held[ready_count][0]):
            ready_count += 1
        if not ready_count:
            return []
        out = [_answer(action, value) for _, action, value in held[:ready_count]]
        del held[:ready_count]
        return out


# what most calls return (never mutated: callers only iterate)
_NOTHING: list[Output] = []
#: What :meth:`Delivery.offer` returns for a plain live push (the usual case of a fan-out): one
#: shared list, so a driver may test ``outputs is ONLY_SEND_OFFERED`` and skip its dispatch.
ONLY_SEND_OFFERED: list[Output] = [SEND_OFFERED]


def _answer(action: dict[str, Any] | None, value: Any) -> Output:
    return SendSynced(value) if action is None else SendAnswer(action, value)
