"""Helpers of the deploy tests."""

from __future__ import annotations

import shutil

import pytest

HAPROXY_MISSING = (
    "haproxy is not installed. The deploy tests run the shipped haproxy.cfg: run scripts/test, "
    "which installs it, or `apt-get install -y haproxy`."
)


def require_haproxy() -> str:
    """The ``haproxy`` executable; fails the test (never skips) when it is missing."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.fail(HAPROXY_MISSING, pytrace=False)
    return found
