"""The pull-only HTTP transport: ``POST /v1/sync`` (docs/http-pull.md) in a loop.

:class:`HttpTransport.run` sends requests until one fails: each carries the cursor, the
subscriptions the server does not have yet, queued unsubscriptions and up to ``push_batch``
(and ``max_message_bytes``) pending actions (creation order; retried as they are until
answered — the server deduplicates by id); answers resolve the actions, the page goes to the
client, and the new cursor is saved after it. With nothing to push and nothing more to read it
long-polls (``wait`` seconds), or, with ``wait=0``, sleeps until
:meth:`~logsync_client.Client.wake` or a new action. A long-poll is cut short when an action is
added. A 409 reset takes the fresh cursor and subscribes every channel
again (their ``load`` runs); 503 ends the run with
:class:`~logsync_client.backoff.RetryLater` (``Retry-After``); 401 and ``wrong-subprotocol`` with
:class:`~logsync_client.errors.Refused`. Bodies are parsed with the server's own models
(:mod:`logsync.protocol.pull`).

There is no handshake, so the time fix comes from the response's ``Date`` header (a 1 s
resolution): it is applied only when the clocks differ by more than :data:`DATE_SLACK_MS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
from typing import Any

import aiohttp
import msgpack
import orjson

from logsync.protocol.pull import ErrorBody, SyncResponse
from logsync_client.backoff import RetryLater, parse_retry_after
from logsync_client.errors import Refused
from logsync_client.host import TransportHost
from logsync_client.pending import batches
from logsync_client.store import StoredAction, StoredSubscription

DATE_SLACK_MS = 1500
DEFAULT_RETRY_S = 1.0


class HttpTransport:
    """The ``http://``/``https://`` transport of a :class:`~logsync_client.Client`."""

    def __init__(self, client: TransportHost) -> None:
        self.client = client
        self.endpoint = client.url.rstrip("/") + "/v1/sync"
        self.binary = client.codec == "msgpack"
        self.resets = 0
        self.requests = 0

    async def run(self) -> None:
        client = self.client
        first = True
        more = False
        while True:
            client.queue.changed.clear()
            client.woken().clear()
            # The first request of a run pushes nothing: it measures the time fix first.
            actions = [] if first else self._next_batch()
            subscribe = [s for s in client.store.subscriptions() if not s.confirmed]
            unsubscribe = self._unsubscriptions()
            busy = bool(actions or subscribe or unsubscribe or more or first)
            wait = 0.0 if busy else client.wait
            body = self._body(actions, subscribe, unsubscribe, wait)
            client.queue.mark_sent(actions)
            if wait > 0:
                answer = await self._long_poll(body, wait)
                if answer is None:
                    continue  # an action was added: send it now
            else:
                answer = await self._post(body, wait)
            status, headers, data = answer
            if status == 200:
                if first:
                    self._time_fix(headers)
                    client.handshake_done(client.time_fix)
                was_first, first = first, False
                more = self._page(data, actions, subscribe, unsubscribe)
                if client.wait == 0 and not (more or was_first or self._has_work()):
                    await self._wait_woken()
                continue
            self._error(status, headers, data)

    def _next_batch(self) -> list[StoredAction]:
        client = self.client
        runs = batches(client.queue.to_send(), client.push_batch, client.max_message_bytes)
        return runs[0] if runs else []

    def _has_work(self) -> bool:
        store = self.client.store
        return bool(
            store.pending()
            or any(not s.confirmed for s in store.subscriptions())
            or self._unsubscriptions()
        )

    # -- one request ---------------------------------------------------------------------------

    def _body(
        self,
        actions: list[StoredAction],
        subscribe: list[StoredSubscription],
        unsubscribe: list[dict[str, Any]],
        wait: float,
    ) -> dict[str, Any]:
        client = self.client
        body: dict[str, Any] = {"node": client.node_id, "wait": wait}
        if client.token is not None:
            body["token"] = client.token
        if client.subprotocol is not None:
            body["subprotocol"] = client.subprotocol
        cursor = client.store.get("cursor")
        if cursor is not None:
            body["cursor"] = cursor
        if client.limit is not None:
            body["limit"] = client.limit
        if subscribe:
            body["subscribe"] = [{"channel": s.channel, **s.extra} for s in subscribe]
        if unsubscribe:
            body["unsubscribe"] = unsubscribe
        if actions:
            fix = client.time_fix
            body["actions"] = [
                [a.action, {**a.meta, "time": a.meta["time"] - fix}] for a in actions
            ]
        return body

    async def _post(self, body: dict[str, Any], wait: float) -> tuple[int, Any, Any]:
        client = self.client
        assert client.http is not None
        self.requests += 1
        if self.binary:
            data = msgpack.packb(body, use_bin_type=True)
            kind = "application/msgpack"
        else:
            data = orjson.dumps(body)
            kind = "application/json"
        timeout = aiohttp.ClientTimeout(total=wait + client.request_timeout)
        async with client.http.post(
            self.endpoint, data=data, headers={"Content-Type": kind}, timeout=timeout
        ) as response:
            raw = await response.read()
            if response.content_type == "application/msgpack":
                decoded = msgpack.unpackb(raw, raw=False)
            elif response.content_type == "application/json":
                decoded = orjson.loads(raw)
            else:
                decoded = None
            return response.status, response.headers, decoded

    async def _long_poll(self, body: dict[str, Any], wait: float) -> tuple[int, Any, Any] | None:
        """The request, or None when an action was added (or a wake-up) before it answered."""
        request = asyncio.ensure_future(self._post(body, wait))
        interrupt = asyncio.ensure_future(self._interrupted())
        try:
            await asyncio.wait({request, interrupt}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            request.cancel()
            raise
        finally:
            interrupt.cancel()
        if request.done():
            return request.result()
        # A newer request of this client ends this one on the server; here, just drop it.
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
            await request
        return None

    async def _interrupted(self) -> None:
        changed = asyncio.ensure_future(self.client.queue.changed.wait())
        woken = asyncio.ensure_future(self.client.woken().wait())
        try:
            await asyncio.wait({changed, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
            woken.cancel()

    async def _wait_woken(self) -> None:
        await self._interrupted()

    # -- answers -------------------------------------------------------------------------------

    def _page(
        self,
        data: Any,
        actions: list[StoredAction],
        subscribe: list[StoredSubscription],
        unsubscribe: list[dict[str, Any]],
    ) -> bool:
        client = self.client
        page = SyncResponse.model_validate(data)
        for answer in page.answers:
            if answer.status == "processed":
                client.processed(answer.id, {"id": answer.id})
            else:
                undo = answer.undo or {"type": "logux/undo", "id": answer.id}
                client.undone({"reason": answer.reason or "error", **undo, "id": answer.id})
        for sub, sub_answer in zip(subscribe, page.subscriptions, strict=False):
            if sub_answer.status == "processed":
                client.store.set_confirmed(sub.channel, sub.extra, True)
                client.subscription_answered(sub.channel, sub.extra, None)
            else:
                undo = sub_answer.undo or {"type": "logux/undo"}
                client.subscription_answered(
                    sub.channel, sub.extra, {"reason": sub_answer.reason or "error", **undo}
                )
        if unsubscribe:
            self._unsubscribed(len(unsubscribe))
        fix = client.time_fix
        for action, meta in page.actions:
            client.receive(action, {**meta, "time": meta["time"] + fix})
        client.store.put("cursor", page.cursor)
        return page.more

    def _error(self, status: int, headers: Any, data: Any) -> None:
        client = self.client
        error = None
        with contextlib.suppress(ValueError):
            error = ErrorBody.model_validate(data)
        if status == 409 and error is not None and error.cursor is not None:
            self.resets += 1
            client.store.put("cursor", error.cursor)
            client.reset()
            return
        if status == 503:
            retry = parse_retry_after(headers.get("Retry-After"), DEFAULT_RETRY_S)
            raise RetryLater(retry, "503 try again later")
        if status == 401:
            raise Refused("wrong-credentials")
        if status == 400 and error is not None and error.error == "wrong-subprotocol":
            raise Refused("wrong-subprotocol", {"supported": error.supported, "used": error.used})
        if status in (400, 413, 415):
            raise Refused(error.error if error is not None else f"http-{status}", data)
        raise ConnectionError(f"POST /v1/sync answered {status}")

    # -- time fix ------------------------------------------------------------------------------

    def _time_fix(self, headers: Any) -> None:
        date = headers.get("Date")
        if not date:
            return
        with contextlib.suppress(TypeError, ValueError):
            server_ms = email.utils.parsedate_to_datetime(date).timestamp() * 1000 + 500
            offset = int(self.client.clock() - server_ms)
            self.client.time_fix = offset if abs(offset) > DATE_SLACK_MS else 0

    # -- unsubscriptions -----------------------------------------------------------------------

    def _unsubscriptions(self) -> list[dict[str, Any]]:
        stored = self.client.store.get("unsubscribe")
        result: list[dict[str, Any]] = orjson.loads(stored) if stored else []
        return result

    def _unsubscribed(self, count: int) -> None:
        rest = self._unsubscriptions()[count:]
        if rest:
            self.client.store.put("unsubscribe", orjson.dumps(rest).decode())
        else:
            self.client.store.delete_key("unsubscribe")

    # -- the client's calls --------------------------------------------------------------------

    def push(self, stored: StoredAction) -> None:
        pass  # the queue's `changed` event cuts the long-poll short

    def subscribe(self, sub: StoredSubscription) -> None:
        self.client.wake()

    def unsubscribe(self, channel: str, extra: dict[str, Any]) -> None:
        items = self._unsubscriptions()
        items.append({"channel": channel, **extra})
        self.client.store.put("unsubscribe", orjson.dumps(items).decode())
        self.client.wake()
