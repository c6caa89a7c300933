"""Memory tracing for a benchmarked server (debug only, never imported by logsync itself).

A process started with this directory first on ``PYTHONPATH`` and ``STORM_TRACE_DIR`` set traces
its allocations (:mod:`tracemalloc`, 1 frame) from its first ``SIGUSR1`` (send it once the server
listens: tracing its imports would slow its start past the launcher's deadline), and writes
``<dir>/peak.txt`` whenever its traced memory passes 1.25 times the last written figure (and
8 MiB): the total, the top allocation sites and the most numerous object types (:mod:`gc`), so
the peak of a storm can be read afterwards. Each later ``SIGUSR1`` writes
``<dir>/snapshot-<n>.txt`` at once. Tracing slows the process several times: its figures locate
memory, they are not timings.
"""

from __future__ import annotations

import os

DIRECTORY = os.environ.get("STORM_TRACE_DIR", "")


def _dump(path: str, note: str) -> int:
    import collections
    import gc
    import tracemalloc

    snapshot = tracemalloc.take_snapshot()
    current, peak = tracemalloc.get_traced_memory()
    types = collections.Counter(type(o).__name__ for o in gc.get_objects())
    lines = [f"{note}: traced {current / 2**20:.1f} MiB (peak {peak / 2**20:.1f} MiB)"]
    for stat in snapshot.statistics("lineno")[:40]:
        frame = stat.traceback[0]
        lines.append(
            f"{stat.size / 2**20:9.2f} MiB {stat.count:9d} blocks  {frame.filename}:{frame.lineno}"
        )
    lines.append("gc-tracked objects by type:")
    lines += [f"{n:9d} {name}" for name, n in types.most_common(30)]
    with open(path, "w") as file:
        file.write("\n".join(lines) + "\n")
    return current


def _start() -> None:
    import signal
    import threading
    import time
    import tracemalloc

    written = [8 << 20]
    count = [0]

    def watch() -> None:
        while True:
            time.sleep(0.5)
            current, _ = tracemalloc.get_traced_memory()
            if current > written[0] * 1.25:
                written[0] = _dump(os.path.join(DIRECTORY, "peak.txt"), time.strftime("%T"))

    def on_signal(signum: int, frame: object) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(1)
            threading.Thread(target=watch, daemon=True).start()
            return
        count[0] += 1
        _dump(os.path.join(DIRECTORY, f"snapshot-{count[0]}.txt"), "on SIGUSR1")

    signal.signal(signal.SIGUSR1, on_signal)


if DIRECTORY:
    _start()
