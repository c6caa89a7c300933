"""Web Push wake-ups: :class:`WebPushSender` sends one content-free tickle to a browser's push
subscription — RFC 8030 delivery (``TTL``, ``Topic``, ``Urgency``), the payload
:data:`WAKE_PAYLOAD` encrypted ``aes128gcm`` (RFC 8291), VAPID authorization (RFC 8292) — with
pywebpush's async API over the node's long-lived ``aiohttp.ClientSession``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from pywebpush import WebPusher

from logsync.wakeup.outcome import Outcome
from logsync.wakeup.vapid import VapidKey

# Says only "pull now": never action data (a push service sees when, not what).
WAKE_PAYLOAD = b'{"type":"logsync/wake"}'
# RFC 8030 §5.4: a newer message with the same Topic replaces one the push service still holds,
# so an offline device accumulates one pending wake-up.
TOPIC = "logsync"


class WebPushSender:
    """``await sender.send(subscription_info)`` → :class:`Outcome`; never raises."""

    def __init__(
        self, session: aiohttp.ClientSession, vapid: VapidKey, ttl_s: int, timeout_s: float
    ) -> None:
        self.session = session
        self.vapid = vapid
        self.ttl_s = ttl_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.timeout_s = timeout_s

    async def send(self, subscription: dict[str, Any]) -> Outcome:
        headers = {
            "Authorization": self.vapid.authorization(subscription["endpoint"]),
            "Topic": TOPIC,
            "Urgency": "normal",
        }
        pusher = WebPusher(subscription, aiohttp_session=self.session)
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await pusher.send_async(
                    WAKE_PAYLOAD,
                    headers,
                    ttl=self.ttl_s,
                    content_encoding="aes128gcm",
                    timeout=self.timeout,
                )
        except TimeoutError:
            return Outcome("failed", detail=f"no answer in {self.timeout_s:g} s")
        except (aiohttp.ClientError, OSError, ValueError) as error:
            return Outcome("failed", detail=f"{type(error).__name__}: {error}")
        assert isinstance(response, aiohttp.ClientResponse)
        return Outcome.from_status(
            response.status, response.headers.get("Retry-After"), response.reason or ""
        )
