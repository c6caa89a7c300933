"""The app ``logsync serve`` runs when none is given: the Logux README example plus a chat.

Any user may connect with any non-empty token (it is a demo); ``user/{id}`` is private to that
user. The chat (its page is ``logsync/static``, served at ``/``):

- ``chat/{room}``: a conversation. ``lobby``, ``random``… are open to everyone; ``dm~alice~bob``
  (the two user ids, sorted) is a direct conversation, open to those two only. Subscribing
  with ``history: N`` (at most :data:`PAGE_MAX`) ``load``\\s one ``chat/history`` action: the
  latest N messages with their reactions and the read receipts. ``chat/older``
  ``{room, before, limit?}`` asks for the page before ``before`` (an ``added`` position of that
  history), answered with ``chat/history`` again.
- ``chat/message`` ``{room, text}``, ``chat/read`` ``{room, id}`` (the reader has seen every
  message up to that one), ``chat/react`` ``{room, id, emoji}``: resent to the conversation.
- ``presence``: ``chat/here`` ``{user}`` heartbeats of open pages, resent to it; its ``load`` is
  ``chat/online`` with who was heard from within :data:`PRESENCE_MS`.

Messages, reads and reactions are the log itself (the store), so they survive a restart; the
history pages are read from the channel's index (:meth:`logsync.app.Outbox.read`). Only
presence is kept in memory: it is about now.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from pydantic import BaseModel, Field

from logsync.app import App, AuthContext, Context, Undo

app = App(subprotocol=1)
names: dict[str, str] = {}

#: messages in one history page unless the subscriber asks for another count
PAGE = 30
#: the most messages one history page may hold (``history``/``limit`` above it are refused)
PAGE_MAX = 100
#: entries read from the store per call while a page is assembled
READ_CHUNK = 500
#: how long a user counts as online after their last heartbeat (their page sends one every 10 s)
PRESENCE_MS = 25_000
ROOM = r"[A-Za-z0-9_~.-]{1,100}"


@app.auth
def auth(ctx: AuthContext) -> bool:
    return bool(ctx.token)


class ChangeName(BaseModel):
    user: str
    name: str = Field(min_length=1, max_length=100)


def own_user(ctx: Context, action: Any, meta: dict[str, Any]) -> bool:
    return ctx.params["id"] == ctx.user_id


def load_user(ctx: Context, action: Any, meta: dict[str, Any]) -> dict[str, Any]:
    user = ctx.params["id"]
    return {"type": "user/name", "user": user, "name": names.get(user, "anonymous")}


app.channel("user/{id}", access=own_user, load=load_user)


def set_name(ctx: Context, action: ChangeName, meta: dict[str, Any]) -> None:
    names[action.user] = action.name


app.type(
    "CHANGE_NAME",
    model=ChangeName,
    access=lambda ctx, action, meta: action.user == ctx.user_id,
    resend=lambda ctx, action, meta: {"channel": f"user/{action.user}"},
    process=set_name,
)


def may_join(user_id: str | None, room: str) -> bool:
    """Rooms are open; ``dm~a~b`` only to ``a`` and ``b``."""
    if not room.startswith("dm~"):
        return True
    return user_id is not None and user_id in room.split("~")[1:]


class ChatMessage(BaseModel):
    room: str = Field(min_length=1, max_length=100)
    text: str = Field(min_length=1, max_length=2000)


class ChatRead(BaseModel):
    room: str = Field(pattern=f"^{ROOM}$")
    id: str = Field(min_length=1, max_length=200)


class ChatReact(BaseModel):
    room: str = Field(pattern=f"^{ROOM}$")
    id: str = Field(min_length=1, max_length=200)
    emoji: str = Field(min_length=1, max_length=16)


class ChatOlder(BaseModel):
    room: str = Field(pattern=f"^{ROOM}$")
    before: int = Field(gt=0)
    limit: int = Field(default=PAGE, ge=1, le=PAGE_MAX)


class ChatHere(BaseModel):
    user: str = Field(min_length=1, max_length=100)


async def history(ctx: Context, room: str, before: int | None, limit: int) -> dict[str, Any]:
    """One ``chat/history`` page of ``room``: the last ``limit`` messages before ``before``
    (an ``added`` position; None: the latest), their reactions, and each user's latest read.

    The store reads forward only, so the channel's index is scanned in chunks up to ``before``
    keeping the last page; what goes to the client is one page."""
    index = f"channel:chat/{room}"
    messages: deque[dict[str, Any]] = deque(maxlen=limit)
    reactions: dict[str, list[dict[str, Any]]] = {}
    reads: dict[str, str] = {}
    after = 0
    while True:
        page = await ctx.node.read([index], after, READ_CHUNK)
        for entry in page.entries:
            if before is not None and entry.added >= before:
                break
            kind = entry.action.get("type")
            item = {
                "action": entry.action,
                "id": entry.id,
                "time": entry.time,
                "added": entry.added,
            }
            if kind == "chat/message":
                messages.append(item)
            elif kind == "chat/react":
                reactions.setdefault(str(entry.action.get("id")), []).append(item)
            elif kind == "chat/read":
                reads[entry.id.split(" ")[1].split(":")[0]] = str(entry.action.get("id"))
        else:
            if page.more:
                after = page.next_cursor
                continue
        break
    shown = {m["id"] for m in messages}
    first = messages[0]["added"] if messages else 0
    return {
        "type": "chat/history",
        "room": room,
        "messages": list(messages),
        "reactions": [r for mid in shown for r in reactions.get(mid, [])],
        "reads": reads,
        "before": first,
        # a full page may have older messages before it; a shorter one is the beginning
        "more": len(messages) == limit,
        "older": before is not None,
    }


def chat_access(ctx: Context, action: Any, meta: dict[str, Any]) -> bool:
    return may_join(ctx.user_id, ctx.params["room"])


async def chat_load(ctx: Context, action: Any, meta: dict[str, Any]) -> dict[str, Any] | None:
    """With ``history: N`` in the subscribe (the page asks for it), the latest N messages;
    without it nothing (a bare subscription gets only what comes next)."""
    count = action.get("history")
    if count is None:
        return None
    if not isinstance(count, int) or isinstance(count, bool) or not 0 < count <= PAGE_MAX:
        raise Undo("error", details=f"history must be a whole number from 1 to {PAGE_MAX}")
    return await history(ctx, ctx.params["room"], None, count)


app.channel("chat/{room}", access=chat_access, load=chat_load)


def room_access(ctx: Context, action: Any, meta: dict[str, Any]) -> bool:
    return may_join(ctx.user_id, action.room)


def to_room(ctx: Context, action: Any, meta: dict[str, Any]) -> dict[str, list[str]]:
    """The conversation; a direct one also to both users, so the other one gets it unopened."""
    users = action.room.split("~")[1:] if action.room.startswith("dm~") else []
    return {"channels": [f"chat/{action.room}"], "users": users}


app.type("chat/message", model=ChatMessage, access=room_access, resend=to_room)
app.type("chat/read", model=ChatRead, access=room_access, resend=to_room)
app.type("chat/react", model=ChatReact, access=room_access, resend=to_room)


async def send_older(ctx: Context, action: ChatOlder, meta: dict[str, Any]) -> None:
    await ctx.send_back(await history(ctx, action.room, action.before, action.limit))


app.type("chat/older", model=ChatOlder, access=room_access, process=send_older)

#: user id → when their page was last heard from (ms)
seen: dict[str, int] = {}


def online() -> list[str]:
    """Users heard from within :data:`PRESENCE_MS`."""
    now = int(time.time() * 1000)
    return sorted(user for user, at in seen.items() if now - at < PRESENCE_MS)


def mark_here(ctx: Context, action: ChatHere, meta: dict[str, Any]) -> None:
    seen[action.user] = int(time.time() * 1000)


def only_own(ctx: Context, action: ChatHere, meta: dict[str, Any]) -> bool:
    if action.user != ctx.user_id:
        raise Undo("denied")
    return True


app.channel(
    "presence",
    access=lambda ctx, action, meta: True,
    load=lambda ctx, action, meta: {"type": "chat/online", "users": online()},
)
app.type(
    "chat/here",
    model=ChatHere,
    access=only_own,
    resend=lambda ctx, action, meta: "presence",
    process=mark_here,
)
