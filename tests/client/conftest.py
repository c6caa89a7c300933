"""Fixtures of the client tests: real ``logsync serve`` processes running tests/client/app.py on
SQLite and on Redis, each writing the actions it processed to a file the tests read."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.server import ServerProcess

APP = "tests.client.app:app"


@dataclass
class Served:
    """A running server and the file its `process` calls are appended to."""

    process: ServerProcess
    log: Path

    def processed(self) -> list[tuple[str, int, int]]:
        """``(id, meta time, server time)`` of every processed action, in order."""
        if not self.log.exists():
            return []
        rows = []
        for line in self.log.read_text().splitlines():
            action_id, time, now = line.split("|")
            rows.append((action_id, int(time), int(now)))
        return rows

    def url(self, transport: str) -> str:
        return self.process.url if transport == "ws" else self.process.http_url


def serve(log: Path, *args: str, store: str | None = None, port: int = 0) -> ServerProcess:
    return ServerProcess(APP, *args, store=store, port=port, env={"CLIENT_TEST_LOG": str(log)})


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One server per module and store kind (the tests isolate themselves by user and room)."""
    directory = tmp_path_factory.mktemp("client-server")
    log = directory / "processed.log"
    store = None
    if request.param == "redis":
        redis_url: str = request.getfixturevalue("redis_url")
        store = f"{redis_url}?prefix=client-{uuid.uuid4().hex[:8]}"
    process = serve(log, store=store)
    try:
        yield Served(process, log)
    finally:
        process.stop()
