"""The pull-only HTTP API (``POST /v1/sync``, docs/http-pull.md), without I/O: the pydantic models
of its request, response and error bodies, the cursor, and the OpenAPI 3.1 document built from the
models.

Validate a decoded body with ``SyncRequest.model_validate``; read a cursor with
:func:`decode_cursor` (a :class:`CursorError` is a 400) and make one with :func:`encode_cursor`;
:func:`openapi_document` is what ``GET /v1/openapi.json`` serves (pass ``extra_paths`` and
``extra_models`` to document more endpoints). The server side is :mod:`logsync.server.pull`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.json_schema import models_json_schema

from logsync.protocol.schema import MAX_SAFE, MAX_TOKEN_LENGTH, is_node_id

# -- the cursor --------------------------------------------------------------------------------


class CursorError(ValueError):
    """A cursor that is not one this server made (answered 400 ``bad-request``)."""


def encode_cursor(epoch: str, added: int) -> str:
    """The opaque cursor of position ``added`` in the log of ``epoch``: base64url (no padding)
    of ``"<epoch>.<added>"``."""
    return base64.urlsafe_b64encode(f"{epoch}.{added}".encode()).rstrip(b"=").decode()


def decode_cursor(text: str) -> tuple[str, int]:
    """``(epoch, added)`` of a cursor made by :func:`encode_cursor`; :class:`CursorError` if it
    was not."""
    if not text or len(text) > 200 or not text.isascii():
        raise CursorError("cursor is not one this server gave")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise CursorError("cursor is not base64url") from None
    epoch, dot, added = raw.rpartition(".")
    if not dot or not epoch or not added.isdigit() or (added != "0" and added[0] == "0"):
        raise CursorError("cursor is not one this server gave")
    position = int(added)
    if position > MAX_SAFE:
        raise CursorError("cursor position is out of range")
    return epoch, position


# -- the request -------------------------------------------------------------------------------


def _node_id(value: str) -> str:
    if not is_node_id(value) or value.count(":") == 0:
        raise ValueError("node must be a Logux node id user:client[:tab]")
    return value


def _action(value: dict[str, Any]) -> dict[str, Any]:
    if type(value.get("type")) is not str:
        raise ValueError("an action is an object with a string `type`")
    return value


def _meta(value: dict[str, Any]) -> dict[str, Any]:
    if type(value.get("id")) is not str:
        raise ValueError("meta.id must be a full action id '<ms> <node id> <seq>'")
    time = value.get("time")
    if type(time) not in (int, float):
        raise ValueError("meta.time must be a number (absolute milliseconds)")
    return value


NodeId = Annotated[
    str,
    AfterValidator(_node_id),
    WithJsonSchema({"type": "string", "description": "Logux node id: user:client[:tab]"}),
]
Action = Annotated[
    dict[str, Any],
    AfterValidator(_action),
    WithJsonSchema(
        {
            "type": "object",
            "properties": {"type": {"type": "string"}},
            "required": ["type"],
            "additionalProperties": True,
        }
    ),
]
Meta = Annotated[
    dict[str, Any],
    AfterValidator(_meta),
    WithJsonSchema(
        {
            "type": "object",
            "properties": {
                "id": {"type": "string", "description": "'<ms> <node id> <seq>', full form"},
                "time": {"type": "integer", "minimum": 0, "description": "absolute ms"},
                "subprotocol": {"type": "integer", "minimum": 0},
            },
            "required": ["id", "time"],
            "additionalProperties": True,
        }
    ),
]
OutMeta = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "time": {"type": "integer"},
                "subprotocol": {"type": "integer"},
                "added": {"type": "integer", "description": "the entry's log position"},
            },
            "required": ["id", "time", "added"],
            "additionalProperties": False,
        }
    ),
]


class Since(BaseModel):
    """A resubscription's resume point: the ``{id, time}`` of the ``logux/processed`` that answered
    the earlier subscription (either may be left out)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    time: int | None = Field(None, ge=0, le=MAX_SAFE, strict=True)


class SubscribeItem(BaseModel):
    """One channel to subscribe to; other fields (``filter``…) go into the ``logux/subscribe``."""

    model_config = ConfigDict(extra="allow")

    channel: str = Field(min_length=1)
    since: Since | None = None
    filter: dict[str, Any] | None = None


class UnsubscribeItem(BaseModel):
    """One channel (and filter) to unsubscribe from."""

    model_config = ConfigDict(extra="allow")

    channel: str = Field(min_length=1)
    filter: dict[str, Any] | None = None


class SyncRequest(BaseModel):
    """The body of ``POST /v1/sync``: who the client is, where it is, what it pushes."""

    model_config = ConfigDict(extra="forbid")

    node: NodeId
    token: str | None = Field(None, max_length=MAX_TOKEN_LENGTH)
    subprotocol: int | None = Field(None, ge=0, le=MAX_SAFE, strict=True)
    cursor: str | None = None
    subscribe: list[SubscribeItem] = Field(default_factory=list)
    unsubscribe: list[UnsubscribeItem] = Field(default_factory=list)
    actions: list[tuple[Action, Meta]] = Field(default_factory=list)
    limit: int | None = Field(None, ge=1, strict=True, description="1..pull_page_max")
    wait: float = Field(0, ge=0, allow_inf_nan=False, description="0..pull_wait_max_s seconds")


# -- the response ------------------------------------------------------------------------------


class Answer(BaseModel):
    """How one pushed action was answered (the socket's ``logux/processed`` or ``logux/undo``)."""

    id: str
    status: Literal["processed", "undo"]
    reason: str | None = None
    undo: dict[str, Any] | None = None


class SubscriptionAnswer(BaseModel):
    """How one subscribe or unsubscribe item was answered."""

    channel: str
    status: Literal["processed", "undo"]
    reason: str | None = None
    undo: dict[str, Any] | None = None


class SyncResponse(BaseModel):
    """``200``: the answers, then the page of actions addressed to the client after its cursor."""

    answers: list[Answer]
    subscriptions: list[SubscriptionAnswer]
    actions: list[tuple[Action, OutMeta]]
    more: bool = Field(description="the page was cut at `limit`: ask again at once")
    cursor: str = Field(description="pass back verbatim next time")


ErrorCode = Literal[
    "bad-request",
    "wrong-subprotocol",
    "wrong-credentials",
    "reset",
    "too-large",
    "unsupported-media-type",
    "try-again-later",
]


class ErrorBody(BaseModel):
    """Every error response: a code, a reason for people, and the code's own fields."""

    error: ErrorCode
    reason: str
    details: list[dict[str, Any]] | None = Field(None, description="bad-request: what is wrong")
    supported: int | None = Field(None, description="wrong-subprotocol")
    used: int | None = Field(None, description="wrong-subprotocol")
    limit: int | None = Field(None, description="too-large: the largest body accepted")
    cursor: str | None = Field(None, description="reset: a fresh cursor at the head")
    resubscribe: list[str] | None = Field(
        None, description="reset: the channels the client had (subscribe again without since)"
    )


def error_body(code: ErrorCode, reason: str, **fields: Any) -> dict[str, Any]:
    """An :class:`ErrorBody` as a plain dict (fields left out when None)."""
    return {"error": code, "reason": reason, **{k: v for k, v in fields.items() if v is not None}}


# -- the OpenAPI document ----------------------------------------------------------------------

REF = "#/components/schemas/{model}"
MODELS: tuple[type[BaseModel], ...] = (SyncRequest, SyncResponse, ErrorBody)
MEDIA_TYPES = ("application/json", "application/msgpack")


def ref(model: type[BaseModel]) -> dict[str, str]:
    """A JSON-schema reference to ``model`` in the document's components."""
    return {"$ref": REF.format(model=model.__name__)}


def content(model: type[BaseModel]) -> dict[str, Any]:
    """An OpenAPI ``content`` object: ``model`` as JSON or msgpack."""
    return {media: {"schema": ref(model)} for media in MEDIA_TYPES}


def error_response(text: str) -> dict[str, Any]:
    return {"description": text, "content": content(ErrorBody)}


RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait (jittered)", "schema": {"type": "integer"}}
}

SYNC_PATHS: dict[str, Any] = {
    "/v1/sync": {
        "post": {
            "operationId": "sync",
            "summary": "Push actions, then pull the page of actions addressed to the client",
            "description": "See docs/http-pull.md. The token may also be given as "
            "`Authorization: Bearer <token>`.",
            "requestBody": {"required": True, "content": content(SyncRequest)},
            "responses": {
                "200": {"description": "answers and the page", "content": content(SyncResponse)},
                "400": error_response("bad-request or wrong-subprotocol"),
                "401": error_response("wrong-credentials (or the address is locked)"),
                "409": error_response("reset: subscribe again and use the fresh cursor"),
                "413": error_response("too-large: body over max_frame_bytes"),
                "415": error_response("unsupported-media-type: neither JSON nor msgpack"),
                "503": {**error_response("try-again-later"), "headers": RETRY_AFTER},
            },
        }
    }
}


def openapi_document(
    extra_paths: Mapping[str, Any] | None = None,
    extra_models: Iterable[type[BaseModel]] = (),
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the pull API: ``/v1/sync`` plus ``extra_paths`` (other
    endpoints, e.g. the wake-ups), whose schemas refer to ``extra_models`` with :func:`ref`."""
    models = list(dict.fromkeys([*MODELS, *extra_models]))
    _, schema = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "logsync pull API",
            "version": "1",
            "description": "Pull-only HTTP clients of a logsync server (docs/http-pull.md).",
        },
        "paths": {**SYNC_PATHS, **(extra_paths or {})},
        "components": {"schemas": schema.get("$defs", {})},
    }
