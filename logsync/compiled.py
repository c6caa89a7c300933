"""Which hot modules run compiled (mypyc) and which run as Python.

A wheel build (``pip install .``, the Docker image) compiles :data:`HOT_MODULES` with mypyc when a
C compiler is there (``setup.py``, ``scripts/build_backend.py``); an editable install
(``pip install -e``, ``scripts/serve``, ``scripts/test``) never does, so an edited ``.py`` is what
runs. Call :func:`compiled_modules` to see what this process imports; ``/metrics`` shows it as
``logsync_compiled{module=…}`` and ``logsync serve`` logs it at start-up.

Only the standard library is imported here: ``setup.py`` reads :data:`HOT_MODULES` from this file
before any dependency is installed.
"""

from __future__ import annotations

import importlib
from importlib.machinery import EXTENSION_SUFFIXES

# What the wheel build compiles: the per-delivery and per-`synced` path (issue 13; BENCHMARKS.md,
# "mypyc"). Each is mypy --strict clean and not monkeypatched by the tests.
HOT_MODULES = (
    "logsync.log.entry",
    "logsync.protocol.codec",
    "logsync.protocol.session",
    "logsync.websocket.frames",
    "logsync.websocket.protocol",
    "logsync.engine.delivery",
    "logsync.server.connection",
)


def compiled_modules() -> dict[str, bool]:
    """Each of :data:`HOT_MODULES` (imported now if it was not) → whether it was loaded from a
    compiled extension rather than its ``.py``."""
    found = {}
    for name in HOT_MODULES:
        path = getattr(importlib.import_module(name), "__file__", None) or ""
        found[name] = path.endswith(tuple(EXTENSION_SUFFIXES))
    return found
