"""Webhook wake-ups (for APNs/FCM gateways and the like): :class:`WebhookSender` POSTs
``{"node": …, "client": …}`` as JSON to the registered URL, over the node's long-lived
``aiohttp.ClientSession``, with a timeout."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from logsync.wakeup.outcome import Outcome


class WebhookSender:
    """``await sender.send(url, node_id, client_id)`` → :class:`Outcome`; never raises."""

    def __init__(self, session: aiohttp.ClientSession, timeout_s: float) -> None:
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.timeout_s = timeout_s

    async def send(self, url: str, node_id: str, client_id: str) -> Outcome:
        body = orjson.dumps({"node": node_id, "client": client_id})
        headers = {"Content-Type": "application/json"}
        try:
            async with (
                asyncio.timeout(self.timeout_s),
                self.session.post(url, data=body, headers=headers, timeout=self.timeout) as answer,
            ):
                await answer.read()
                return Outcome.from_status(
                    answer.status, answer.headers.get("Retry-After"), answer.reason or ""
                )
        except TimeoutError:
            return Outcome("failed", detail=f"no answer in {self.timeout_s:g} s")
        except (aiohttp.ClientError, OSError, ValueError) as error:
            return Outcome("failed", detail=f"{type(error).__name__}: {error}")
