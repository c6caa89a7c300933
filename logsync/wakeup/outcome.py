"""How one wake-up request ended: :class:`Outcome`, made from the push endpoint's status by
:meth:`Outcome.from_status` (``Retry-After`` read by :func:`retry_after_seconds`)."""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Literal

Result = Literal["sent", "gone", "backoff", "failed"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """``sent`` (2xx); ``gone`` (404/410: remove the registration); ``backoff`` (429/503: send
    nothing to this endpoint for ``retry_after_s``, None when it did not say); ``failed``
    (anything else, a timeout or a connection error: ``detail`` says what, for one log line)."""

    result: Result
    status: int | None = None
    retry_after_s: float | None = None
    detail: str = ""

    @classmethod
    def from_status(cls, status: int, retry_after: str | None, detail: str = "") -> Outcome:
        if 200 <= status < 300:
            return cls("sent", status)
        if status in (404, 410):
            return cls("gone", status)
        if status in (429, 503):
            return cls("backoff", status, retry_after_seconds(retry_after))
        return cls("failed", status, detail=detail or f"HTTP {status}")


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header (RFC 9110: delay seconds or an HTTP date) as seconds from now,
    None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
