"""A server shared by the tests of one module (each test uses its own user and client ids)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import INTEROP_APP
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def shared_server() -> Iterator[ServerProcess]:
    server = ServerProcess(INTEROP_APP, "--max-frame-bytes", "4096")
    try:
        yield server
    finally:
        server.stop()
