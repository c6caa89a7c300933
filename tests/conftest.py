"""Fixtures shared by the whole suite: real ``logsync serve`` and ``redis-server`` processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis import start_redis
from tests.support.server import ServerProcess

INTEROP_APP = "tests.interop.app:app"


@pytest.fixture
def logsync_server() -> Iterator[ServerProcess]:
    """A fresh server running the interop test app (memory store), stopped after the test."""
    server = ServerProcess(INTEROP_APP)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def logsync_url(logsync_server: ServerProcess) -> str:
    """``ws://127.0.0.1:PORT/`` of a fresh interop server."""
    return logsync_server.url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://127.0.0.1:PORT/0`` of a ``redis-server`` of this test session (nothing on disk).

    Tests share it: isolate by key prefix (``?prefix=...``). Fails when redis-server is missing."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server.url
    finally:
        server.stop()
