"""The ``store`` fixture: one fresh, empty store per test, for every backend the suite knows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from logsync.log import LogStore, open_store

BACKENDS = ["memory", "sqlite", "redis"]


def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    redis_url: str = request.getfixturevalue("redis_url")  # a real redis-server (tests/conftest.py)
    return f"{redis_url}?prefix=test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A URL of an empty store of this backend (reopening it gives the same log)."""
    return store_url(backend, tmp_path, request)


@pytest.fixture
async def store(url: str) -> AsyncIterator[LogStore]:
    opened = open_store(url)
    try:
        yield opened
    finally:
        await opened.close()
