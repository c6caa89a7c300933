"""Server settings with their defaults; the CLI fills them from flags, ``LOGSYNC_*`` env or TOML."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Settings:
    """Everything a node can be tuned by. Times are in milliseconds."""

    host: str = "127.0.0.1"
    port: int = 31337
    # "development" sends ['headers', {env: 'development'}] and `debug` messages with error details.
    env: str = "production"
    # The embedded default: a SQLite file in the working directory.
    store: str = "sqlite:///logsync.db"
    # Empty: Redis pub/sub when the store is Redis, else in-process.
    broker: str = ""
    node_id: str | None = None
    ping_ms: int = 20_000
    timeout_ms: int = 70_000
    max_frame_bytes: int = 1 << 20
    # Client actions whose meta.time is further ahead of the server clock are refused.
    max_future_ms: int = 60_000
    # Catch-up from the log: actions per `sync`, and `sync` messages awaiting `synced` at once.
    replay_chunk: int = 100
    replay_window: int = 4
    # Live `sync` messages a client may leave unacknowledged, and bytes queued for its socket,
    # before it is served from the log instead (memory stays bounded by connections).
    live_window: int = 256
    outbound_high_water_bytes: int = 1 << 20
    # Chunks read from the log and sent at once, over all catching-up sessions of this node.
    replay_concurrency: int = 32
    # Reconnect storms: handshakes admitted per second, at once, and waiting beyond those; past
    # the queue a handshake is refused (close 1013 / HTTP 503) with a jittered retry hint.
    handshake_rate: float = 500.0
    handshake_burst: int = 100
    handshake_queue: int = 5000
    # A resent action that another node appended and has not processed after this long is
    # processed here (that node is taken for dead; `process` is at-least-once in that case).
    takeover_ms: int = 10_000
    # Retention: channel (and other index) history older than this is trimmed (0: keep forever),
    # and each channel keeps at most `history_keep_last` actions (0: no limit). Resubscriptions
    # from before the trimmed part get the channel's `load` instead of history.
    history_max_age_ms: int = 30 * 24 * 3600 * 1000
    history_keep_last: int = 0
    # How long an action id is remembered to refuse duplicates (0: forever).
    id_retention_ms: int = 30 * 24 * 3600 * 1000
    trim_interval_ms: int = 60_000
    # Load balancers whose X-Forwarded-For is believed (comma-separated addresses or networks):
    # the client address then comes from that header, for the brute-force lock and logs.
    trusted_proxies: str = ""
    tls_cert: str | None = None
    tls_key: str | None = None
    log_level: str = "info"

    @property
    def development(self) -> bool:
        return self.env == "development"
