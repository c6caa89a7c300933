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

from logsync.settings import LIMITS

if TYPE_CHECKING:
    from logsync.node import ServerNode

# Upper bounds (seconds) of the latency histogram buckets.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Stages a client action passes, in order (``logsync_action_stage_seconds``): waiting in its
# client's queue, the dedupe read, the append, ``process``, the status write, and the whole way
# from the frame to its answer.
STAGES = ("queued", "seen", "append", "process", "status", "answered")


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
    # client actions refused at the door (a field out of range, a payload that does not
    # round-trip), entries skipped because they cannot be encoded, times a socket's reading
    # was paused for its unanswered actions
    actions_invalid: int = 0
    undeliverable: int = 0
    reading_paused: int = 0
    auth_refused: int = 0
    store: dict[str, Histogram] = field(default_factory=dict)
    # store calls, inside the store: (operation, "queued" | "running") → seconds
    store_inside: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    # client actions: (action type, stage) → seconds
    stages: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    # how late the event loop runs a timer: the delay every callback sees
    loop_lag: Histogram = field(default_factory=Histogram)

    @contextmanager
    def timed(self, operation: str) -> Iterator[None]:
        """Time a store call into the ``operation`` histogram."""
        start = perf_counter()
        try:
            yield
        finally:
            self.store.setdefault(operation, Histogram()).observe(perf_counter() - start)

    def stage(self, kind: str, stage: str, seconds: float) -> None:
        """Record how long a client action of type ``kind`` spent in ``stage`` (see STAGES)."""
        key = (kind, stage)
        histogram = self.stages.get(key)
        if histogram is None:
            histogram = self.stages[key] = Histogram()
        histogram.observe(seconds)

    def store_timing(self, operation: str, queued: float, running: float) -> None:
        """A store call waited ``queued`` s for the store, then ran ``running`` s (its whole
        transaction, commit included). Stores that queue calls report it (see
        :attr:`logsync.log.LogStore.timing`)."""
        for part, seconds in (("queued", queued), ("running", running)):
            key = (operation, part)
            histogram = self.store_inside.get(key)
            if histogram is None:
                histogram = self.store_inside[key] = Histogram()
            histogram.observe(seconds)


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
    metric(
        "logsync_actions_invalid_total",
        "counter",
        "Client actions refused at the door (a field out of range, a payload that does not "
        "round-trip).",
        m.actions_invalid,
    )
    metric(
        "logsync_undeliverable_entries_total",
        "counter",
        "Log entries skipped in delivery because they cannot be encoded.",
        m.undeliverable,
    )
    metric(
        "logsync_reading_paused_total",
        "counter",
        "Times a socket was not read because its unanswered actions were over the bound.",
        m.reading_paused,
    )
    metric(
        "logsync_inbound_actions",
        "gauge",
        "Received actions not answered yet, all sessions.",
        sum(c.inbound_actions for c in node.connections),
    )
    metric(
        "logsync_auth_refused_total",
        "counter",
        "Handshakes refused wrong-credentials (the brute-force lock included).",
        m.auth_refused,
    )
    metric("logsync_healthy", "gauge", "1 when the store and broker answer.", int(node.healthy))
    for name in LIMITS:
        metric(
            "logsync_limit",
            "gauge",
            "A bound on what a client can make the node hold or do (the setting's value).",
            getattr(node.settings, name),
            f'{{setting="{name}"}}',
        )

    def histograms(name: str, text: str, series: list[tuple[str, Histogram]]) -> None:
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} histogram")
        for labels, histogram in series:
            sep = "," if labels else ""
            cumulative = 0
            for bound, count in zip((*BUCKETS, float("inf")), histogram.counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {cumulative}')
            braces = f"{{{labels}}}" if labels else ""
            lines.append(f"{name}_sum{braces} {histogram.total}")
            lines.append(f"{name}_count{braces} {cumulative}")

    histograms(
        "logsync_store_seconds",
        "Store call latency by operation, as the node waits for it.",
        [(f'operation="{op}"', h) for op, h in sorted(m.store.items())],
    )
    histograms(
        "logsync_store_inside_seconds",
        "Store calls inside the store: queued before their transaction, then running in it.",
        [
            (f'operation="{op}",part="{part}"', h)
            for (op, part), h in sorted(m.store_inside.items())
        ],
    )
    histograms(
        "logsync_action_stage_seconds",
        "Client actions by type and stage: queued, seen, append, process, status, answered.",
        [(f'type="{kind}",stage="{stage}"', h) for (kind, stage), h in sorted(m.stages.items())],
    )
    histograms(
        "logsync_loop_lag_seconds",
        "How late the event loop ran a periodic timer.",
        [("", m.loop_lag)],
    )
    return "\n".join(lines) + "\n"
