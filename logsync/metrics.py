"""Counters a node keeps, and their Prometheus text form (served at ``/metrics``).

The node and its connections bump :class:`Metrics` fields on the hot path (plain integer adds);
gauges such as open connections come from a :class:`Snapshot` the node takes when :func:`render`
runs; ``prometheus-client`` writes the exposition text.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import Protocol, TypeVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from logsync.compiled import compiled_modules

# Upper bounds (seconds) of the latency histogram buckets.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Stages a client action passes, in order (``logsync_action_stage_seconds``): waiting in its
# client's queue, the dedupe read, the append, ``process``, the status write, and the whole way
# from the frame to its answer.
STAGES = ("queued", "seen", "append", "process", "status", "answered")
# The admission controller's states and signals (logsync.engine.load).
ADMISSION_STATES = ("ceiling", "increasing", "decreasing", "floor", "fixed")
ADMISSION_SIGNALS = ("loop_lag", "store_queue", "budget_fill")
# How a wake-up can end (``logsync_wakeups_total{result}``).
WAKEUP_RESULTS = ("sent", "gone", "backoff", "failed", "dropped", "coalesced")


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
    live_syncs: int = 0
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
    # POST /v1/sync answers by HTTP status, and the long-polls waiting now (a gauge)
    pull_requests: dict[int, int] = field(default_factory=dict)
    pull_waiting: int = 0
    # wake-ups of pull-only clients: (kind, result) → count (see WAKEUP_RESULTS)
    wakeups: dict[tuple[str, str], int] = field(default_factory=dict)

    def wakeup(self, kind: str, result: str, count: int = 1) -> None:
        """Count ``count`` wake-ups of ``kind`` (webpush, webhook) that ended in ``result``."""
        key = (kind, result)
        self.wakeups[key] = self.wakeups.get(key, 0) + count

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


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The gauges of a node, read when ``/metrics`` is scraped (see ``ServerNode.snapshot``)."""

    connections: int
    sessions: int
    catching_up: int
    outbound_bytes: int
    inbound_actions: int
    handshakes_waiting: int
    handshakes_in_progress: int
    # the admission controller (logsync.engine.load): the rate it admits now, its state, its
    # decreases by signal, and the signals as it last read them
    admission_rate: float
    admission_state: str
    admission_decreases: dict[str, int]
    loop_lag_s: float
    store_queue: int
    budget_fill: float
    # outcome ("admitted", "deferred", "refused") → handshakes
    handshakes: dict[str, int]
    healthy: bool
    # setting name → value, for each bound in logsync.settings.LIMITS (and the catch-up budget's
    # effective limit, catch_up_budget_bytes)
    limits: dict[str, float]
    # the catch-up budget (logsync.engine.budget): bytes held now, connections queued for it,
    # asks that had to queue (a counter)
    budget_used: int = 0
    budget_peak: int = 0
    budget_waiting: int = 0
    budget_waits: int = 0


class Source(Protocol):
    """What :func:`render` reads: the counters the hot path bumps, and a snapshot of gauges."""

    metrics: Metrics

    def snapshot(self) -> Snapshot: ...


F = TypeVar("F", CounterMetricFamily, GaugeMetricFamily)

# (metric name, help, Metrics attribute) of the plain counters
COUNTERS = (
    ("logsync_actions_received_total", "Actions received from clients.", "actions_received"),
    ("logsync_actions_appended_total", "Entries this node appended.", "actions_appended"),
    ("logsync_actions_refused_total", "Client actions undone.", "actions_refused"),
    (
        "logsync_actions_invalid_total",
        "Client actions refused at the door (a field out of range, a payload that does not "
        "round-trip).",
        "actions_invalid",
    ),
    ("logsync_deliveries_total", "Entries sent to sessions.", "deliveries"),
    (
        "logsync_live_syncs_total",
        "Live `sync` messages sent (several entries offered in one loop turn share one).",
        "live_syncs",
    ),
    ("logsync_catch_up_chunks_total", "Chunks sent from the log.", "catch_up_chunks"),
    ("logsync_fell_behind_total", "Times a live session was switched to the log.", "fell_behind"),
    (
        "logsync_undeliverable_entries_total",
        "Log entries skipped in delivery because they cannot be encoded.",
        "undeliverable",
    ),
    (
        "logsync_reading_paused_total",
        "Times a socket was not read because its unanswered actions were over the bound.",
        "reading_paused",
    ),
    (
        "logsync_auth_refused_total",
        "Handshakes refused wrong-credentials (the brute-force lock included).",
        "auth_refused",
    ),
)


def render(source: Source) -> str:
    """The node's metrics in the Prometheus text exposition format (by ``prometheus-client``,
    from the plain counters: the hot path never touches a client library object)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(source))
    return generate_latest(registry).decode()


class _Collector(Collector):
    def __init__(self, source: Source) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        m, snap = self._source.metrics, self._source.snapshot()
        gauges = (
            ("logsync_connections", "Open WebSocket connections.", snap.connections),
            ("logsync_sessions", "Authenticated sessions.", snap.sessions),
            (
                "logsync_sessions_catching_up",
                "Sessions served from the log, not live.",
                snap.catching_up,
            ),
            (
                "logsync_outbound_buffer_bytes",
                "Bytes queued for sockets, all sessions.",
                snap.outbound_bytes,
            ),
            (
                "logsync_inbound_actions",
                "Received actions not answered yet, all sessions.",
                snap.inbound_actions,
            ),
            (
                "logsync_handshakes_waiting",
                "Handshakes waiting for admission.",
                snap.handshakes_waiting,
            ),
            (
                "logsync_handshakes_in_progress",
                "Handshakes admitted and not yet accepted or refused.",
                snap.handshakes_in_progress,
            ),
            (
                "logsync_admission_rate",
                "Handshakes per second admitted now (the controller's rate; handshake_rate at most).",
                snap.admission_rate,
            ),
            (
                "logsync_loop_lag_smoothed_seconds",
                "The event loop's lag as admission reads it (smoothed).",
                snap.loop_lag_s,
            ),
            (
                "logsync_store_queue_depth",
                "Store calls waiting or running now.",
                snap.store_queue,
            ),
            (
                "logsync_catch_up_budget_fill",
                "The catch-up budget's fill as admission reads it (1.0: full).",
                snap.budget_fill,
            ),
            ("logsync_healthy", "1 when the store and broker answer.", int(snap.healthy)),
            (
                "logsync_catch_up_budget_bytes",
                "Bytes catch-up holds now, all sessions (frames queued, chunks read and unsent).",
                snap.budget_used,
            ),
            (
                "logsync_catch_up_budget_peak_bytes",
                "The most bytes catch-up ever held at once, all sessions.",
                snap.budget_peak,
            ),
            (
                "logsync_catch_up_budget_waiting",
                "Catching-up sessions waiting for the catch-up budget.",
                snap.budget_waiting,
            ),
        )
        for name, text, value in gauges:
            yield GaugeMetricFamily(name, text, value=value)
        yield _labelled(
            CounterMetricFamily(
                "logsync_handshakes_total",
                "Handshakes by outcome (deferred: had to wait).",
                labels=["outcome"],
            ),
            snap.handshakes,
        )
        yield _labelled(
            GaugeMetricFamily(
                "logsync_admission_state",
                "1 for the admission controller's state now: ceiling, increasing, decreasing, "
                "floor, fixed (admission_adaptive off).",
                labels=["state"],
            ),
            {state: int(state == snap.admission_state) for state in ADMISSION_STATES},
        )
        yield _labelled(
            CounterMetricFamily(
                "logsync_admission_decreases_total",
                "Times the admitted handshake rate was cut, by the signal over its threshold.",
                labels=["signal"],
            ),
            {signal: snap.admission_decreases.get(signal, 0) for signal in ADMISSION_SIGNALS},
        )
        for name, text, attribute in COUNTERS:
            yield CounterMetricFamily(name, text, value=getattr(m, attribute))
        yield CounterMetricFamily(
            "logsync_catch_up_budget_waits_total",
            "Times a catching-up session had to wait for the catch-up budget before a read.",
            value=snap.budget_waits,
        )
        yield _labelled(
            CounterMetricFamily(
                "logsync_pull_requests_total", "POST /v1/sync answers by status.", labels=["status"]
            ),
            {str(status): n for status, n in sorted(m.pull_requests.items())},
        )
        yield GaugeMetricFamily(
            "logsync_pull_waiting", "Pull requests long-polling now.", value=m.pull_waiting
        )
        wakeups = CounterMetricFamily(
            "logsync_wakeups_total",
            "Wake-ups of pull-only clients by kind and result: sent, gone (registration "
            "removed), backoff, failed, dropped (queue full), coalesced.",
            labels=["kind", "result"],
        )
        for (kind, result), count in sorted(m.wakeups.items()):
            wakeups.add_metric([kind, result], count)
        yield wakeups
        yield _labelled(
            GaugeMetricFamily(
                "logsync_limit",
                "A bound on what a client can make the node hold or do (the setting's value).",
                labels=["setting"],
            ),
            snap.limits,
        )
        yield _histograms(
            "logsync_store_seconds",
            "Store call latency by operation, as the node waits for it.",
            ["operation"],
            [((op,), h) for op, h in sorted(m.store.items())],
        )
        yield _histograms(
            "logsync_store_inside_seconds",
            "Store calls inside the store: queued before their transaction, then running in it.",
            ["operation", "part"],
            sorted(m.store_inside.items()),
        )
        yield _histograms(
            "logsync_action_stage_seconds",
            "Client actions by type and stage: queued, seen, append, process, status, answered.",
            ["type", "stage"],
            sorted(m.stages.items()),
        )
        yield _histograms(
            "logsync_loop_lag_seconds",
            "How late the event loop ran a periodic timer.",
            [],
            [((), m.loop_lag)],
        )
        yield _labelled(
            GaugeMetricFamily(
                "logsync_compiled",
                "1 for a hot module running compiled by mypyc, 0 for one running as Python.",
                labels=["module"],
            ),
            {name: int(done) for name, done in compiled_modules().items()},
        )


def _labelled(family: F, values: Mapping[str, float]) -> F:
    """``family`` with one sample per ``label value → value``."""
    for label, value in values.items():
        family.add_metric([label], value)
    return family


def _histograms(
    name: str, text: str, labels: list[str], series: list[tuple[tuple[str, ...], Histogram]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, text, labels=labels)
    for values, histogram in series:
        cumulative, buckets = 0, []
        for bound, count in zip((*BUCKETS, float("inf")), histogram.counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        family.add_metric(list(values), buckets, histogram.total)
    return family
