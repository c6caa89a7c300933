"""The wake-up registration endpoints (docs/http-pull.md "Wake-ups"), registered on the node's
aiohttp application by :func:`add_wakeup_routes`:

- ``GET /v1/vapid`` → ``{"publicKey"}`` (404 while Web Push is off);
- ``POST /v1/wakeups`` ``{"node", "token"?, "webpush" | "webhook"}`` → ``201 {"id"}``;
- ``GET /v1/wakeups?node=…`` → ``{"wakeups": [{"id", "kind", "endpoint"}]}``;
- ``DELETE /v1/wakeups/{id}?node=…`` → ``204``.

The token is the body's ``token`` or ``Authorization: Bearer``; the engine checks it
(:meth:`~logsync.engine.handshake.Handshake.check_credentials`: reserved ids, the brute-force
lock, the app's ``auth``) — 401 when refused. Bodies are JSON, at most ``preauth_frame_bytes``
(they are read before the client is known). What is stored and when it wakes whom is
:class:`~logsync.engine.wakeups.Wakeups`'.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from logsync.engine import ServerNode
from logsync.engine.wakeup_registrations import RegistrationRefused
from logsync.protocol.ids import parse_node_id
from logsync.protocol.schema import MAX_TOKEN_LENGTH, is_node_id
from logsync.server.pull import OPENAPI_PARTS
from logsync.server.ws import client_address
from logsync.wakeup import WebhookTarget, WebPushSubscription

NO_STORE = {"Cache-Control": "no-store"}


class WakeupRequest(BaseModel):
    """``POST /v1/wakeups``: who (node id and token) and one of a Web Push subscription or a
    webhook."""

    model_config = ConfigDict(extra="forbid")

    node: str = Field(description="Logux node id user:client[:tab]")
    token: str | None = Field(
        None, max_length=MAX_TOKEN_LENGTH, description="or `Authorization: Bearer <token>`"
    )
    webpush: WebPushSubscription | None = Field(
        None, description="the browser's PushSubscription.toJSON()"
    )
    webhook: WebhookTarget | None = Field(None, description="POSTed {node, client} to wake")

    @field_validator("node")
    @classmethod
    def _node(cls, value: str) -> str:
        if not is_node_id(value):
            raise ValueError("node must be a Logux node id user:client[:tab]")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> WakeupRequest:
        if (self.webpush is None) == (self.webhook is None):
            raise ValueError("give exactly one of webpush and webhook")
        return self


class WakeupCreated(BaseModel):
    """``201``: the registration's id (the same for the same endpoint)."""

    id: str


class WakeupItem(BaseModel):
    """One registration as listed."""

    id: str
    kind: str = Field(description="webpush or webhook")
    endpoint: str


class WakeupList(BaseModel):
    """``GET /v1/wakeups``: the client's registrations."""

    wakeups: list[WakeupItem]


class VapidPublicKey(BaseModel):
    """``GET /v1/vapid``: the ``applicationServerKey`` for ``pushManager.subscribe``."""

    publicKey: str


class WakeupError(BaseModel):
    """An error: a code (bad-request, limit, wrong-credentials, not-found, too-large), a
    reason for people."""

    error: str
    reason: str
    details: list[dict[str, Any]] | None = None
    limit: int | None = None


class _Refused(Exception):
    def __init__(self, status: int, code: str, reason: str, **fields: Any) -> None:
        super().__init__(reason)
        self.response = _json(
            status,
            {"error": code, "reason": reason, **{k: v for k, v in fields.items() if v is not None}},
        )


def _json(status: int, body: Any) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=NO_STORE
    )


class WakeupEndpoints:
    """The handlers over one node; see the module docstring."""

    def __init__(self, node: ServerNode) -> None:
        self.node = node
        self.wakeups = node.wakeups

    async def vapid(self, request: web.Request) -> web.Response:
        key = self.wakeups.public_key
        if key is None:
            return _json(404, {"error": "not-found", "reason": "Web Push is off on this server"})
        return _json(200, {"publicKey": key})

    async def create(self, request: web.Request) -> web.Response:
        try:
            body = WakeupRequest.model_validate_json(await self._body(request))
        except _Refused as refused:
            return refused.response
        except ValidationError as error:
            details = orjson.loads(error.json(include_url=False, include_input=False))
            reason = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in details
            )
            return _json(400, {"error": "bad-request", "reason": reason, "details": details})
        try:
            await self._authenticate(request, body.node, body.token)
            registration = await self.wakeups.book.register(
                body.node,
                webpush=body.webpush,
                webhook=None if body.webhook is None else body.webhook.url,
            )
        except _Refused as refused:
            return refused.response
        except RegistrationRefused as refused:
            limit = self.node.settings.wakeups_per_client if refused.code == "limit" else None
            return _json(400, {"error": refused.code, "reason": refused.reason, "limit": limit})
        return _json(201, {"id": registration.id})

    async def list(self, request: web.Request) -> web.Response:
        try:
            node_id = await self._query_client(request)
        except _Refused as refused:
            return refused.response
        client = self._client(node_id)
        found = await self.wakeups.book.registrations(client)
        return _json(200, {"wakeups": [r.public() for r in found]})

    async def delete(self, request: web.Request) -> web.Response:
        try:
            node_id = await self._query_client(request)
        except _Refused as refused:
            return refused.response
        if not await self.wakeups.book.unregister(self._client(node_id), request.match_info["id"]):
            return _json(404, {"error": "not-found", "reason": "no such registration"})
        return web.Response(status=204, headers=NO_STORE)

    # -- the parts ---------------------------------------------------------------------------

    @staticmethod
    def _client(node_id: str) -> str:
        return parse_node_id(node_id).client_id

    async def _body(self, request: web.Request) -> bytes:
        limit = self.node.settings.preauth_frame_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _Refused(413, "too-large", f"a body may be at most {limit} bytes", limit=limit)
        body = bytearray()
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > limit:
                raise _Refused(
                    413, "too-large", f"a body may be at most {limit} bytes", limit=limit
                )
        return bytes(body)

    async def _query_client(self, request: web.Request) -> str:
        node_id = request.query.get("node", "")
        if not is_node_id(node_id):
            raise _Refused(400, "bad-request", "?node= must be a Logux node id user:client[:tab]")
        await self._authenticate(request, node_id, None)
        return node_id

    async def _authenticate(self, request: web.Request, node_id: str, token: str | None) -> None:
        if token is None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            token = given.strip() if scheme.lower() == "bearer" else None
        settings = self.node.settings
        peername = request.transport.get_extra_info("peername") if request.transport else None
        remote = client_address(
            peername[0] if peername else None, request.headers.get("X-Forwarded-For", ""), settings
        )
        cookie = SimpleCookie(request.headers.get("Cookie", ""))
        allowed = await self.node.handshake.check_credentials(
            node_id,
            token,
            remote=remote,
            headers={},
            cookie={k: v.value for k, v in cookie.items()},
        )
        if not allowed:
            raise _Refused(401, "wrong-credentials", "wrong credentials (or the address is locked)")


def _openapi_paths() -> dict[str, Any]:
    def answer(model: type[BaseModel], text: str) -> dict[str, Any]:
        schema = {"$ref": f"#/components/schemas/{model.__name__}"}
        return {"description": text, "content": {"application/json": {"schema": schema}}}

    node = {"name": "node", "in": "query", "required": True, "schema": {"type": "string"}}
    refused = answer(WakeupError, "wrong-credentials (or the address is locked)")
    bad_node = answer(WakeupError, "bad-request: ?node= is not a Logux node id")
    return {
        "/v1/vapid": {
            "get": {
                "operationId": "vapidKey",
                "summary": "The VAPID applicationServerKey for pushManager.subscribe",
                "responses": {
                    "200": answer(VapidPublicKey, "the key"),
                    "404": answer(WakeupError, "Web Push is off"),
                },
            }
        },
        "/v1/wakeups": {
            "post": {
                "operationId": "registerWakeup",
                "summary": "Register a Web Push subscription or a webhook to be woken by",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/WakeupRequest"}
                        }
                    },
                },
                "responses": {
                    "201": answer(WakeupCreated, "registered (the same id for the same endpoint)"),
                    "400": answer(WakeupError, "bad-request, or limit (wakeups_per_client)"),
                    "401": refused,
                    "413": answer(WakeupError, "too-large"),
                },
            },
            "get": {
                "operationId": "listWakeups",
                "summary": "The client's registrations (token as Authorization: Bearer)",
                "parameters": [node],
                "responses": {
                    "200": answer(WakeupList, "the registrations"),
                    "400": bad_node,
                    "401": refused,
                },
            },
        },
        "/v1/wakeups/{id}": {
            "delete": {
                "operationId": "deleteWakeup",
                "summary": "Remove a registration (token as Authorization: Bearer)",
                "parameters": [
                    node,
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {
                    "204": {"description": "removed"},
                    "400": bad_node,
                    "401": refused,
                    "404": answer(WakeupError, "no such registration"),
                },
            }
        },
    }


def add_wakeup_routes(web_app: web.Application, node: ServerNode) -> None:
    """Register the wake-up endpoints for ``node`` (and document them in ``/v1/openapi.json``;
    call after :func:`~logsync.server.pull.add_pull_routes`)."""
    endpoints = WakeupEndpoints(node)
    web_app.router.add_get("/v1/vapid", endpoints.vapid)
    web_app.router.add_post("/v1/wakeups", endpoints.create)
    web_app.router.add_get("/v1/wakeups", endpoints.list)
    web_app.router.add_delete("/v1/wakeups/{id}", endpoints.delete)
    models: list[type[BaseModel]] = [
        WakeupRequest,
        WakeupCreated,
        WakeupList,
        VapidPublicKey,
        WakeupError,
    ]
    parts = web_app.get(OPENAPI_PARTS)
    if parts is None:
        parts = web_app[OPENAPI_PARTS] = []
    parts.append((_openapi_paths(), models))
