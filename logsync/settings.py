"""Server settings: their types, bounds, defaults and descriptions, and how they are loaded.

``Settings(**values)`` is the defaults with ``values`` on top, validated. ``Settings.load`` is what
``logsync serve`` uses: pydantic-settings sources in rising priority — defaults, a TOML file
(``--config`` or ``LOGSYNC_CONFIG``), ``LOGSYNC_*`` environment variables, then flags (given as
init values). A value that does not fit its field raises :class:`SettingsError`, one line naming
the setting and where the value came from.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "LOGSYNC_"


class SettingsError(ValueError):
    """A setting's value is refused (or the config file cannot be read); the message is one line."""


class Settings(BaseSettings):
    """Everything a node can be tuned by. Times are in milliseconds."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(31337, ge=0, le=65535, description="port to listen on; 0 picks a free one")
    env: Literal["production", "development"] = Field(
        "production",
        description="development sends ['headers', {env: 'development'}] and `debug` messages "
        "with error details",
    )
    store: str = Field(
        "sqlite:///logsync.db",
        description="log store URL: sqlite:///FILE (the embedded default, in the working "
        "directory), memory://, redis://…",
    )
    broker: str = Field(
        "", description="local:// or redis://; empty: redis pub/sub with a Redis store, else local"
    )
    node_id: str | None = Field(None, description="this node's id (server:<id>); random if unset")
    ping_ms: int = Field(20_000, gt=0, description="silence before the server pings a client")
    timeout_ms: int = Field(70_000, gt=0, description="wait for an answer before closing")
    max_frame_bytes: int = Field(1 << 20, gt=0, description="largest accepted WebSocket frame")
    # -- Bounds on what one client may make the server hold or do (README "Limits"), the names in
    # LIMITS below: each must be positive and is rendered as `logsync_limit{setting="…"}`.
    preauth_frame_bytes: int = Field(16 * 1024, gt=0, description="largest frame before `connect`")
    preauth_held_messages: int = Field(
        100, gt=0, description="messages that may wait for the handshake"
    )
    preauth_held_bytes: int = Field(
        64 * 1024, gt=0, description="bytes of messages that may wait for the handshake"
    )
    connect_timeout_ms: int = Field(5_000, gt=0, description="how long a socket has to `connect`")
    inbound_max_actions: int = Field(
        1_000,
        gt=0,
        description="received actions of one connection waiting for their answer; past it (or "
        "inbound_max_bytes) the socket is not read until they drain",
    )
    inbound_max_bytes: int = Field(
        1 << 20, gt=0, description="frame bytes of those actions waiting for their answer"
    )
    max_subscriptions: int = Field(
        1_000, gt=0, description="channels one connection may be subscribed to (undo 'limit')"
    )
    max_channel_length: int = Field(512, gt=0, description="longest channel name")
    log_value_chars: int = Field(
        200, gt=0, description="how much of a client-sent value (error options, ids) is logged"
    )
    head_timeout_ms: int = Field(10_000, gt=0, description="the HTTP request head must arrive in")
    upgrades_per_turn: int = Field(
        32,
        gt=0,
        description="WebSocket upgrades done in one event-loop turn, at most; the rest wait for "
        "the next turns (thousands of clients connecting at once do not hold up live messages)",
    )
    http_keepalive_ms: int = Field(
        15_000, gt=0, description="an idle kept-alive plain HTTP connection is closed after"
    )
    bruteforce_failures: int = Field(
        3, gt=0, description="refused credentials from one address within the window that lock it"
    )
    bruteforce_window_ms: int = Field(
        3_000, gt=0, description="the window, and the lock after the last real failure"
    )
    allowed_origins: str = Field(
        "",
        description="comma-separated Origins allowed to upgrade (others get 403); empty: none or "
        "the Host's own; * allows any",
    )
    metrics_listen: str = Field(
        "", description="host:port serving /metrics instead of the public port"
    )
    metrics_token: str = Field("", description="bearer token /metrics requires")
    log_format: Literal["text", "json"] = Field(
        "text", description="text, or json (one object per line, with the client id and reason)"
    )
    max_future_ms: int = Field(
        60_000, gt=0, description="how far ahead of the server clock meta.time may be"
    )
    replay_chunk: int = Field(100, gt=0, description="actions per `sync` when catching up")
    inbound_batch: int = Field(
        100, gt=0, description="`batch=True` actions of one client appended in one store call"
    )
    replay_window: int = Field(4, gt=0, description="catch-up `sync` messages awaiting `synced`")
    live_window: int = Field(
        256, gt=0, description="live `sync` messages unacknowledged before serving from the log"
    )
    live_batch: int = Field(
        100,
        gt=0,
        description="live actions in one `sync` at most (those offered to a client in one"
        " event-loop turn go out together)",
    )
    outbound_high_water_bytes: int = Field(
        1 << 20, gt=0, description="bytes queued for a socket before serving it from the log"
    )
    replay_concurrency: int = Field(
        32, gt=0, description="log chunks read and sent at once, over all catching-up sessions"
    )
    catch_up_budget_bytes: int = Field(
        0,
        ge=0,
        description="bytes catch-up may hold over all connections of a node (frames queued for "
        "sockets, chunks read and not yet sent); a slow reader waits for it before its next "
        "chunk. 0: 1/1024 of physical memory, within 8-256 MiB",
    )
    handshake_rate: float = Field(
        500.0, gt=0, allow_inf_nan=False, description="handshakes admitted per second"
    )
    handshake_burst: int = Field(
        10,
        gt=0,
        description="handshakes admitted at once (more at once: a storm's first burst delays "
        "live messages)",
    )
    handshake_queue: int = Field(
        5000, gt=0, description="handshakes waiting beyond those; past it: 1013 / 503 with retry"
    )
    handshake_wait_max_ms: int = Field(
        10_000,
        gt=0,
        description="no more handshakes wait than the current rate admits in this long (the "
        "rest are told to come back)",
    )
    handshake_concurrency: int = Field(
        256, gt=0, description="handshakes admitted and not yet accepted or refused, at most"
    )
    handshake_retry_min_ms: int = Field(
        1_000, gt=0, description="least retry hint (Retry-After, the 1013 reason)"
    )
    handshake_retry_max_ms: int = Field(
        60_000, gt=0, description="greatest retry hint (Retry-After, the 1013 reason)"
    )
    admission_adaptive: bool = Field(
        True,
        description="admit handshakes at a rate that follows the load (AIMD between "
        "admission_floor and handshake_rate); false: handshake_rate always",
    )
    admission_floor: float = Field(
        20.0, gt=0, allow_inf_nan=False, description="handshakes/s admitted however loaded"
    )
    admission_increase: float = Field(
        100.0,
        gt=0,
        allow_inf_nan=False,
        description="handshakes/s added to the rate per second the node is healthy",
    )
    admission_decrease: float = Field(
        0.5,
        gt=0,
        lt=1,
        allow_inf_nan=False,
        description="the rate is multiplied by this when the node is overloaded (each 0.5 s)",
    )
    admission_loop_lag_ms: float = Field(
        50.0,
        gt=0,
        allow_inf_nan=False,
        description="overloaded past this event-loop lag (smoothed over ~0.25 s)",
    )
    admission_store_queue: int = Field(
        100, gt=0, description="overloaded past this many store calls waiting or running"
    )
    admission_budget_fill: float = Field(
        0.9,
        gt=0,
        allow_inf_nan=False,
        description="overloaded past this fill of the catch-up budget (1.0: full)",
    )
    takeover_ms: int = Field(
        10_000,
        ge=0,
        description="a resent action another node appended and has not processed after this is "
        "processed here (at-least-once then)",
    )
    history_max_age_ms: int = Field(
        30 * 24 * 3600 * 1000,
        ge=0,
        description="trim channel history older than this (0: keep); older resubscriptions get "
        "the channel's `load`",
    )
    history_keep_last: int = Field(0, ge=0, description="actions each channel keeps (0: no limit)")
    id_retention_ms: int = Field(
        30 * 24 * 3600 * 1000, ge=0, description="how long duplicate ids are refused (0: forever)"
    )
    trim_interval_ms: int = Field(60_000, ge=0, description="how often to trim (0: never)")
    trusted_proxies: str = Field(
        "",
        description="comma-separated load balancer addresses or networks whose X-Forwarded-For "
        "gives the client address",
    )
    tls_cert: str | None = Field(None, description="PEM certificate file (with tls_key: wss://)")
    tls_key: str | None = Field(None, description="PEM private key file")
    # -- Wake-ups of pull-only clients (Web Push, webhooks): docs/http-pull.md "Wake-ups".
    vapid_private_key: str = Field(
        "",
        description="VAPID private key for Web Push: a PEM file path or the base64url raw key "
        "(`logsync vapid-keys` makes one); empty: Web Push off",
    )
    vapid_subject: str = Field(
        "mailto:admin@localhost",
        pattern=r"^(mailto:|https:)",
        description="VAPID `sub` claim, a mailto: or https: contact for push services",
    )
    wakeup_interval_ms: int = Field(
        30_000, gt=0, description="at most one wake-up per client in this long (all nodes)"
    )
    wakeup_ttl_s: int = Field(
        3_600, ge=0, description="how long a push service keeps an undelivered wake-up (TTL)"
    )
    wakeup_timeout_ms: int = Field(
        5_000, gt=0, description="a wake-up request (Web Push or webhook) must answer in"
    )
    wakeup_queue: int = Field(
        1_000, gt=0, description="wake-ups waiting to be sent; past it they are dropped"
    )
    wakeup_concurrency: int = Field(8, gt=0, description="wake-up requests in flight at once")
    wakeup_decide_queue: int = Field(
        10_000,
        gt=0,
        description="appended entries waiting to be looked at for wake-ups; past it they are "
        "skipped (counted dropped)",
    )
    wakeups_per_client: int = Field(
        10, gt=0, description="wake-up registrations one client may have"
    )
    wakeup_presence_ms: int = Field(
        30_000,
        gt=0,
        description="a connected client is marked online for all nodes this long, refreshed "
        "while it stays (no wake-ups meanwhile)",
    )
    wakeup_backoff_max_ms: int = Field(
        3_600_000, gt=0, description="the longest Retry-After a push endpoint is backed off for"
    )
    wakeup_webhook_prefixes: str = Field(
        "",
        description="comma-separated URL prefixes a webhook must start with (the server POSTs "
        "to what clients register); empty: any http(s) URL",
    )
    wakeup_fanout: int = Field(
        10_000, gt=0, description="registered clients one entry's user or channel may wake"
    )
    # -- Pull-only HTTP clients (POST /v1/sync): docs/http-pull.md.
    pull_page_default: int = Field(
        100, gt=0, description="actions in a /v1/sync page when the request gives no limit"
    )
    pull_page_max: int = Field(1_000, gt=0, description="the largest /v1/sync page (limit)")
    pull_wait_max_s: float = Field(
        25.0,
        gt=0,
        allow_inf_nan=False,
        description="the longest long-poll (wait) of /v1/sync, below common proxy idle timeouts",
    )
    pull_state_ttl_ms: int = Field(
        30 * 24 * 3600 * 1000,
        gt=0,
        description="a pull client's subscriptions are forgotten after this long without a request",
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info", description="the lowest level logged (any case)"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def development(self) -> bool:
        return self.env == "development"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Init values only, unless :meth:`load` is running: then init (the flags), ``LOGSYNC_*``
        from its environ, the TOML file (each wins over the ones after it; defaults come last)."""
        loading = _LOADING.get()
        if loading is None:
            return (init_settings,)
        environ, config = loading
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            _EnvironSource(settings_cls, environ),
        ]
        if config is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
        return tuple(sources)

    @classmethod
    def load(
        cls,
        flags: Mapping[str, object] | None = None,
        environ: Mapping[str, str] | None = None,
        config: str | None = None,
        flag_names: Mapping[str, str] | None = None,
    ) -> Settings:
        """Defaults < the TOML file ``config`` (else ``environ["LOGSYNC_CONFIG"]``) <
        ``LOGSYNC_*`` in ``environ`` < ``flags`` (by setting name; None values are left out).

        ``flag_names`` (setting → flag) only names the flag in error messages.
        """
        given: dict[str, Any] = {k: v for k, v in (flags or {}).items() if v is not None}
        environ = environ if environ is not None else {}
        config = config or environ.get(ENV_PREFIX + "CONFIG") or None
        path = Path(config) if config else None
        if path is not None and not path.is_file():
            raise SettingsError(f"config file {config} not found")
        token = _LOADING.set((environ, path))
        try:
            return cls(**given)
        except ValidationError as error:
            origins = _Origins(given, environ, config, flag_names or {})
            raise SettingsError("; ".join(_describe(e, origins) for e in error.errors())) from None
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise SettingsError(f"config file {config}: {error}") from None
        finally:
            _LOADING.reset(token)


# While Settings.load builds an instance: (environ, TOML file).
_LOADING: ContextVar[tuple[Mapping[str, str], Path | None] | None] = ContextVar(
    "logsync_settings_loading", default=None
)


class _EnvironSource(EnvSettingsSource):
    """``LOGSYNC_<NAME>`` (any case) from a given mapping instead of ``os.environ``; variables that
    name no setting (``LOGSYNC_CONFIG``, ``LOGSYNC_INTEROP_TARGET``…) are not looked at."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self._environ.items()}


class _Origins:
    """Where a refused value came from, for the error message."""

    def __init__(
        self,
        flags: Mapping[str, object],
        environ: Mapping[str, str],
        config: str | None,
        flag_names: Mapping[str, str],
    ) -> None:
        self.flags, self.config, self.flag_names = flags, config, flag_names
        self.environ = {key.upper(): key for key in environ}

    def __call__(self, name: str) -> str:
        if name in self.flags:
            return self.flag_names.get(name, name)
        variable = ENV_PREFIX + name.upper()
        if variable in self.environ:
            return self.environ[variable]
        return self.config or "defaults"


def _describe(error: Any, origin: _Origins) -> str:
    """One pydantic error as ``setting port must be a whole number, not 'x' (from --port)``."""
    name = ".".join(str(part) for part in error["loc"]) or "?"
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    source = origin(name)
    if kind == "extra_forbidden":
        return f"unknown setting {name!r} in {source}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        problem = "must be a whole number"
    elif kind in ("float_parsing", "float_type", "finite_number"):
        problem = "must be a number"
    elif kind == "greater_than":
        problem = "must be positive" if ctx.get("gt") == 0 else f"must be greater than {ctx['gt']}"
    elif kind == "greater_than_equal":
        problem = "must not be negative" if ctx.get("ge") == 0 else f"must be at least {ctx['ge']}"
    elif kind == "less_than_equal":
        problem = f"must be at most {ctx['le']}"
    elif kind == "literal_error":
        problem = "must be " + str(ctx.get("expected", "")).replace("'", "")
    elif kind == "string_type":
        problem = "must be a string"
    else:
        problem = f"is refused: {error['msg']}"
    return f"setting {name} {problem}, not {value!r} (from {source})"


# The settings that bound what a client can make a node hold or do: each is shown in /metrics
# as ``logsync_limit{setting="<name>"}`` and listed in the README's "Limits" table; each must be
# positive (``gt=0`` on its field).
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
    "upgrades_per_turn",
    "http_keepalive_ms",
    "bruteforce_failures",
    "bruteforce_window_ms",
    "replay_chunk",
    "inbound_batch",
    "replay_window",
    "live_window",
    "live_batch",
    "outbound_high_water_bytes",
    "replay_concurrency",
    "handshake_rate",
    "handshake_burst",
    "handshake_queue",
    "handshake_wait_max_ms",
    "handshake_concurrency",
    "handshake_retry_min_ms",
    "handshake_retry_max_ms",
    "admission_floor",
    "admission_increase",
    "admission_decrease",
    "admission_loop_lag_ms",
    "admission_store_queue",
    "admission_budget_fill",
    "pull_page_max",
    "pull_wait_max_s",
    "pull_state_ttl_ms",
    "wakeup_interval_ms",
    "wakeup_timeout_ms",
    "wakeup_queue",
    "wakeup_concurrency",
    "wakeup_decide_queue",
    "wakeups_per_client",
    "wakeup_presence_ms",
    "wakeup_backoff_max_ms",
    "wakeup_fanout",
)
