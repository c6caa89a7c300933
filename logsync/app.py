"""The application's rules: who may connect, which channels exist, what each action type does.

Build an :class:`App`, register rules, and pass it to ``logsync serve module:app``::

    app = App(subprotocol=1)

    @app.auth
    def auth(ctx: AuthContext) -> bool:
        return ctx.token == "secret"

    app.channel("user/{id}", access=lambda ctx, action, meta: ctx.params["id"] == ctx.user_id)
    app.type("CHANGE_NAME", model=ChangeName, access=..., resend=..., process=...)

Every callback may be a plain function or a coroutine function. Callbacks that raise become
``logux/undo`` with reason ``error`` (and the details in development mode), never a crash; raise
:class:`Undo` for a custom reason or :class:`NotFound` from ``load`` for ``notFound``.
The rules run in the engine (:mod:`logsync.engine`), which calls them in Logux's order; what
they may ask of the server in return is the small :class:`Outbox` (add an action, subscribe a
node, read the log), never the node itself.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from logsync.log import Entry, ReadResult

logger = logging.getLogger("logsync.app")

T = TypeVar("T")
MaybeAwaitable: TypeAlias = T | Awaitable[T]
Action = dict[str, Any]
Meta = dict[str, Any]

# (action or model instance, meta) handed to a rule callback
Payload = Any


class Undo(Exception):
    """Raise from a callback to answer ``logux/undo`` with ``reason`` and extra fields."""

    def __init__(self, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.extra = extra


class NotFound(Undo):
    """Raise from a channel's ``load`` when the resource does not exist: undo ``notFound``."""

    def __init__(self, **extra: Any) -> None:
        super().__init__("notFound", **extra)


async def resolve(value: MaybeAwaitable[T]) -> T:
    """Await ``value`` if a callback returned an awaitable."""
    if inspect.isawaitable(value):
        return await value
    return value


async def call_quietly(fn: Any, ctx: Any, action: Any, meta: dict[str, Any]) -> None:
    """Call a rule callback whose failure must not change the answer (``finally_``,
    ``unsubscribe``): an exception is logged, not raised."""
    try:
        await resolve(fn(ctx, action, meta))
    except Exception:
        logger.exception("error in %s", getattr(fn, "__name__", fn))


class Outbox(Protocol):
    """What rules may ask of the server: append a server action to a route, or subscribe a
    connected node to a channel (``logux/subscribed``). The engine's node provides it."""

    async def add(
        self,
        action: dict[str, Any],
        *,
        channels: Any = (),
        users: Any = (),
        clients: Any = (),
        nodes: Any = (),
        exclude_clients: Any = (),
        meta: dict[str, Any] | None = None,
    ) -> Entry: ...

    async def subscribe(self, node_id: str, channel: str) -> bool: ...

    async def read(self, indexes: list[str], after: int, limit: int) -> ReadResult:
        """Read the log: entries filed under any of ``indexes`` (``channel:chat/1``…) with
        ``added > after``, oldest first, at most ``limit`` (:meth:`LogStore.read`). For rules
        that build a channel's ``load`` from its history."""
        ...


@dataclass
class AuthContext:
    """What ``auth`` sees of a connecting client."""

    user_id: str | None
    client_id: str
    node_id: str
    token: str | None
    headers: dict[str, Any]
    cookie: dict[str, str]
    subprotocol: int | None
    remote: str | None


@dataclass
class Context:
    """What rule callbacks see: who sent the action, channel params, and a scratch ``data`` dict."""

    # the server, as rules see it
    node: Outbox
    user_id: str | None
    client_id: str
    node_id: str
    subprotocol: int | None
    headers: dict[str, Any]
    params: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    # Highest log position this action's handling has written (the barrier for `logux/processed`).
    last_added: int = 0

    @property
    def is_server(self) -> bool:
        return self.user_id == "server"

    async def send_back(self, action: Action, meta: Meta | None = None) -> Entry:
        """Send an action to the client that sent the current one (and keep it in its log index)."""
        entry = await self.node.add(action, clients=[self.client_id], meta=meta)
        self.last_added = max(self.last_added, entry.added)
        return entry


Access = Callable[[Context, Payload, Meta], MaybeAwaitable[bool]]
Handler = Callable[[Context, Payload, Meta], MaybeAwaitable[Any]]
Filter = Callable[[Action, Meta], bool]
FilterFactory = Callable[[Context, Action, Meta], MaybeAwaitable[Filter | None]]


@dataclass
class Route:
    """Where an action goes: channel subscribers, users, clients, nodes; minus ``exclude_clients``."""

    channels: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    clients: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    exclude_clients: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, value: Any) -> Route:
        """Read what ``resend`` returned: a channel name, a list of channels, a dict or a Route.

        Dict keys may be plural or singular (``channel``, ``user``…) and ``excludeClients`` or
        ``exclude_clients``, as in @logux/server.
        """
        if value is None:
            return cls()
        if isinstance(value, Route):
            return value
        if isinstance(value, str):
            return cls(channels=[value])
        if isinstance(value, list | tuple):
            return cls(channels=[_string(v, "channel") for v in value])
        if isinstance(value, Mapping):
            route = cls()
            for key, target in (
                ("channel", route.channels),
                ("user", route.users),
                ("client", route.clients),
                ("node", route.nodes),
            ):
                for name in (key, key + "s"):
                    if name in value:
                        target.extend(_strings(value[name], key))
            for name in ("excludeClients", "exclude_clients"):
                if name in value:
                    route.exclude_clients.extend(_strings(value[name], "client"))
            return route
        raise TypeError(
            f"resend must return a channel, a list or a dict, not {type(value).__name__}"
        )

    def indexes(self) -> list[str]:
        """The log indexes an action with this route is filed under."""
        return (
            [f"channel:{c}" for c in self.channels]
            + [f"user:{u}" for u in self.users]
            + [f"client:{c}" for c in self.clients]
            + [f"node:{n}" for n in self.nodes]
        )


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"resend: {what} must be a string, not {type(value).__name__}")
    return value


def _strings(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [_string(v, what) for v in value]


@dataclass
class TypeRule:
    """How one action type is checked, routed and processed."""

    name: str | re.Pattern[str] | None
    access: Access
    model: type[BaseModel] | None = None
    resend: Handler | None = None
    process: Handler | None = None
    finally_: Handler | None = None
    queue: str = "main"
    batch: bool = False


@dataclass
class ChannelRule:
    """How subscriptions to channels matching ``pattern`` are checked and loaded."""

    pattern: re.Pattern[str] | None
    access: Access
    load: Handler | None = None
    filter: FilterFactory | None = None
    unsubscribe: Handler | None = None
    finally_: Handler | None = None
    queue: str = "main"
    resume: Handler | None = None

    def match(self, channel: str) -> dict[str, str] | None:
        """Params if ``channel`` matches (named groups, or ``{"0": …}`` groups for a regex)."""
        if self.pattern is None:
            return {}
        found = self.pattern.fullmatch(channel)
        if found is None:
            return None
        named = found.groupdict()
        if named:
            return named
        return {str(i): g for i, g in enumerate(found.groups(), start=1) if g is not None}


_PARAM = re.compile(r"\{(\w+)\}|:(\w+)")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``chat/{id}`` (or Logux's ``chat/:id``) → a regex whose groups are the params."""
    out, pos = [], 0
    for found in _PARAM.finditer(pattern):
        out.append(re.escape(pattern[pos : found.start()]))
        out.append(f"(?P<{found.group(1) or found.group(2)}>[^/]+)")
        pos = found.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("".join(out))


AuthFn = Callable[[AuthContext], MaybeAwaitable[bool]]


class App:
    """The rule book of one logsync deployment. Register rules, then serve it.

    ``subprotocol`` is the application's own version (sent in ``connected``); clients older than
    ``min_subprotocol`` get ``wrong-subprotocol``.
    """

    def __init__(self, *, subprotocol: int = 0, min_subprotocol: int = 0) -> None:
        self.subprotocol = subprotocol
        self.min_subprotocol = min_subprotocol
        self.authenticator: AuthFn | None = None
        self.types: dict[str, TypeRule] = {}
        self.type_patterns: list[TypeRule] = []
        self.fallback_type: TypeRule | None = None
        self.channels: list[ChannelRule] = []
        self.fallback_channel: ChannelRule | None = None
        self.node: Outbox | None = None

    def auth(self, fn: AuthFn) -> AuthFn:
        """Register the authenticator (use as a decorator). Without one, every client is refused."""
        self.authenticator = fn
        return fn

    def type(
        self,
        name: str | re.Pattern[str],
        *,
        access: Access,
        model: type[BaseModel] | None = None,
        resend: Handler | None = None,
        process: Handler | None = None,
        finally_: Handler | None = None,
        queue: str = "main",
        batch: bool | None = None,
    ) -> TypeRule:
        """Rules for an action type (exact name or compiled regex).

        ``model`` (a pydantic model) validates the action; callbacks then get the model instance.
        ``resend`` returns where the action goes (see :meth:`Route.of`).

        ``batch=True`` says this type's ``access`` and ``resend`` do not depend on what ``process``
        did for the client's earlier actions. Then consecutive actions of such types in one client
        queue are checked first and appended in ONE store call (one round trip for a whole
        offline backlog, or for a busy publisher's actions in flight), and processed in order
        after. ``batch=False``: each action is checked, appended and processed before the next
        one's ``access`` runs, as in @logux/server. The default (``None``) is ``True`` for a type
        with neither ``process`` nor ``finally_`` (there is nothing an earlier action's
        callbacks could have done: ``access`` and ``resend`` still run in the client's order,
        answers and ``synced`` go out in it) and ``False`` otherwise.
        """
        if batch is None:
            batch = process is None and finally_ is None
        rule = TypeRule(name, access, model, resend, process, finally_, queue, batch)
        if isinstance(name, str):
            if name in self.types:
                raise ValueError(f"action type {name!r} is already defined")
            if name.startswith("logux/"):
                raise ValueError("logux/ action types are the server's own")
            self.types[name] = rule
        else:
            self.type_patterns.append(rule)
        return rule

    def other_type(
        self,
        *,
        access: Access,
        resend: Handler | None = None,
        process: Handler | None = None,
        finally_: Handler | None = None,
    ) -> TypeRule:
        """Rules for every action type no other rule matches (otherwise: undo ``unknownType``);
        batched as :meth:`type`'s default says."""
        batch = process is None and finally_ is None
        self.fallback_type = TypeRule(None, access, None, resend, process, finally_, batch=batch)
        return self.fallback_type

    def channel(
        self,
        pattern: str | re.Pattern[str],
        *,
        access: Access,
        load: Handler | None = None,
        filter: FilterFactory | None = None,
        unsubscribe: Handler | None = None,
        finally_: Handler | None = None,
        queue: str = "main",
        resume: Handler | None = None,
    ) -> ChannelRule:
        """Rules for channels matching ``pattern`` (``"chat/{id}"``, ``"chat/:id"`` or a regex).

        ``load`` returns what a new subscriber gets first: an action, a list of actions or of
        ``(action, meta)`` pairs. ``filter`` returns a predicate ``(action, meta) -> bool`` that
        chooses which later channel actions this subscriber receives. A resubscription whose
        ``since`` the log still covers gets the channel's history instead of ``load``; ``resume``
        (same signature and results as ``load``) runs then, for state that is not in the history.
        """
        compiled = compile_pattern(pattern) if isinstance(pattern, str) else pattern
        rule = ChannelRule(compiled, access, load, filter, unsubscribe, finally_, queue, resume)
        self.channels.append(rule)
        return rule

    def other_channel(
        self,
        *,
        access: Access,
        load: Handler | None = None,
        filter: FilterFactory | None = None,
        unsubscribe: Handler | None = None,
    ) -> ChannelRule:
        """Rules for channels no pattern matches (otherwise: undo ``wrongChannel``)."""
        self.fallback_channel = ChannelRule(None, access, load, filter, unsubscribe)
        return self.fallback_channel

    def find_type(self, name: str) -> TypeRule | None:
        """The rule for an action type: exact name, then patterns in order, then the fallback."""
        rule = self.types.get(name)
        if rule is not None:
            return rule
        for candidate in self.type_patterns:
            assert isinstance(candidate.name, re.Pattern)
            if candidate.name.fullmatch(name):
                return candidate
        return self.fallback_type

    def find_channel(self, name: str) -> tuple[ChannelRule, dict[str, str]] | None:
        """The first channel rule matching ``name`` and its params."""
        for rule in self.channels:
            params = rule.match(name)
            if params is not None:
                return rule, params
        if self.fallback_channel is not None:
            return self.fallback_channel, {}
        return None

    async def add(self, action: Action, **route: Any) -> Entry:
        """Add a server-originated action to the log and deliver it (the app must be serving)."""
        if self.node is None:
            raise RuntimeError("the app is not being served yet")
        return await self.node.add(action, **route)
