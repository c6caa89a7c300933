"""An inbound flood: one authenticated client sends ``sync`` frames of many actions as fast as the
server reads them, and the server's RSS is sampled while it does. Bounded memory means a
plateau: the RSS must stop growing however long the flood lasts (issue 9, "inbound is
unbounded"; the uvloop held-messages leak grew it by ~5 KB per action).

    python -m loadtest.flood --seconds 20                 # a reading flooder (the server never stalls)
    python -m loadtest.flood --seconds 20 --no-read       # a flooder that reads nothing
    python -m loadtest.flood --checkout /tmp/other-commit # the server of another checkout

127.0.0.1 only; bounded by ``--seconds``; the server it starts is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.servers import ROOT, rss_kib
from tests.support.rawsocket import RawSocket


def start_server(checkout: Path, store: str, flags: list[str]) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "logsync.cli", "serve", "tests.interop.app:app"]
    command += ["--port", "0", "--store", store, "--log-level", "warning", *flags]
    process = subprocess.Popen(
        command, cwd=checkout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 20
    for line in process.stdout:
        if line.startswith("logsync listening on "):
            return process, line.split()[3]
        if time.monotonic() > deadline:
            break
    process.kill()
    raise SystemExit("the server did not start")


async def appended(http_url: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(http_url + "metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith("logsync_actions_appended_total "):
                return float(line.split()[1])
    return 0.0


async def flood(url: str, pid: int, seconds: float, batch: int, read: bool) -> dict[str, Any]:
    http_url = "http" + url.removeprefix("ws")
    socket = await RawSocket.open(url)
    socket.send(["connect", 5, "flood:f:1", 0, {"token": "secret", "subprotocol": 3}])
    await socket.recv_message()

    async def drain() -> None:
        while await socket.reader.read(1 << 20):
            pass

    reader = asyncio.create_task(drain()) if read else None
    samples: list[dict[str, float]] = []
    began = last = time.monotonic()
    seq = added = 0
    while (now := time.monotonic()) - began < seconds:
        added += 1
        message: list[Any] = ["sync", added]
        for _ in range(batch):
            action = {"type": "notify", "user": "flood", "text": "x" * 40}
            message += [action, {"id": [0, seq], "time": 0}]
            seq += 1
        socket.send(message)
        # a server that does not read lets this time out: what bounds the flood
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(socket.writer.drain(), 0.5)
        if now - last >= 2:
            last = now
            samples.append(
                {
                    "s": round(now - began, 1),
                    "rss_mib": rss_kib(pid) / 1024,
                    "appended": await appended(http_url),
                }
            )
    socket.abort()
    if reader is not None:
        reader.cancel()
    return {"sent": seq, "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=2000, help="actions per sync frame")
    parser.add_argument("--no-read", action="store_true", help="the flooder reads nothing")
    parser.add_argument("--checkout", type=Path, default=ROOT, help="whose logsync to start")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="logsync-flood-") as tmp:
        process, url = start_server(args.checkout, f"sqlite:///{tmp}/log.db", [])
        try:
            result = asyncio.run(
                flood(url, process.pid, args.seconds, args.batch, not args.no_read)
            )
        finally:
            process.terminate()
            process.wait(10)
    result["command"] = "python -m loadtest.flood " + " ".join(sys.argv[1:])
    samples = result["samples"]
    if args.json:
        print(json.dumps(result))
        return
    for sample in samples:
        print(
            f"{sample['s']:5.1f} s  RSS {sample['rss_mib']:7.1f} MiB  appended {sample['appended']:9.0f}"
        )
    if len(samples) >= 2:
        first, end = samples[0], samples[-1]
        grown = end["rss_mib"] - first["rss_mib"]
        count = max(1.0, end["appended"] - first["appended"])
        print(
            f"RSS {first['rss_mib']:.0f} → {end['rss_mib']:.0f} MiB over {count:.0f} more actions: "
            f"{grown * 1024 * 1024 / count:.0f} bytes per action"
        )


if __name__ == "__main__":
    main()
