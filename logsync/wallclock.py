"""The wall clock in milliseconds, as Logux times are (one place to read it, and to fake it)."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
