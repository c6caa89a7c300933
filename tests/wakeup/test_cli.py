"""``logsync vapid-keys``: a key pair the server loads, the private key in a new 0600 file
(never overwritten) or on stdout; ``logsync serve`` refuses a key it cannot read (before it
starts anything)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logsync.cli import main
from logsync.wakeup import VapidKey


def test_vapid_keys_writes_a_new_private_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "vapid.pem"
    main(["vapid-keys", "--out", str(path)])
    out = capsys.readouterr().out
    public_key = out.splitlines()[-1].removeprefix("applicationServerKey ")
    assert "PRIVATE KEY" not in out
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert VapidKey.load(str(path), "mailto:a@example.com").public_key == public_key
    with pytest.raises(SystemExit, match="not overwriting"):
        main(["vapid-keys", "--out", str(path)])
    assert VapidKey.load(str(path), "mailto:a@example.com").public_key == public_key


def test_vapid_keys_to_stdout_and_serve_refuses_a_missing_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["vapid-keys"])
    pem, _, last = capsys.readouterr().out.rpartition("-----END PRIVATE KEY-----\n")
    key = VapidKey.load(pem + "-----END PRIVATE KEY-----\n", "mailto:a@example.com")
    assert last.strip() == f"applicationServerKey {key.public_key}"
    missing = tmp_path / "missing.pem"
    with pytest.raises(SystemExit, match=r"^logsync: vapid_private_key: cannot read .*missing"):
        main(["serve", "--vapid-private-key", str(missing)])
    assert not missing.exists()
