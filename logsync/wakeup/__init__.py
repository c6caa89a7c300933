"""Wake-ups of pull-only clients, the I/O part: what a registration is (:mod:`.registration`),
the VAPID key (:mod:`.vapid`), the two senders — Web Push (:mod:`.webpush`, RFC 8030/8291/8292)
and webhooks (:mod:`.webhook`) — each answering an :class:`Outcome`, and the bounded queue they
run in (:mod:`.dispatch`).

Which client to wake, and when, is the engine's (:mod:`logsync.engine.wakeups`); nothing here
reads the log or knows a peer.
"""

from logsync.wakeup.dispatch import Dispatcher
from logsync.wakeup.outcome import Outcome, retry_after_seconds
from logsync.wakeup.registration import (
    Registration,
    WebhookTarget,
    WebPushKeys,
    WebPushSubscription,
    registration_id,
)
from logsync.wakeup.vapid import VapidKey, generate_vapid_keys
from logsync.wakeup.webhook import WebhookSender
from logsync.wakeup.webpush import WAKE_PAYLOAD, WebPushSender

__all__ = [
    "WAKE_PAYLOAD",
    "Dispatcher",
    "Outcome",
    "Registration",
    "VapidKey",
    "WebPushKeys",
    "WebPushSender",
    "WebPushSubscription",
    "WebhookSender",
    "WebhookTarget",
    "generate_vapid_keys",
    "registration_id",
    "retry_after_seconds",
]
