"""The socket side: an asyncio protocol per TCP connection that reads the HTTP request head,
upgrades WebSocket requests itself (:mod:`logsync.websocket.handshake`) and then feeds the
socket's bytes to a pure :class:`~logsync.websocket.protocol.ServerProtocol`, handing the
messages it reports to a :class:`~logsync.server.connection.Connection` and writing what it queues.
Any other request is handed to the aiohttp application (health, metrics, hello page) by giving
it the socket. RFC 6455 rules are the protocol object's; what stays here is asyncio's: the
socket, deadlines, pausing reading and writing, when to end the TCP connection — and one Logux
rule, a message over ``max_frame_bytes`` is a ``wrong-format`` error.

Data is handled in ``data_received`` as it arrives: no task and no queue per connection. Frames
the connection is sent during one event-loop turn go out in one socket write at its end.

Bounds on what one socket can make the server hold (README "Limits"): the request head must
arrive within ``head_timeout_ms``; before ``connect`` is accepted a frame may be at most
``preauth_frame_bytes`` (longer: close 1009 before its payload is read), after it
``max_frame_bytes`` (longer: a Logux ``wrong-format`` error; over 4 times that, 1009); and the
connection may stop reading the socket (:meth:`WebSocketProtocol.pause_reading`) while the
client's actions wait for their answers.
"""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
import itertools
import logging
import math
import weakref
from collections import deque
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import cast

from logsync.engine import ServerNode
from logsync.logfmt import shorten
from logsync.protocol import ProtocolError
from logsync.server.connection import Connection, now_ms
from logsync.settings import Settings
from logsync.websocket.handshake import (
    HandshakeError,
    RequestHead,
    accept,
    http_response,
    parse_request_head,
)
from logsync.websocket.protocol import (
    BinaryMessage,
    CloseReceived,
    Event,
    MessageTooBig,
    ProtocolFailed,
    ServerProtocol,
    State,
    TextMessage,
)

logger = logging.getLogger("logsync.ws")

# A closing handshake the peer does not answer is cut after this. (The request head's deadline
# is the `head_timeout_ms` setting.)
CLOSE_TIMEOUT_S = 5.0


class _Flusher:
    """Writes, once per event-loop turn, what each connection collected during the turn: a
    connection that is sent several frames in one turn gets them in one socket write."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[WebSocketProtocol] = []

    def mark(self, protocol: WebSocketProtocol) -> None:
        if not self._dirty:
            self._loop.call_soon(self._flush)
        self._dirty.append(protocol)
        protocol._node.queued.add(protocol)  # bytes are queued: counted until its socket took them

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for protocol in dirty:
            protocol.flush()


class _Deadlines:
    """The next deadline of every connection of one event loop in one heap, woken by one loop
    timer: a timer handle per connection cost 600 bytes of an idle connection's 6 KB. Each
    :class:`_Timer` has at most one entry (it re-arms only when it fires); a cancelled one's
    entry stays until its time, holding the small timer, not the connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, _Timer]] = []
        self._order = itertools.count()  # ties in time: first armed, first fired
        self._handle: asyncio.TimerHandle | None = None
        self._next = math.inf  # when _handle fires

    def add(self, timer: _Timer, delay: float) -> None:
        """Call ``timer.fire()`` in ``delay`` seconds."""
        when = self._loop.time() + delay
        heapq.heappush(self._heap, (when, next(self._order), timer))
        if when < self._next:
            self._wake_at(when)

    def _wake_at(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._next = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle, self._next = None, math.inf
        heap, now = self._heap, self._loop.time()
        due: list[_Timer] = []
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap)[2])
        for timer in due:  # these may arm again: after the pops, so none fires twice here
            timer.fire()
        if heap and heap[0][0] < self._next:
            self._wake_at(heap[0][0])


class _Upgrades:
    """Upgrades request heads at most ``per_turn`` per event-loop turn: the first ones of a turn
    at once, the rest in the next turns, oldest first. When thousands of clients connect at
    once (a reconnect storm) their heads arrive in one or two turns; upgraded there and then
    (about 35 µs each), every live message read in those turns waited for all of them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._done = 0  # upgrades this turn
        self._waiting: deque[tuple[WebSocketProtocol, RequestHead]] = deque()

    def add(self, protocol: WebSocketProtocol, head: RequestHead, per_turn: int) -> None:
        """Upgrade ``protocol`` now if this turn has room, else in a later turn (it is told with
        :meth:`WebSocketProtocol._upgrade`)."""
        if self._done < per_turn and not self._waiting:
            if not self._done:
                self._loop.call_soon(self._next_turn, per_turn)
            self._done += 1
            protocol._upgrade(head)
            return
        protocol._wait_for_upgrade()
        self._waiting.append((protocol, head))

    def _next_turn(self, per_turn: int) -> None:
        self._done = 0
        waiting = self._waiting
        while waiting and self._done < per_turn:
            protocol, head = waiting.popleft()
            self._done += protocol._upgrade_waiting(head)  # one closed meanwhile takes no place
        if self._done:
            self._loop.call_soon(self._next_turn, per_turn)


class _LoopShared:
    """What the connections of one event loop share: the flusher, the deadline heap and the
    upgrade queue (one lookup per connection for all)."""

    __slots__ = ("deadlines", "flusher", "upgrades")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.flusher = _Flusher(loop)
        self.deadlines = _Deadlines(loop)
        self.upgrades = _Upgrades(loop)


_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopShared] = (
    weakref.WeakKeyDictionary()
)


_OPEN = State.OPEN


class WebSocketProtocol(asyncio.Protocol):
    """One TCP connection. Before the upgrade it reads the request head; after it, it feeds a
    :class:`~logsync.websocket.protocol.ServerProtocol` and is the
    :class:`~logsync.server.connection.Transport` of its connection: :meth:`write`, :meth:`close`."""

    def __init__(self, node: ServerNode, http: Callable[[], asyncio.Protocol]) -> None:
        self._node = node
        self._http = http
        self._loop = asyncio.get_running_loop()
        shared = _shared.get(self._loop)
        if shared is None:
            shared = _shared[self._loop] = _LoopShared(self._loop)
        self._flusher = shared.flusher
        self._deadlines = shared.deadlines
        self._upgrades = shared.upgrades
        self._upgrading = False  # the head is complete, waiting in _upgrades for its turn
        self._marked = False  # in the flusher's list for this turn
        self._socket: asyncio.Transport | None = None
        self._head: bytearray | None = bytearray()
        self._searched = 0  # bytes of the head already searched for its end
        self._protocol: ServerProtocol | None = None  # after the upgrade
        self._lifted = False  # the protocol has the limit of an authenticated connection
        # This side ended the connection (close() was called, or the client broke RFC 6455):
        # messages the protocol reported before are no longer handed to the connection.
        self._closing = False
        self.conn: Connection | None = None
        self._timer: _Timer | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._lost = False  # connection_lost was called
        self._closed: asyncio.Future[None] | None = None  # made by wait_closed
        self._paused = False  # the socket's write buffer is over its mark
        self._drained: list[asyncio.Future[None]] = []
        # Reading paused by the connection (inbound backpressure), and the events of the last
        # read that came after the pause, handed over once reading resumes.
        self._reading_paused = False
        self._held: list[Event] = []
        # whether the socket itself is not being read (the connection's request, _reading_paused,
        # outlasts it until the held messages are handed over)
        self._socket_paused = False
        # catch-up bytes of this socket are in the node's budget (hold_budget): reported again
        # at each write and once drained, with the write buffer's limits at 0 meanwhile so that
        # resume_writing says when it is empty
        self._budgeted = False
        self._high_water = 1

    # -- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._socket = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        timeout = self._node.settings.head_timeout_ms / 1000
        self._deadline = self._loop.call_later(timeout, self._socket.abort)

    def data_received(self, data: bytes) -> None:
        protocol = self._protocol
        if protocol is not None:
            self._frames(protocol, data)
            return
        if self._head is None:
            return  # refused: closing
        self._head += data
        if self._upgrading:
            return  # the head is complete; what follows it is read after the upgrade
        try:
            head = parse_request_head(self._head, self._searched)
        except HandshakeError as error:
            self._refuse(error)
            return
        if head is None:
            self._searched = len(self._head)
            return
        if not head.is_upgrade:
            self._hand_to_http()
        else:
            self._upgrades.add(self, head, self._node.settings.upgrades_per_turn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if self.conn is not None:
            self._node.detach(self.conn)
        if self._protocol is not None:
            self._protocol.data_to_send()  # dropped: nowhere to write it
        self._held.clear()
        self._lost = True
        self._node.queued.discard(self)
        self._resume_waiters()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True
        if self._protocol is not None:
            # A client that sends pings and reads nothing can't grow the buffer with pongs.
            self._protocol.hold_pongs()

    def resume_writing(self) -> None:
        self._paused = False
        if self._protocol is not None and self._protocol.release_pongs():
            self.flush()
        if self._budgeted:
            self._settle_budget(0)
        self._resume_waiters()

    # -- before the upgrade --------------------------------------------------------------------

    def _hand_to_http(self) -> None:
        """Not a WebSocket request: aiohttp serves this socket from here on."""
        assert self._socket is not None and self._head is not None
        if self._deadline is not None:
            self._deadline.cancel()
        http = self._http()
        self._socket.set_protocol(http)
        http.connection_made(self._socket)
        http.data_received(bytes(self._head))
        self._head = None

    def _refuse(self, error: HandshakeError) -> None:
        assert self._socket is not None
        self._head = None
        self._socket.write(http_response(error.status, error.text + "\n", error.headers))
        self._socket.close()

    def _wait_for_upgrade(self) -> None:
        """The head is complete but this turn has no room for its upgrade (see _Upgrades): the
        socket is not read until :meth:`_upgrade_waiting`."""
        assert self._socket is not None
        self._upgrading = True
        self._socket.pause_reading()

    def _upgrade_waiting(self, head: RequestHead) -> bool:
        """Upgrade after waiting for a turn; False if the socket was refused or closed meanwhile."""
        self._upgrading = False
        socket = self._socket
        if socket is None or self._head is None or socket.is_closing():
            return False
        socket.resume_reading()
        self._upgrade(head)
        return True

    def _upgrade(self, head: RequestHead) -> None:
        assert self._socket is not None and self._head is not None
        node, settings = self._node, self._node.settings
        try:
            response = accept(head, settings.allowed_origins)
        except HandshakeError as error:
            if error.status == 403:
                limit = settings.log_value_chars
                origin = shorten(head.headers.get("origin"), limit)
                peer = self._socket.get_extra_info("peername")
                logger.info("refused upgrade from %s: origin %s", peer and peer[0], origin)
            self._refuse(error)
            return
        if node.admission.full():
            # Cheaper than opening the socket only to close it with 1013.
            refused = node.admission.refuse()
            retry = {"Retry-After": str(round(refused.retry_after))}
            self._refuse(HandshakeError(503, "too many handshakes waiting: try again later", retry))
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._socket.write(response)
        # The socket pauses us once its buffer passes a quarter of the connection's high-water
        # mark, so wait_below (called with half of it) has a pause to wait for.
        self._high_water = max(1, settings.outbound_high_water_bytes // 4)
        self._socket.set_write_buffer_limits(high=self._high_water)
        # Before `connect` is accepted a socket may hold only small frames (longer: 1009 before
        # the payload is read); after it, see _frames.
        protocol = ServerProtocol(
            settings.preauth_frame_bytes, soft_message_bytes=settings.max_frame_bytes
        )
        peer = self._socket.get_extra_info("peername")
        remote = client_address(
            peer[0] if peer else None, head.headers.get("x-forwarded-for", ""), settings
        )
        header = head.headers.get("cookie")
        cookie = None
        if header:
            cookie = {k: v.value for k, v in SimpleCookie(header).items()}
        self.conn = Connection(node, self, remote=remote, cookie=cookie)
        node.attach(self.conn)
        self._timer = _Timer(self.conn, self._deadlines)
        self._protocol = protocol
        rest = bytes(self._head[head.size :])
        self._head = None
        if rest:
            self._frames(protocol, rest)

    # -- after it ------------------------------------------------------------------------------

    def _frames(self, protocol: ServerProtocol, data: bytes) -> None:
        conn = self.conn
        assert conn is not None
        if not self._lifted and conn.authenticated:
            # Authenticated: frames over max_frame_bytes get a Logux error (the protocol's
            # MessageTooBig); over 4 times that, the connection is closed with 1009 before the
            # payload is read.
            protocol.max_message_bytes = self._node.settings.max_frame_bytes * 4
            self._lifted = True
        queued = protocol.pending_bytes
        events = protocol.receive_data(data)
        if not events:
            return
        if not queued and protocol.pending_bytes and not self._marked:
            self._marked = True
            self._flusher.mark(self)  # pongs, the answer to a close: at the end of the turn
        if self._held:
            self._hold(events)
        elif len(events) == 1 and events[0].__class__ is str and not self._reading_paused:
            # one text message (a `synced`, most often): what _dispatch does with it
            if not self._closing:
                conn.receive(events[0])
        else:
            self._dispatch(events)

    def _dispatch(self, events: list[Event]) -> None:
        conn = self.conn
        assert conn is not None
        for index, event in enumerate(events):
            if self._reading_paused:
                # The connection asked for no more input: the rest waits for resume_reading.
                self._hold(events[index:])
                return
            if isinstance(event, (TextMessage, BinaryMessage)):
                if not self._closing:
                    conn.receive(event)
            elif isinstance(event, MessageTooBig):
                if not self._closing:
                    limit = event.limit
                    conn.error(ProtocolError("wrong-format", f"frame is larger than {limit} bytes"))
            elif isinstance(event, CloseReceived):
                # The protocol answered it: write that, and end the TCP connection (the server
                # ends it first, RFC 6455 §7.1.1).
                assert self._socket is not None
                self.flush()
                self._socket.close()
                return
            elif isinstance(event, ProtocolFailed):
                self._fail(event)
                return

    def _hold(self, events: list[Event]) -> None:
        """Reading is paused: keep ``events`` for resume_reading, but act on a failure at once
        (what the client sent before it is dropped with it)."""
        last = events[-1]
        if isinstance(last, ProtocolFailed):
            self._fail(last)
        else:
            self._held.extend(events)

    def _fail(self, failure: ProtocolFailed) -> None:
        """The client broke RFC 6455: write the close frame the protocol queued and end the TCP
        connection without waiting for an answer (RFC 6455 §7.1.7); what it still sends is
        dropped unread (by the protocol)."""
        assert self._socket is not None
        remote = shorten(
            self.conn.remote if self.conn else None, self._node.settings.log_value_chars
        )
        logger.info("closing %s: %s", remote, failure.reason)
        self._held.clear()
        self._end()
        socket = self._socket
        if socket.can_write_eof():
            # FIN after the close frame; the socket closes at the client's EOF (or at the close
            # deadline). Closing it now, with unread bytes, would reset it, and a reset may make
            # the client drop the close frame unread.
            socket.write_eof()

    def _end(self) -> None:
        """Our close frame is queued: write it (after what was queued before it), read on (the
        client's answer, its EOF) and abort the socket if that takes over ``CLOSE_TIMEOUT_S``."""
        assert self._socket is not None
        first = not self._closing
        self._closing = True
        self.flush()
        if not first:
            return  # a failure after our close: its deadline stands
        if self._reading_paused:
            # The client's answer to the close must be read.
            self.resume_reading()
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self._loop.call_later(CLOSE_TIMEOUT_S, self._socket.abort)

    def _write_now(self, data: bytes) -> None:
        assert self._socket is not None
        if not self._socket.is_closing():
            self._socket.write(data)

    # -- the Connection's transport ------------------------------------------------------------

    def write(self, payloads: list[bytes], binary: bool) -> None:
        protocol = self._protocol
        if protocol is None or protocol.state is not _OPEN:
            return  # closing: nothing more is sent
        if not self._marked:
            self._marked = True
            self._flusher.mark(self)
        protocol.send_messages(payloads, binary)

    def flush_soon(self) -> None:
        if not self._marked:
            self._marked = True
            self._flusher.mark(self)

    def flush(self) -> None:
        """Write what was collected, after the live entries the connection was offered (the
        flusher calls this at the end of the loop turn)."""
        conn = self.conn
        if conn is not None:
            conn.send_offered()  # writes to us while still marked: no second mark
        self._marked = False
        protocol = self._protocol
        if protocol is not None and protocol.pending_bytes:
            self._write_now(protocol.data_to_send())
            if self._budgeted:
                self._settle_budget(0)
        socket = self._socket
        if socket is not None and socket.get_write_buffer_size():
            self._node.queued.add(self)
        else:
            self._node.queued.discard(self)  # nothing queued: the socket took it all

    @property
    def buffered_bytes(self) -> int:
        socket, protocol = self._socket, self._protocol
        return (protocol.pending_bytes if protocol else 0) + (
            socket.get_write_buffer_size() if socket else 0
        )

    def hold_budget(self, chunk: int) -> None:
        if self.conn is None or self._lost:
            return
        self._budgeted = True
        self._settle_budget(chunk)

    def _settle_budget(self, chunk: int) -> None:
        """Report this socket's queued bytes to the catch-up budget; once none are, the holding
        ends and the write buffer gets its usual limits back."""
        socket, conn = self._socket, self.conn
        assert socket is not None and conn is not None
        queued = self.buffered_bytes if not self._lost else 0
        self._node.budget.hold(conn, queued, chunk=chunk)
        if socket.is_closing():
            return  # its bytes are returned when it is gone (Connection.closed_by_peer)
        if queued:
            if socket.get_write_buffer_limits()[1] != 0:
                # resume_writing once the buffer is empty (pause_writing at once if it is not)
                socket.set_write_buffer_limits(high=0)
        else:
            self._budgeted = False
            if socket.get_write_buffer_limits()[1] == 0:
                socket.set_write_buffer_limits(high=self._high_water)

    async def wait_below(self, limit: int) -> None:
        self.flush()
        while self.buffered_bytes >= limit and self._paused and not self._lost:
            waiter = self._loop.create_future()
            self._drained.append(waiter)
            await waiter

    def _resume_waiters(self) -> None:
        waiters, self._drained = self._drained, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def pause_reading(self) -> None:
        """Stop reading the socket (inbound backpressure): no more messages reach the
        connection, not even those already read, until :meth:`resume_reading`. Idempotent; a
        no-op once the socket is closing."""
        if self._reading_paused or self._closing:
            return
        self._reading_paused = True
        socket = self._socket
        if socket is not None and not socket.is_closing() and not self._socket_paused:
            self._socket_paused = True
            socket.pause_reading()

    def resume_reading(self) -> None:
        """Read the socket again; the messages held since the pause are handed over first (in
        a later callback, not inside the caller), and the socket is read only once all of them
        were — had it been resumed at once, what arrived meanwhile would join the held ones,
        and a connection that pauses again while they are handed over would hold more and more.
        Idempotent; a no-op once the socket is closing."""
        if not self._reading_paused:
            return
        self._reading_paused = False
        if self._held:
            self._loop.call_soon(self._release_held)
        else:
            self._read_socket()

    def _read_socket(self) -> None:
        socket = self._socket
        if socket is not None and not socket.is_closing() and self._socket_paused:
            self._socket_paused = False
            socket.resume_reading()

    @property
    def reading_paused(self) -> bool:
        return self._reading_paused

    def _release_held(self) -> None:
        if self._reading_paused or self.conn is None:
            return
        held, self._held = self._held, []
        self._dispatch(held)
        if not self._reading_paused and not self._held:
            self._read_socket()

    def close(self, code: int, reason: str) -> None:
        """Send what is queued and a close frame; the socket closes when the client answers (or
        after ``CLOSE_TIMEOUT_S``)."""
        protocol = self._protocol
        if protocol is None or protocol.state is not _OPEN:
            return
        protocol.send_close(code, reason)
        self._end()

    async def wait_closed(self) -> None:
        if self._lost:
            return
        if self._closed is None:
            self._closed = self._loop.create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), timeout=CLOSE_TIMEOUT_S)
        except TimeoutError:
            if self._socket is not None:
                self._socket.abort()


def client_address(peer: str | None, forwarded_for: str, settings: Settings) -> str | None:
    """The client's address: the peer's, or the nearest untrusted hop of X-Forwarded-For when the
    peer is a trusted load balancer (``trusted_proxies``: addresses or networks, comma-separated)."""
    trusted = [
        ipaddress.ip_network(a.strip(), strict=False)
        for a in settings.trusted_proxies.split(",")
        if a.strip()
    ]

    def is_trusted(address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(ip in network for network in trusted)

    if not trusted or not is_trusted(peer):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return peer


class _Timer:
    """Wakes the session at its deadlines (ping, timeouts): one entry in the loop's
    :class:`_Deadlines` per connection at a time."""

    __slots__ = ("_conn", "_deadlines")

    def __init__(self, conn: Connection, deadlines: _Deadlines) -> None:
        self._conn: Connection | None = conn
        self._deadlines = deadlines
        self._arm()

    def _arm(self) -> None:
        conn = self._conn
        if conn is None:
            return
        deadline = conn.session.next_deadline()
        if deadline is None or conn.closed:
            return
        delay = max(0.0, (deadline - now_ms()) / 1000)
        if not conn.authenticated:
            delay = min(delay, 1.0)  # the deadlines move earlier once connected
        self._deadlines.add(self, delay)

    def fire(self) -> None:
        conn = self._conn
        if conn is not None:
            conn.on_timer()
            self._arm()

    def cancel(self) -> None:
        self._conn = None  # its entry is skipped when due, and holds no connection meanwhile
