"""Interop over TLS: the real @logux/client against ``logsync serve --tls-cert … --tls-key …`` on
``wss://127.0.0.1:PORT/``, with a self-signed certificate (subjectAltName ``IP:127.0.0.1``) that
Node trusts through ``NODE_EXTRA_CA_CERTS``; without it, the certificate check must fail."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.interop.conftest import run_script
from tests.support.server import ServerProcess
from tests.support.tls import self_signed

INTEROP_APP = "tests.interop.app:app"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[ServerProcess]:
    cert, key = certificate
    server = ServerProcess(INTEROP_APP, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        yield server
    finally:
        server.stop()


def run_node(node_bin: str, url: str, *args: str, ca: Path | None) -> dict[str, Any]:
    """``tls-client.mjs URL ARGS``, trusting ``ca`` (through ``NODE_EXTRA_CA_CERTS``) or nothing."""
    env = {k: v for k, v in os.environ.items() if k != "NODE_EXTRA_CA_CERTS"}
    if ca is not None:
        env["NODE_EXTRA_CA_CERTS"] = str(ca)
    result: dict[str, Any] = run_script(node_bin, "tls-client", url, *args, env=env)
    return result


def test_logux_client_over_wss(
    node_bin: str, js_deps: Path, tls_server: ServerProcess, certificate: tuple[Path, Path]
) -> None:
    assert tls_server.url.startswith("wss://127.0.0.1:")
    r = run_node(node_bin, tls_server.url, ca=certificate[0])
    assert r["scenario"] == "tls"
    assert r["url"] == tls_server.url
    assert r["errors"] == []
    assert r["connected"] == [True, True]
    assert r["states"] == ["synchronized", "synchronized"]
    assert r["subscribed"] == [True, True]
    assert r["processed"] is True  # client.sync() resolved on logux/processed
    assert r["bobTexts"] == ["over tls"]  # the second client received the channel action
    assert "Traceback" not in "".join(tls_server.output)


def test_untrusted_certificate_is_refused_by_node(
    node_bin: str, js_deps: Path, tls_server: ServerProcess
) -> None:
    r = run_node(node_bin, tls_server.url, "untrusted", ca=None)
    assert r["scenario"] == "untrusted"
    assert r["code"] in ("DEPTH_ZERO_SELF_SIGNED_CERT", "SELF_SIGNED_CERT_IN_CHAIN"), r
