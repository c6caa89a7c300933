"""How a push endpoint's answer is read: 2xx sent, 404/410 gone, 429/503 backoff with
``Retry-After`` (seconds or an HTTP date), anything else failed."""

from __future__ import annotations

import email.utils

from logsync.wakeup import Outcome, retry_after_seconds


def test_statuses() -> None:
    assert Outcome.from_status(201, None).result == "sent"
    assert Outcome.from_status(204, None).result == "sent"
    assert Outcome.from_status(404, None).result == "gone"
    assert Outcome.from_status(410, None).result == "gone"
    busy = Outcome.from_status(429, "7")
    assert (busy.result, busy.retry_after_s) == ("backoff", 7.0)
    assert Outcome.from_status(503, None) == Outcome("backoff", 503, None)
    failed = Outcome.from_status(401, None, "Unauthorized")
    assert (failed.result, failed.detail) == ("failed", "Unauthorized")
    assert Outcome.from_status(500, None).detail == "HTTP 500"


def test_retry_after_as_seconds_or_a_date() -> None:
    now = 1_764_566_400.0
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds(email.utils.formatdate(now + 90, usegmt=True), now) == 90.0
    assert retry_after_seconds(email.utils.formatdate(now - 90, usegmt=True), now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None
