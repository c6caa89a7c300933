"""The pull-only HTTP transport: ``POST /v1/sync`` (docs/http-pull.md is the contract) and
``GET /v1/openapi.json``, registered on the node's aiohttp application by :func:`add_pull_routes`.

Each request is one :class:`~logsync.server.pull_peer.PullPeer`, the second
:class:`~logsync.engine.peer.Peer`: it is authenticated by the engine (admission, brute-force
lock, ``auth``, the cluster-wide claim of its client id), gets back the client's stored
subscriptions, pushes the request's subscriptions and actions as one batch through the engine's
rules, and reads its page with the engine's pure :class:`~logsync.engine.delivery.Delivery` (who
receives what, filters, undeliverable entries, the cursor). With an empty page it may wait for an
entry the broker routes to it (long-poll), holding only a future and a timer. It is detached
from the node whatever happens. Every answer, errors included, is a body of
:mod:`logsync.protocol.pull`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

import msgpack
import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from logsync.engine import ServerNode
from logsync.engine.delivery import SendEntries, Skipped
from logsync.engine.subscriptions import PULL_RECORDS, filter_key, saved_at
from logsync.log import Entry, StoreUnavailable
from logsync.protocol import MSGPACK, ActionsReceived, ConnectRequested, ProtocolError
from logsync.protocol.codec import JSON
from logsync.protocol.ids import parse_node_id
from logsync.protocol.pull import (
    CursorError,
    SyncRequest,
    decode_cursor,
    encode_cursor,
    error_body,
    openapi_document,
)
from logsync.protocol.schema import SchemaError, check_entry, parse_action_id, stand_in
from logsync.server.pull_peer import PullPeer
from logsync.server.ws import client_address
from logsync.wallclock import now_ms

logger = logging.getLogger("logsync.server.pull")

JSON_TYPES = frozenset({"application/json"})
MSGPACK_TYPES = frozenset({"application/msgpack", "application/x-msgpack"})
# Extra endpoints documented in /v1/openapi.json: (paths, models) pairs appended before startup
# (the wake-ups add theirs), see logsync.protocol.pull.openapi_document.
OPENAPI_PARTS = web.AppKey("openapi_parts", list[tuple[dict[str, Any], list[type[BaseModel]]]])
# Reads of an all-filtered stretch of the log one request makes before answering `more`.
MAX_READS = 8
# The node id part the server's subscribe actions are made under (the client's client id
# with this tab): ids of the client, so the rules treat them as its own, but not ids it makes.
SERVER_TAB = "~pull"


class Answered(Exception):
    """Stop handling the request and send this response."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(body.get("error"))
        self.status = status
        self.body = body
        self.headers = headers or {}


@dataclass
class Page:
    entries: list[Entry]
    more: bool


def add_pull_routes(web_app: web.Application, node: ServerNode) -> None:
    """Register ``POST /v1/sync`` and ``GET /v1/openapi.json`` for ``node``."""
    web_app[OPENAPI_PARTS] = []
    handler = SyncHandler(node)
    web_app.router.add_post("/v1/sync", handler.handle)

    async def openapi(request: web.Request) -> web.Response:
        paths: dict[str, Any] = {}
        models: list[type[BaseModel]] = []
        for extra_paths, extra_models in request.app[OPENAPI_PARTS]:
            paths.update(extra_paths)
            models += extra_models
        return web.json_response(
            openapi_document(paths, models), dumps=lambda v: orjson.dumps(v).decode()
        )

    web_app.router.add_get("/v1/openapi.json", openapi)


class SyncHandler:
    """``POST /v1/sync`` over one node; see the module docstring for the steps."""

    def __init__(self, node: ServerNode) -> None:
        self.node = node

    async def handle(self, request: web.Request) -> web.StreamResponse:
        binary = _media(request.headers.get("Content-Type", "")) == "msgpack"
        answer_binary = _answer_binary(request.headers.get("Accept", ""), binary)
        try:
            status, body, headers = await self._sync(request, answer_binary)
        except Answered as answered:
            status, body, headers = answered.status, answered.body, answered.headers
        except StoreUnavailable as error:
            self.node.store_failed(error)
            status, headers = 503, self._retry_after()
            body = error_body("try-again-later", "the log store is unavailable")
        except Exception:
            # (e.g. the broker losing Redis mid-handshake): the client retries, dedupe makes
            # that safe — never a 500 outside the contract
            logger.exception("POST /v1/sync failed")
            status, headers = 503, self._retry_after()
            body = error_body("try-again-later", "server error: try again")
        metrics = self.node.metrics
        metrics.pull_requests[status] = metrics.pull_requests.get(status, 0) + 1
        if status == 415:
            answer_binary = False
        payload = msgpack.packb(body, use_bin_type=True) if answer_binary else orjson.dumps(body)
        return web.Response(
            status=status,
            body=payload,
            content_type="application/msgpack" if answer_binary else "application/json",
            headers={"Cache-Control": "no-store", **headers},
        )

    def _retry_after(self) -> dict[str, str]:
        return {"Retry-After": str(round(self.node.admission.retry_after()))}

    async def _sync(
        self, request: web.Request, binary: bool
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        node, settings = self.node, self.node.settings
        body = await self._read_body(request)
        sync = self._validate(body, request)
        size = len(body)
        del body  # a long-poll holds no buffer
        if node.stopping:
            raise Answered(
                503, error_body("try-again-later", "server shutdown"), self._retry_after()
            )
        if node.admission.full():
            refused = node.admission.refuse()
            headers = {"Retry-After": str(round(refused.retry_after))}
            raise Answered(503, error_body("try-again-later", "too many handshakes"), headers)
        cursor = None
        if sync.cursor is not None:
            try:
                cursor = decode_cursor(sync.cursor)
            except CursorError as error:
                raise Answered(400, error_body("bad-request", str(error))) from None
        token = sync.token
        if token is None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            token = given.strip() if scheme.lower() == "bearer" else None
        peername = request.transport.get_extra_info("peername") if request.transport else None
        remote = client_address(
            peername[0] if peername else None, request.headers.get("X-Forwarded-For", ""), settings
        )
        cookie = SimpleCookie(request.headers.get("Cookie", ""))
        peer = PullPeer(
            node,
            parse_node_id(sync.node),
            subprotocol=sync.subprotocol,
            limit=sync.limit or min(settings.pull_page_default, settings.pull_page_max),
            remote=remote,
            cookie={k: v.value for k, v in cookie.items()},
        )
        node.attach(peer)
        try:
            return await self._serve(peer, sync, cursor, token, size, binary)
        finally:
            node.detach(peer)
            peer.finished()

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.node.settings.max_frame_bytes
        too_large = Answered(
            413, error_body("too-large", f"the body is over {limit} bytes", limit=limit)
        )
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        if _media(request.headers.get("Content-Type", "")) is None:
            reason = "send application/json or application/msgpack"
            raise Answered(415, error_body("unsupported-media-type", reason))
        chunks, size = [], 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    def _validate(self, body: bytes, request: web.Request) -> SyncRequest:
        settings = self.node.settings
        binary = _media(request.headers.get("Content-Type", "")) == "msgpack"
        try:
            data = (MSGPACK if binary else JSON).decode(body)
        except ProtocolError:
            kind = "msgpack" if binary else "JSON"
            raise Answered(400, error_body("bad-request", f"the body is not {kind}")) from None
        try:
            sync = SyncRequest.model_validate(data)
        except ValidationError as error:
            details = error.errors(include_url=False, include_context=False, include_input=False)
            raise Answered(
                400, error_body("bad-request", "invalid request", details=_json_safe(details))
            ) from None
        problems: list[tuple[str, str]] = []
        if sync.limit is not None and sync.limit > settings.pull_page_max:
            problems.append(("limit", f"at most pull_page_max ({settings.pull_page_max})"))
        if sync.wait > settings.pull_wait_max_s:
            problems.append(("wait", f"at most pull_wait_max_s ({settings.pull_wait_max_s})"))
        if len(sync.actions) > settings.inbound_max_actions:
            problems.append(("actions", f"at most {settings.inbound_max_actions} actions"))
        items = len(sync.subscribe) + len(sync.unsubscribe)
        if items > settings.max_subscriptions:
            problems.append(("subscribe", f"at most {settings.max_subscriptions} items"))
        if problems:
            limits = [{"loc": [name], "msg": text, "type": "limit"} for name, text in problems]
            raise Answered(400, error_body("bad-request", "out of range", details=limits))
        return sync

    async def _serve(
        self,
        peer: PullPeer,
        sync: SyncRequest,
        cursor: tuple[str, int] | None,
        token: str | None,
        size: int,
        binary: bool,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """An attached peer's request: authenticate; restore its subscriptions and check its
        cursor (409 reset); push and collect the answers; save the subscriptions; read the page,
        long-polling while it is empty; the status, body and headers to answer with."""
        node, store = self.node, self.node.store
        event = ConnectRequested(
            node=peer.parts,
            token=token,
            subprotocol=sync.subprotocol,
            headers={},
            synced=cursor[1] if cursor else 0,
        )
        await node.authenticate(peer, event)
        if peer.refused is not None:
            return self._refused(peer.refused)
        if not peer.accepted or peer.delivery is None:
            raise Answered(
                503, error_body("try-again-later", "try again later"), self._retry_after()
            )
        epoch, head, had = await asyncio.gather(
            store.epoch(), store.head(), store.get_record(PULL_RECORDS, peer.client_id)
        )
        await node.subscriptions.restore(peer, had)
        restored = node.subscriptions.state(peer)
        reset = await self._reset_reason(peer, cursor, epoch, head, known=had is not None)
        if reset is not None:
            channels = list(peer.subscriptions)
            node.subscriptions.end(peer)  # they are dropped (no `unsubscribe` callbacks run)
            # kept, empty: the client is known, so its fresh cursor is not refused in turn
            ttl = node.settings.pull_state_ttl_ms
            saved = node.subscriptions.saved(peer, now_ms())
            await store.put_record(PULL_RECORDS, peer.client_id, saved, ttl_ms=ttl)
            fresh = encode_cursor(epoch, head)
            body = error_body("reset", reset, cursor=fresh, resubscribe=channels)
            return 409, body, {}
        answers, subscriptions = await self._push(peer, sync, size, head)
        sync.actions.clear()  # answered: what a long-poll holds is its answers, not its actions
        await self._save(peer, had, restored)
        page = await self._page(peer)
        if not page.entries and not page.more and sync.wait > 0:
            page = await self._long_poll(peer, page, sync.wait)
        assert peer.delivery is not None
        return (
            200,
            {
                "answers": answers,
                "subscriptions": subscriptions,
                "actions": [_outbound(entry, binary) for entry in page.entries],
                "more": page.more,
                "cursor": encode_cursor(epoch, peer.delivery.cursor),
            },
            {},
        )

    async def _long_poll(self, peer: PullPeer, page: Page, wait: float) -> Page:
        """Wait up to ``wait`` seconds for an entry for the client, then read the page again;
        the empty page on timeout or when the peer is closed."""
        loop, metrics = asyncio.get_running_loop(), self.node.metrics
        deadline = loop.time() + wait
        metrics.pull_waiting += 1
        try:
            while not page.entries and not page.more and not peer.closed:
                left = deadline - loop.time()
                if left <= 0 or not await peer.wait_for_entry(left) or peer.closed:
                    break
                page = await self._page(peer)
        finally:
            metrics.pull_waiting -= 1
        return page

    def _refused(self, error: ProtocolError) -> tuple[int, dict[str, Any], dict[str, str]]:
        if error.type == "wrong-subprotocol":
            options = error.options or {}
            reason = "the client's subprotocol is too old"
            return 400, error_body("wrong-subprotocol", reason, **options), {}
        return 401, error_body("wrong-credentials", "authentication refused"), {}

    async def _reset_reason(
        self,
        peer: PullPeer,
        cursor: tuple[str, int] | None,
        epoch: str,
        head: int,
        *,
        known: bool,
    ) -> str | None:
        """Why the cursor cannot be served (another log, ahead of it, below trimmed history of
        one of the client's indexes, or the client's saved subscriptions expired: ``known`` is
        whether a record of them is kept), or None."""
        if cursor is None:
            return None
        cursor_epoch, added = cursor
        if cursor_epoch != epoch:
            return "the cursor is of another log (it was reset or restored)"
        if added > head:
            return "the cursor is ahead of the log"
        if not known and added > 0:
            # Every answered request keeps a record (for pull_state_ttl_ms): a cursor without
            # one outlived its subscriptions, and a page without their channels would be a
            # silent gap.
            return "the client's saved subscriptions expired: subscribe again"
        # (a channel counts from where the client's subscription began)
        since = {index: added for index in peer.own_indexes()}
        for channel, sub in peer.subscriptions.items():
            since[f"channel:{channel}"] = max(added, sub.from_added)
        store = self.node.store
        horizons = await asyncio.gather(*(store.horizon(index) for index in since))
        for (index, after), horizon in zip(since.items(), horizons, strict=True):
            if after < horizon:
                return f"history of {index} before the cursor was trimmed"
        return None

    async def _push(
        self, peer: PullPeer, sync: SyncRequest, size: int, head: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Run the subscriptions, unsubscriptions and actions as one batch; their answers in
        request order."""
        node = self.node
        items: list[tuple[str, dict[str, Any] | None]] = []  # (channel, subscribe action | None)
        event = ActionsReceived(1, [], [])
        for item in sync.subscribe:
            action = {**item.model_dump(exclude_none=True), "type": "logux/subscribe"}
            sub = peer.subscriptions.get(item.channel)
            if sub is not None and filter_key(action) in sub.filters:
                items.append((item.channel, None))  # held already: nothing runs again
                continue
            items.append((item.channel, self._server_action(peer, action, event)))
        for unsub in sync.unsubscribe:
            action = {**unsub.model_dump(exclude_none=True), "type": "logux/unsubscribe"}
            items.append((unsub.channel, self._server_action(peer, action, event)))
        ids: list[str] = []
        for action, meta in sync.actions:
            meta = dict(meta)
            try:
                meta["id"] = str(parse_action_id(meta.get("id")))
            except SchemaError as error:
                raise Answered(400, error_body("bad-request", str(error))) from None
            ids.append(meta["id"])
            _check(action, meta, event, node.settings.max_channel_length)
        if (event.entries or event.refused) and not await peer.push(event, size):
            reason = "the request was interrupted; send it again"
            raise Answered(503, error_body("try-again-later", reason), self._retry_after())
        wanted = {*ids, *(a["id"] for _, a in items if a is not None)}
        found = await self._answers_in_log(peer, wanted - peer.answers.keys(), head)
        answers = [_answer(i, peer.answers.get(i) or found.get(i)) for i in ids]
        subscriptions = []
        for channel, made in items:
            answer: dict[str, Any] = {"status": "processed"}
            if made is not None:
                answer = _answer(made["id"], peer.answers.get(made["id"]) or found.get(made["id"]))
                del answer["id"]
            subscriptions.append({"channel": channel, **answer})
        return answers, subscriptions

    def _server_action(
        self, peer: PullPeer, action: dict[str, Any], event: ActionsReceived
    ) -> dict[str, Any]:
        """A subscribe/unsubscribe item as the client's action with a server-made id, checked
        at the door like every action (a channel too long, a bad ``since``: undo ``error``)."""
        ms, seq = self.node.clock.next(now_ms())
        action_id = f"{ms} {peer.client_id}:{SERVER_TAB} {seq}"
        _check(action, {"id": action_id, "time": ms}, event, self.node.settings.max_channel_length)
        return {"id": action_id}

    async def _answers_in_log(
        self, peer: PullPeer, missing: set[str], head: int
    ) -> dict[str, dict[str, Any]]:
        """The answers the engine logged (addressed to the client) for ``missing`` ids: read
        from the client's index after ``head``; a duplicate of an action that failed earlier
        finds its undo after the action itself."""
        found: dict[str, dict[str, Any]] = {}
        if not missing:
            return found
        store, index = self.node.store, f"client:{peer.client_id}"
        await self._scan(index, head, missing, found)
        for action_id in list(missing - found.keys()):
            entry = await store.get(action_id)
            if entry is not None and entry.status == "error":
                await self._scan(index, entry.added, {action_id}, found)
        return found

    async def _scan(
        self, index: str, after: int, missing: set[str], found: dict[str, dict[str, Any]]
    ) -> None:
        store = self.node.store
        left = set(missing)
        while left:
            result = await store.read([index], after=after, limit=1000)
            for entry in result.entries:
                action = entry.action
                answered = action.get("id")
                if answered in left and action["type"] in ("logux/processed", "logux/undo"):
                    found[answered] = action
                    left.discard(answered)
            if not result.more or not result.entries:
                return
            after = result.next_cursor

    async def _save(self, peer: PullPeer, had: bytes | None, restored: dict[str, Any]) -> None:
        """Keep the client's subscriptions for ``pull_state_ttl_ms`` after this request: write
        them when the request changed them, or when the record is older than a tenth of its
        TTL (so a client that only polls costs no write per request, and its subscriptions
        live at least 9 tenths of the TTL after its last request). A client with none gets a
        record too: its cursor's next request tells a known client from one whose saved
        subscriptions expired."""
        node, store, ttl = self.node, self.node.store, self.node.settings.pull_state_ttl_ms
        now = now_ms()
        if had is not None and node.subscriptions.state(peer) == restored:
            written = saved_at(had)
            if written is not None and now - written < ttl // 10:
                return
        # kept even with no subscription: a known client's cursor is not taken for an expired one
        saved = node.subscriptions.saved(peer, now)
        await store.put_record(PULL_RECORDS, peer.client_id, saved, ttl_ms=ttl)

    async def _page(self, peer: PullPeer) -> Page:
        """The entries after the peer's cursor it receives, at most its limit; ``more`` when
        the log has more after them."""
        delivery, node = peer.delivery, self.node
        assert delivery is not None
        entries: list[Entry] = []
        more = False
        peer.pending = False
        for _ in range(MAX_READS):
            if peer.closed:
                break
            if not delivery.reading:
                delivery.catch_up()
            read = delivery.next_read(peer.read_indexes())
            result = await node.read(read.indexes, read.after, peer.limit - len(entries))
            for out in delivery.read_done(result):
                if isinstance(out, SendEntries):
                    entries += out.entries
                elif isinstance(out, Skipped):
                    node.undeliverable(out.entry)
            more = result.more
            if not more or len(entries) >= peer.limit:
                break
        node.metrics.deliveries += len(entries)
        return Page(entries, more)


def _check(
    action: dict[str, Any], meta: dict[str, Any], event: ActionsReceived, max_channel: int
) -> None:
    """Validate one action at the door, as the socket's session does: into ``event.entries``,
    or ``event.refused`` with the details its undo carries."""
    try:
        check_entry(action, meta, max_channel)
    except SchemaError as error:
        event.refused.append((stand_in(action), meta, str(error)))
    else:
        event.entries.append((action, meta))


def _outbound(entry: Entry, binary: bool) -> list[Any]:
    """An entry of the page: its action (JSON: encoded once per entry) and outbound meta."""
    return [entry.wire_action(binary), {**entry.meta(), "added": entry.added}]


def _answer(action_id: str, answer: dict[str, Any] | None) -> dict[str, Any]:
    if answer is None:
        # answered by an earlier copy whose undo is no longer in the log
        return {"id": action_id, "status": "undo", "reason": "error"}
    if answer["type"] == "logux/processed":
        return {"id": action_id, "status": "processed"}
    return {"id": action_id, "status": "undo", "reason": answer.get("reason"), "undo": answer}


def _media(content_type: str) -> str | None:
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in JSON_TYPES:
        return "json"
    if kind in MSGPACK_TYPES:
        return "msgpack"
    return None


def _answer_binary(accept: str, binary: bool) -> bool:
    """The response format: the request's, unless ``Accept`` names only the other one."""
    kinds = {part.split(";", 1)[0].strip().lower() for part in accept.split(",") if part.strip()}
    if binary and kinds & JSON_TYPES and not kinds & MSGPACK_TYPES:
        return False
    if not binary and kinds & MSGPACK_TYPES and not kinds & JSON_TYPES:
        return True
    return binary


def _json_safe(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, default=str))
