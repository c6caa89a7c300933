"""A self-signed certificate for 127.0.0.1 (subjectAltName ``IP:127.0.0.1``, so clients that
check the name accept it once they trust the certificate), made with the ``openssl`` CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def self_signed(folder: Path) -> tuple[Path, Path]:
    """``(cert.pem, key.pem)`` written into ``folder``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is required for the TLS tests but is not on PATH")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key
