"""Counters a node keeps, and their Prometheus text form (served at ``/metrics``).

The node and its connections bump :class:`Metrics` fields on the hot path (plain integer adds);
gauges such as open connections are read from the node when :func:`render` runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from logsync.node import ServerNode

# Upper bounds (seconds) of the store latency histogram buckets.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.total += seconds
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1


@dataclass
class Metrics:
    """Monotonic counters of one node."""

    actions_received: int = 0
    actions_appended: int = 0
    actions_refused: int = 0
    deliveries: int = 0
    catch_up_chunks: int = 0
    fell_behind: int = 0
    store: dict[str, Histogram] = field(default_factory=dict)

    @contextmanager
    def timed(self, operation: str) -> Iterator[None]:
        """Time a store call into the ``operation`` histogram."""
        start = perf_counter()
        try:
            yield
        finally:
            self.store.setdefault(operation, Histogram()).observe(perf_counter() - start)


def render(node: ServerNode) -> str:
    """The node's metrics in the Prometheus text exposition format."""
    m, admission = node.metrics, node.admission
    authenticated = [c for c in node.connections if c.authenticated]
    lines: list[str] = []

    def metric(name: str, kind: str, text: str, value: float, labels: str = "") -> None:
        if not any(line.startswith(f"# HELP {name} ") for line in lines):
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
        lines.append(f"{name}{labels} {value}")

    metric("logsync_connections", "gauge", "Open WebSocket connections.", len(node.connections))
    metric("logsync_sessions", "gauge", "Authenticated sessions.", len(authenticated))
    metric(
        "logsync_sessions_catching_up",
        "gauge",
        "Sessions served from the log, not live.",
        sum(1 for c in authenticated if not c.live),
    )
    metric(
        "logsync_outbound_buffer_bytes",
        "gauge",
        "Bytes queued for sockets, all sessions.",
        sum(c.transport.buffered_bytes for c in node.connections),
    )
    metric(
        "logsync_handshakes_waiting",
        "gauge",
        "Handshakes waiting for admission.",
        admission.waiting,
    )
    for outcome, value in (
        ("admitted", admission.admitted),
        ("deferred", admission.deferred),
        ("refused", admission.refused),
    ):
        metric(
            "logsync_handshakes_total",
            "counter",
            "Handshakes by outcome (deferred: had to wait).",
            value,
            f'{{outcome="{outcome}"}}',
        )
    metric(
        "logsync_actions_received_total",
        "counter",
        "Actions received from clients.",
        m.actions_received,
    )
    metric(
        "logsync_actions_appended_total",
        "counter",
        "Entries this node appended.",
        m.actions_appended,
    )
    metric("logsync_actions_refused_total", "counter", "Client actions undone.", m.actions_refused)
    metric("logsync_deliveries_total", "counter", "Entries sent to sessions.", m.deliveries)
    metric(
        "logsync_catch_up_chunks_total", "counter", "Chunks sent from the log.", m.catch_up_chunks
    )
    metric(
        "logsync_fell_behind_total",
        "counter",
        "Times a live session was switched to the log.",
        m.fell_behind,
    )
    metric("logsync_healthy", "gauge", "1 when the store and broker answer.", int(node.healthy))
    name = "logsync_store_seconds"
    lines.append(f"# HELP {name} Store call latency by operation.")
    lines.append(f"# TYPE {name} histogram")
    for operation, histogram in sorted(m.store.items()):
        cumulative = 0
        for bound, count in zip((*BUCKETS, float("inf")), histogram.counts, strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f'{name}_bucket{{operation="{operation}",le="{le}"}} {cumulative}')
        lines.append(f'{name}_sum{{operation="{operation}"}} {histogram.total}')
        lines.append(f'{name}_count{{operation="{operation}"}} {cumulative}')
    return "\n".join(lines) + "\n"
