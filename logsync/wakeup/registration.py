"""What a client registers to be woken by: a Web Push subscription (the browser's
``PushSubscription.toJSON()``) or a webhook URL — validated at the door —, and the
:class:`Registration` the engine stores for it (as a record of kind ``"wakeup"``).

A registration's id is derived from its kind and endpoint (:func:`registration_id`), so
registering the same endpoint again gives the same id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, field_validator

# The longest endpoint or webhook URL accepted (push services' endpoints are a few hundred).
MAX_URL_LENGTH = 2048
Kind = Literal["webpush", "webhook"]


def b64url_decode(text: str) -> bytes:
    """Base64url with or without its ``=`` padding (browsers send it without)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data: bytes) -> str:
    """Base64url without padding, as Web Push writes keys."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def check_url(url: str) -> str:
    """An absolute ``http://`` or ``https://`` URL with a host, or ValueError."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"a URL may be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 — raises for a port out of range
    except ValueError as error:
        raise ValueError(f"not a URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    return url


class WebPushKeys(BaseModel):
    """The subscription's keys: the browser's P-256 public key and its 16-byte auth secret."""

    model_config = ConfigDict(extra="forbid")

    p256dh: str = Field(max_length=200)
    auth: str = Field(max_length=100)

    @field_validator("p256dh")
    @classmethod
    def _point(cls, value: str) -> str:
        try:
            raw = b64url_decode(value)
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        except (binascii.Error, ValueError):
            raise ValueError("p256dh must be a base64url P-256 public key") from None
        if len(raw) != 65:
            raise ValueError("p256dh must be an uncompressed P-256 point (65 bytes)")
        return value

    @field_validator("auth")
    @classmethod
    def _secret(cls, value: str) -> str:
        try:
            raw = b64url_decode(value)
        except (binascii.Error, ValueError):
            raise ValueError("auth must be base64url") from None
        if len(raw) != 16:
            raise ValueError("auth must be 16 bytes")
        return value


class WebPushSubscription(BaseModel):
    """``PushSubscription.toJSON()``: ``{"endpoint", "expirationTime", "keys"}``."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str
    expirationTime: int | None = None  # the browser's name
    keys: WebPushKeys

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return check_url(value)


class WebhookTarget(BaseModel):
    """A webhook: the URL the server POSTs ``{"node", "client"}`` to."""

    model_config = ConfigDict(extra="forbid")

    url: str

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)


def registration_id(kind: Kind, endpoint: str) -> str:
    """The id of a registration: the same for the same kind and endpoint."""
    digest = hashlib.sha256(f"{kind}\0{endpoint}".encode()).digest()
    return b64url(digest[:16])


class Registration(BaseModel):
    """A stored registration of one client: ``node`` registered it (the node id a webhook is
    told), ``created`` is when (ms)."""

    id: str
    kind: Kind
    endpoint: str
    keys: WebPushKeys | None = None
    node: str
    created: int

    def subscription_info(self) -> dict[str, Any]:
        """The subscription as pywebpush takes it."""
        assert self.keys is not None
        return {"endpoint": self.endpoint, "keys": self.keys.model_dump()}

    def public(self) -> dict[str, Any]:
        """What ``GET /v1/wakeups`` lists of it."""
        return {"id": self.id, "kind": self.kind, "endpoint": self.endpoint}

    def dump(self) -> bytes:
        return orjson.dumps(self.model_dump(exclude_none=True))

    @classmethod
    def load(cls, value: bytes) -> Registration:
        return cls.model_validate(orjson.loads(value))
