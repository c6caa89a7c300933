"""The README's "HTTP pull" curl example, run as written (only the port changed) against a live
``logsync serve`` of the demo app that ``scripts/serve`` starts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from tests.support.server import ServerProcess

pytestmark = pytest.mark.timeout(60)

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- pull-example"


def readme_command() -> str:
    """The ``sh`` block right after the pull-example marker."""
    text = README.read_text()
    found = re.search(re.escape(MARKER) + r".*?-->\n```sh\n(.*?)```", text, re.DOTALL)
    assert found is not None, "README has no pull example"
    return found.group(1)


def test_the_readme_curl_example_works_as_written() -> None:
    curl = shutil.which("curl")
    assert curl is not None, "curl is needed for this test"
    command = readme_command()
    assert "http://127.0.0.1:31337/v1/sync" in command
    server = ServerProcess(None)  # the demo app, as scripts/serve runs it
    try:
        port = server.url.rsplit(":", 1)[1].strip("/")
        run = command.replace("127.0.0.1:31337", f"127.0.0.1:{port}")
        answers = []
        for _ in range(2):  # and again: the retry changes nothing
            done = subprocess.run(["bash", "-c", run], capture_output=True, timeout=30, check=True)
            answers.append(orjson.loads(done.stdout))
    finally:
        server.stop()
    first, again = answers
    assert first["answers"] == [{"id": "1764566400000 alice:phone 0", "status": "processed"}]
    assert first["subscriptions"] == [{"channel": "chat/lobby", "status": "processed"}]
    assert [a["type"] for a, _ in first["actions"]] == ["logux/processed"]
    assert again["answers"] == first["answers"]
    assert again["subscriptions"] == first["subscriptions"]
