"""Log lines: how a value a client sent is written into one (:func:`shorten`), and the process's
logging setup (:func:`configure_logging`: text or JSON lines, HTTP client errors on one line).

Nothing a client sent is ever logged whole: it may be megabytes long or nested a thousand deep.
"""

from __future__ import annotations

import logging
import reprlib

from logsync.settings import Settings

_REPR = reprlib.Repr()
_REPR.maxlevel = 4
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = 16
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 200


def shorten(value: object, limit: int) -> str:
    """``value`` for a log line: a string as it is, anything else as a bounded ``repr`` (never
    recursing into deep nesting), cut to ``limit`` characters."""
    text = value if isinstance(value, str) else _REPR.repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


class _HttpClientErrors(logging.Filter):
    """aiohttp logs a malformed request (a 70 kB header line, a bad method) with its traceback
    at ERROR: it is the client's fault, so it becomes one INFO line without one."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg, record.args = "bad HTTP request: %s", (shorten(str(error), self.limit),)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def configure_logging(settings: Settings) -> None:
    """Log lines to stderr: text, or with ``log_format = "json"`` one JSON object per line
    (``time``, ``level``, ``logger``, ``message``, and ``client``/``reason`` where the server
    knows them)."""
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)
    logging.getLogger("aiohttp.server").addFilter(_HttpClientErrors(settings.log_value_chars))
