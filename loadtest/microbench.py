"""Per-delivery costs, in process, without sockets: one live entry through ``Connection.offer``
(encode included, written to a transport that keeps nothing), and one client ``synced`` frame
through the WebSocket protocol and the connection. For comparing two commits side by side:

    python -m loadtest.microbench                           # this checkout
    python -m loadtest.microbench --checkout /tmp/snapshot  # another one (a `git archive`)

Each figure is the best of 5 repeats of 20,000 calls, in µs per call. The code measured is the
checkout's own (``logsync.server.connection`` / ``logsync.server.ws``, or ``logsync.connection``
in checkouts from before issue 10), imported in a fresh interpreter run from that checkout.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from loadtest.servers import ROOT

# Run inside the checkout measured (its modules, not this one's).
SCRIPT = r"""
import asyncio, base64, os, sys, timeit
from logsync.log.entry import Entry
from logsync.metrics import Metrics
from logsync.settings import Settings
try:
    from logsync.server.connection import Connection
except ImportError:
    from logsync.connection import Connection
import logsync.server.ws as ws

class Transport:
    buffered_bytes = 0
    def write(self, *args): pass
    def close(self, *args): pass
    def pause_reading(self): pass
    def resume_reading(self): pass
    def get_extra_info(self, key): return ("127.0.0.1", 1)
    def set_write_buffer_limits(self, high): pass
    def get_write_buffer_size(self): return 0
    def is_closing(self): return False
    def abort(self): pass

class Admission:
    def full(self): return False

class Node:
    node_id = "server:x"
    def __init__(self):
        self.settings, self.metrics, self.admission = Settings(), Metrics(), Admission()
    def attach(self, peer): pass
    def detach(self, peer): pass
    def spawn(self, coro): coro.close()
    async def authenticate(self, *args): pass
    def undeliverable(self, entry): pass

def accepted(conn):
    conn.receive('["connect",5,"u:c:t",0,{"token":"x"}]')
    conn.authenticated = True
    if hasattr(conn, "accept"):
        conn.accept(1, {}, None)
    else:
        conn.session.accept(1, {}, None)

def best(fn):
    return min(timeit.repeat(fn, number=20000, repeat=5)) / 20000 * 1e6

async def main():
    conn = Connection(Node(), Transport())
    accepted(conn)
    conn.start_delivery(0, up_to_date=True)
    entries = iter([
        Entry(i, f"{i} other:x:1 0", i, {"type": "chat", "text": "hi"}, ["client:u:c"], [], None, "processed")
        for i in range(1, 100002)
    ])
    def offer():
        conn.offer(next(entries))
        conn.session._unacked.clear()  # as if acknowledged: stays live
        conn.session._outgoing.clear()
    protocol = ws.WebSocketProtocol(Node(), lambda: None)
    protocol.connection_made(Transport())
    key = base64.b64encode(os.urandom(16)).decode()
    protocol.data_received((
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    accepted(protocol.conn)
    payload, mask = b'["synced",5]', os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    frame = bytes((0x81, 0x80 | len(payload))) + mask + masked
    print(f"offer {best(offer):.2f} us   synced frame {best(lambda: protocol.data_received(frame)):.2f} us")

asyncio.run(main())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=Path, default=ROOT, help="whose logsync to measure")
    args = parser.parse_args()
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=args.checkout, check=False)
    raise SystemExit(done.returncode)


if __name__ == "__main__":
    main()
