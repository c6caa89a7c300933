"""A client in its own process, for the restart tests: ``python -m tests.client.worker URL STORE
ROOM COUNT``. It queues COUNT messages (none if 0), prints ``queued <id>|<id>…`` once they are in the
store, then waits until every pending action is answered and prints ``done``."""

from __future__ import annotations

import asyncio
import sys

from logsync_client import Client


async def main(url: str, store: str, room: str, count: int) -> None:
    client = Client(url, "worker", "secret", store=store, min_delay=0.05, max_delay=0.5, wait=1)
    await client.start()
    ids = [client.add({"type": "rooms/add", "room": room, "text": f"m{i}"}) for i in range(count)]
    print("queued", "|".join(ids), flush=True)
    await client.flush()
    print("done", len(client.pending()), flush=True)
    await client.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
