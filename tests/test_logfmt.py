"""Log lines never carry a client's value whole, however long or deep it is."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import LineTooLong

from logsync.logfmt import configure_logging, shorten
from logsync.settings import Settings


def test_a_long_string_is_cut_and_says_how_long_it_was() -> None:
    assert shorten("abc", 10) == "abc"
    assert shorten("x" * 5000, 10) == "x" * 10 + "… (5000 chars)"


def test_deep_nesting_is_shown_bounded_without_recursing() -> None:
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    text = shorten(deep, 200)
    assert text.startswith("[[[[") and len(text) <= 200
    assert shorten({"k": "v" * 1000}, 300).count("v") < 300


def test_an_http_client_error_is_one_info_line() -> None:
    configure_logging(Settings(log_value_chars=50))
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("aiohttp.server")
    keep = Keep()
    logger.addHandler(keep)
    try:
        error = LineTooLong("a" * 70_000, "8190")
        logger.error("Error handling request from %s", "1.2.3.4", exc_info=error)
    finally:
        logger.removeHandler(keep)
    [record] = records
    assert record.levelno == logging.INFO and record.exc_info is None
    assert len(record.getMessage()) < 120
