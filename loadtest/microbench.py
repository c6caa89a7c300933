"""Per-delivery costs, in process, without sockets: one live entry through ``Connection.offer``
(encode included, written to a transport that keeps nothing), and one client ``synced`` frame
through the WebSocket protocol and the connection. For comparing two commits side by side:

    python -m loadtest.microbench                           # this checkout
    python -m loadtest.microbench --checkout /tmp/snapshot  # another one (a `git archive`)

Each figure is the best of 5 repeats of 20,000 calls, in µs per call. On a busy machine count
instructions instead (repeatable whatever else runs)::

    python -m loadtest.microbench --callgrind 2000 [--checkout DIR]

runs the same two paths under ``valgrind --tool=callgrind`` three times (no call, 2000 offers,
2000 synced frames) and prints the instructions per call (the difference from the empty run, so
interpreter start-up and set-up cancel out). ``--fanout N`` offers each entry to N connections
in turn, as a fan-out does (the fan-out benchmark's shape is 100: per-entry work, such as
encoding the action once, is then shared as in a server); ``--batch K`` offers K entries to each
connection per loop turn (checkouts with ``Connection.send_offered`` send them in one ``sync``;
one ``synced`` frame then answers K deliveries). ``--channel`` makes the entries a channel's, which
every connection subscribed to (the fan-out's delivery check), instead of addressed to the client.

``--handshakes N`` measures instead the path from an accepted TCP socket to an idle, authenticated
connection: N clients in turn send the upgrade request and ``connect`` (the interop app's token)
to ``WebSocketProtocol`` on a real node (its SQLite store on a temporary file, the local broker,
uvloop where installed, as ``logsync serve`` runs), each awaited until its ``connected`` is
written to a socket that keeps nothing; the connections stay open. Timed: µs per handshake (best
of 3 runs of N). With ``--callgrind``: instructions per handshake (N handshakes less none). With
``--memory``: Python heap bytes each idle connection holds (tracemalloc, N connections), and the
lines that allocate most of it.

``--writer K`` counts instead the SQLite writer's instructions per append: batches of K
one-entry appends (what group commit makes of K publishers' appends queued together), each run
by the writer's ``_execute`` on the calling thread (no thread timing: deterministic), the
difference between 10 batches and none.

The code measured is the checkout's own (``logsync.server.connection`` / ``logsync.server.ws``,
or ``logsync.connection`` in checkouts from before issue 10), imported in a fresh interpreter run from that checkout.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
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
    def flush_soon(self): pass
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
        self.queued = set()
    def attach(self, peer): pass
    def detach(self, peer): pass
    def live_changed(self, peer, live): pass
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
    # "offers,synced,entries": a fixed count of calls, no timing (entries: how many to build)
    calls = os.environ.get("MICROBENCH_CALLS")
    # each entry is offered to `fan` connections in turn (a fan-out: per-entry work is shared)
    fan = int(os.environ.get("MICROBENCH_FANOUT", "1"))
    # entries offered to each connection per loop turn (sent together where the checkout can)
    batch = int(os.environ.get("MICROBENCH_BATCH", "1"))
    conns = [Connection(Node(), Transport()) for _ in range(fan)]
    for conn in conns:
        accepted(conn)
        conn.start_delivery(0, up_to_date=True)
    # "1": entries of a channel every connection subscribed to (a fan-out's), else addressed
    # to the client (the delivery check's shortest path)
    channel = os.environ.get("MICROBENCH_CHANNEL") == "1"
    if channel:
        from logsync.engine.peer import Subscription
        for conn in conns:
            conn.subscriptions["bench/0"] = Subscription(0, {"{}": None})
    index = "channel:bench/0" if channel else "client:u:c"
    entries = iter([
        Entry(i, f"{i} other:x:1 0", i, {"type": "chat", "text": "hi"}, [index], [], None, "processed")
        for i in range(1, (int(calls.split(",")[2]) if calls else 100000) // fan + 2)
    ])
    turn = [0, None]
    def offer():
        i = turn[0]
        turn[0] = i + 1
        if i % fan == 0:
            turn[1] = next(entries)
        conn = conns[i % fan]
        conn.offer(turn[1])
        if (i // fan + 1) % batch == 0:  # the end of the loop turn
            end_turn = getattr(conn, "send_offered", None)
            if end_turn is not None:
                end_turn()
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
    if calls is not None:
        offers, synced, _ = map(int, calls.split(","))
        for _ in range(offers):
            offer()
        for _ in range(synced):
            protocol.data_received(frame)
        delivered = sum(conn.node.metrics.deliveries for conn in conns)
        print(f"{offers} offers delivered {delivered}, {synced} synced frames")
        return
    print(f"offer {best(offer):.2f} us   synced frame {best(lambda: protocol.data_received(frame)):.2f} us")

asyncio.run(main())
"""


# The handshake path (--handshakes): "N,store,top" (top > 0: tracemalloc, that many lines shown;
# -1: best-of-3 timing; 0: a fixed count, for callgrind).
HANDSHAKE_SCRIPT = r"""
import asyncio, gc, os, sys, tempfile, time
from logsync.broker import open_broker
from logsync.engine import ServerNode
from logsync.log import open_store
from logsync.settings import Settings
from logsync.server.ws import WebSocketProtocol
from tests.interop.app import app

n, store_kind, top = os.environ["MICROBENCH_HANDSHAKES"].split(",")
n, top = int(n), int(top)
scrapes = int(os.environ.get("MICROBENCH_SCRAPES", "-1"))  # --scrapes: /metrics of n connections

class Socket:
    # an asyncio transport that keeps nothing; `connected` written ends the handshake
    def __init__(self, done):
        self.done, self.closing = done, False
    def write(self, data):
        if b'"connected"' in data and not self.done.done():
            self.done.set_result(None)
    def get_extra_info(self, key, default=None):
        return ("127.0.0.1", 4000) if key == "peername" else default
    def set_write_buffer_limits(self, high=None, low=None): pass
    def get_write_buffer_limits(self): return (0, 1)
    def get_write_buffer_size(self): return 0
    def is_closing(self): return self.closing
    def close(self): self.closing = True
    def abort(self): self.closing = True
    def can_write_eof(self): return True
    def write_eof(self): pass
    def pause_reading(self): pass
    def resume_reading(self): pass

def masked(payload):
    mask = b"\x01\x02\x03\x04"
    return bytes((0x81, 0x80 | len(payload))) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(payload))

REQUEST = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1:31337\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")

async def main():
    url = "memory://" if store_kind == "memory" else f"sqlite:///{tempfile.mkdtemp()}/log.db"
    # admission wide open: the path, not the rate limit, is measured
    settings = Settings(store=url, handshake_rate=1e9, handshake_burst=1e9, node_id="bench")
    store = open_store(url)
    node = ServerNode(app, store, open_broker("", store), settings)
    await node.start()
    import logsync.server.http as http
    if hasattr(http, "freeze_startup"):  # what `logsync serve` does once started
        http.freeze_startup()
    loop = asyncio.get_running_loop()
    frames = [masked(b'["connect",5,"h%d:1:t",0,{"token":"secret","subprotocol":3}]' % i)
              for i in range(3 * n if top < 0 else n)]
    kept = []
    async def handshakes(frames):
        for frame in frames:
            done = loop.create_future()
            protocol = WebSocketProtocol(node, lambda: None)
            protocol.connection_made(Socket(done))
            protocol.data_received(REQUEST)
            protocol.data_received(frame)
            await done
            kept.append(protocol)
    if top > 0:
        import tracemalloc
        gc.collect()
        tracemalloc.start(1)
        before = tracemalloc.take_snapshot()
    if top < 0:
        runs = []
        for r in range(3):
            began = time.perf_counter()
            await handshakes(frames[r * n : (r + 1) * n])
            runs.append(time.perf_counter() - began)
        print(f"handshake {min(runs) / n * 1e6:.1f} us")
    else:
        await handshakes(frames)
    await asyncio.sleep(0)
    if scrapes >= 0:
        from logsync.metrics import render
        began = time.perf_counter()
        for _ in range(scrapes):
            render(node)
        if scrapes:
            print(f"scrape {(time.perf_counter() - began) / scrapes * 1e3:.2f} ms ({n} connections)")
    if top > 0:
        gc.collect()
        stats = tracemalloc.take_snapshot().compare_to(before, "lineno")
        stats = [s for s in stats if "microbench" not in str(s.traceback) and "<string>" not in str(s.traceback)]
        total = sum(s.size_diff for s in stats)
        print(f"idle connection {total / n:.0f} bytes (tracemalloc, {n} connections)")
        for s in stats[:top]:
            print(f"  {s.size_diff / n:7.1f} B {s.count_diff / n:5.2f} blocks  {s.traceback}")
    print(f"{len(kept)} handshakes, {len(node.registry.by_client)} registered")
    sys.stdout.flush()
    os._exit(0)  # no teardown in the count

try:
    import uvloop
    uvloop.install()
except ImportError:
    pass
asyncio.run(main())
"""


# The writer's share (--writer): batches of one-entry appends through Writer._execute.
WRITER_SCRIPT = r"""
import asyncio, os, tempfile, time
import orjson
from logsync.log.entry import NewEntry
from logsync.log.sqlite import queries, schema
from logsync.log.sqlite.lanes import Job, Lanes
from logsync.log.sqlite.writer import Writer

batches, size = map(int, os.environ["MICROBENCH_WRITER"].split(","))
conn = schema.connect(os.path.join(tempfile.mkdtemp(), "log.db"), "FULL")
writer = Writer.__new__(Writer)  # no thread: _execute runs here
writer.name, writer.commits, writer.closed, writer.timing = "bench", 0, False, None
writer._lanes = Lanes()
loop = asyncio.new_event_loop()
seq = 0
def job():
    global seq
    seq += 1
    new = NewEntry(f"{seq} pub:c:t 0", seq, {"type": "bench/msg", "text": "hi"}, ["channel:bench/0"])
    encoded = [queries.Encoded(new, orjson.dumps(new.action), orjson.dumps(new.indexes),
                               orjson.dumps(new.exclude_clients), list(dict.fromkeys(new.indexes)))]
    return Job(lambda c: queries.append(c, encoded), True, loop, loop.create_future(), "append",
               True, time.perf_counter())
for _ in range(batches):
    writer._execute(conn, [job() for _ in range(size)])
print(f"{writer.commits} commits of {size} appends")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=Path, default=ROOT, help="whose logsync to measure")
    parser.add_argument(
        "--callgrind",
        type=int,
        metavar="CALLS",
        help="count instructions per call under valgrind (CALLS of each path) instead of timing",
    )
    parser.add_argument(
        "--fanout", type=int, default=1, help="connections each entry is offered to (default 1)"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="entries offered to each connection per loop turn, sent together (default 1)",
    )
    parser.add_argument(
        "--channel",
        action="store_true",
        help="offer entries of a channel the connections subscribed to (as in a fan-out), "
        "instead of entries addressed to the client",
    )
    parser.add_argument(
        "--writer",
        type=int,
        metavar="K",
        help="count the SQLite writer's instructions per append, in batches of K appends",
    )
    parser.add_argument(
        "--handshakes",
        type=int,
        metavar="N",
        help="measure N handshakes, socket to idle connection, instead (see the module docstring)",
    )
    parser.add_argument(
        "--scrapes",
        type=int,
        metavar="S",
        help="--handshakes: then render /metrics S times over the N idle connections (time per "
        "scrape, or instructions per scrape with --callgrind)",
    )
    parser.add_argument(
        "--store", default="sqlite", choices=("sqlite", "memory"), help="--handshakes: the store"
    )
    parser.add_argument(
        "--memory",
        type=int,
        metavar="LINES",
        help="--handshakes: bytes per idle connection (tracemalloc) and the top LINES allocating",
    )
    args = parser.parse_args()
    if args.handshakes is not None:
        handshakes(args)
        return
    if args.writer is not None:
        with ThreadPoolExecutor(2) as pool:
            empty, full = pool.map(
                lambda n: count(
                    args.checkout, WRITER_SCRIPT, {"MICROBENCH_WRITER": f"{n},{args.writer}"}
                ),
                (0, 10),
            )
        print(
            f"append {(full - empty) / (10 * args.writer):.0f} instructions (batches of {args.writer})"
        )
        return
    os.environ["MICROBENCH_FANOUT"] = str(args.fanout)
    os.environ["MICROBENCH_BATCH"] = str(args.batch)
    os.environ["MICROBENCH_CHANNEL"] = "1" if args.channel else "0"
    if args.callgrind is None:
        done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=args.checkout, check=False)
        raise SystemExit(done.returncode)
    calls = args.callgrind
    with ThreadPoolExecutor(3) as pool:
        runs = [(0, 0), (calls, 0), (0, calls)]
        empty, offers, frames = pool.map(
            lambda run: instructions(args.checkout, run[0], run[1], calls), runs
        )
    offer, synced = (offers - empty) / calls, (frames - empty) / calls
    print(f"offer {offer:.0f} instructions   synced frame {synced:.0f} instructions")


def handshakes(args: argparse.Namespace) -> None:
    """``--handshakes N``: timed, counted under callgrind, or its memory (``--memory``)."""

    def spec(n: int, top: int, scrapes: int = -1) -> dict[str, str]:
        return {
            "MICROBENCH_HANDSHAKES": f"{n},{args.store},{top}",
            "MICROBENCH_SCRAPES": str(scrapes),
        }

    if args.scrapes is not None:
        if args.callgrind is None:
            env = {**os.environ, **spec(args.handshakes, 0, args.scrapes)}
            cmd = [sys.executable, "-c", HANDSHAKE_SCRIPT]
            raise SystemExit(subprocess.run(cmd, cwd=args.checkout, env=env, check=False).returncode)
        with ThreadPoolExecutor(2) as pool:
            empty, full = pool.map(
                lambda s: count(args.checkout, HANDSHAKE_SCRIPT, spec(args.handshakes, 0, s)),
                (0, args.scrapes),
            )
        print(f"scrape {(full - empty) / args.scrapes:.0f} instructions ({args.handshakes} conns)")
        return
    if args.callgrind is None:
        top = -1 if args.memory is None else max(1, args.memory)
        env = {**os.environ, **spec(args.handshakes, top)}
        cmd = [sys.executable, "-c", HANDSHAKE_SCRIPT]
        done = subprocess.run(cmd, cwd=args.checkout, env=env, check=False)
        raise SystemExit(done.returncode)
    with ThreadPoolExecutor(2) as pool:
        empty, full = pool.map(
            lambda n: count(args.checkout, HANDSHAKE_SCRIPT, spec(n, 0)), (0, args.handshakes)
        )
    print(f"handshake {(full - empty) / args.handshakes:.0f} instructions ({args.store} store)")


def instructions(checkout: Path, offers: int, synced: int, entries: int) -> int:
    """Instructions the script executes under callgrind with that many calls of each path (and
    ``entries`` built beforehand in every run, so that the set-up cancels out)."""
    return count(checkout, SCRIPT, {"MICROBENCH_CALLS": f"{offers},{synced},{entries}"})


def count(checkout: Path, script: str, env_vars: dict[str, str]) -> int:
    """Instructions ``script`` executes under callgrind, run in ``checkout`` with ``env_vars``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, **env_vars, "PYTHONHASHSEED": "0"}
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-c",
                script,
            ],
            cwd=checkout,
            env=env,
            check=True,
            capture_output=True,
        )
        found = re.search(r"^summary: (\d+)", out.read_text(), re.MULTILINE)
        if found is None:
            raise RuntimeError(f"no summary in {out}")
        return int(found.group(1))


if __name__ == "__main__":
    main()
