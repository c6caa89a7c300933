"""``logsync vapid-keys``: a key pair the server loads, the private key in a new 0600 file
(never overwritten) or on stdout; ``logsync serve`` refuses a key it cannot read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from logsync.wakeup import VapidKey

ROOT = Path(__file__).resolve().parents[2]


def logsync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logsync.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_vapid_keys_writes_a_new_private_key_file(tmp_path: Path) -> None:
    path = tmp_path / "vapid.pem"
    done = logsync("vapid-keys", "--out", str(path))
    assert done.returncode == 0, done.stderr
    public_key = done.stdout.splitlines()[-1].removeprefix("applicationServerKey ")
    assert "PRIVATE KEY" not in done.stdout
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert VapidKey.load(str(path), "mailto:a@example.com").public_key == public_key
    again = logsync("vapid-keys", "--out", str(path))
    assert again.returncode != 0 and "not overwriting" in again.stderr
    assert VapidKey.load(str(path), "mailto:a@example.com").public_key == public_key


def test_vapid_keys_to_stdout_and_serve_refuses_a_missing_key(tmp_path: Path) -> None:
    done = logsync("vapid-keys")
    assert done.returncode == 0, done.stderr
    pem, _, last = done.stdout.rpartition("-----END PRIVATE KEY-----\n")
    key = VapidKey.load(pem + "-----END PRIVATE KEY-----\n", "mailto:a@example.com")
    assert last.strip() == f"applicationServerKey {key.public_key}"
    refused = logsync("serve", "--vapid-private-key", str(tmp_path / "missing.pem"))
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith("logsync: vapid_private_key: cannot read")
    assert not (tmp_path / "missing.pem").exists()
