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
    # -- Bounds on what one client may make the server hold or do (README "Limits"). Each is
    # rendered as `logsync_limit{setting="…"}` in /metrics.
    # Before `connect` is accepted: the largest frame, how many messages may wait for the
    # handshake and their bytes, and how long a socket may take to send `connect`.
    preauth_frame_bytes: int = 16 * 1024
    preauth_held_messages: int = 100
    preauth_held_bytes: int = 64 * 1024
    connect_timeout_ms: int = 5_000
    # Received actions of one connection waiting for their answer, by count and by frame bytes:
    # past either, the server stops reading that socket until they drain.
    inbound_max_actions: int = 1_000
    inbound_max_bytes: int = 1 << 20
    # Channels one connection may be subscribed to at once (past it: undo reason "limit").
    max_subscriptions: int = 1_000
    # Longest channel name a client may subscribe to.
    max_channel_length: int = 512
    # How much of anything a client sent (error options, ids) goes into a log line.
    log_value_chars: int = 200
    # The HTTP request head must arrive within this; an idle kept-alive plain HTTP connection
    # is closed after `http_keepalive_ms`.
    head_timeout_ms: int = 10_000
    http_keepalive_ms: int = 15_000
    # Brute-force lock: this many refused credentials from one address within the window lock
    # it out until the window has passed since the last real failure.
    bruteforce_failures: int = 3
    bruteforce_window_ms: int = 3_000
    # WebSocket upgrades whose Origin is not listed are refused with 403. Empty: a request with
    # no Origin, or one whose Origin names the Host it was sent to. "*" allows any origin.
    allowed_origins: str = ""
    # /metrics: served on `metrics_listen` ("host:port") instead of the public port when set,
    # and requiring `Authorization: Bearer <metrics_token>` when that is set.
    metrics_listen: str = ""
    metrics_token: str = ""
    # "text" or "json" (one JSON object per line, with the client id and a reason).
    log_format: str = "text"
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


# The settings that bound what a client can make a node hold or do: each is shown in /metrics
# as ``logsync_limit{setting="<name>"}`` and listed in the README's "Limits" table.
LIMITS = (
    "max_frame_bytes",
    "preauth_frame_bytes",
    "preauth_held_messages",
    "preauth_held_bytes",
    "connect_timeout_ms",
    "timeout_ms",
    "inbound_max_actions",
    "inbound_max_bytes",
    "max_subscriptions",
    "max_channel_length",
    "max_future_ms",
    "log_value_chars",
    "head_timeout_ms",
    "http_keepalive_ms",
    "bruteforce_failures",
    "bruteforce_window_ms",
    "replay_chunk",
    "replay_window",
    "live_window",
    "outbound_high_water_bytes",
    "replay_concurrency",
    "handshake_rate",
    "handshake_burst",
    "handshake_queue",
)
