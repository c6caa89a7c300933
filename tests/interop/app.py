"""The app the interop tests run (same rules as js/reference-server.mjs, for @logux/server)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from logsync import App, AuthContext, Context, NotFound

app = App(subprotocol=3, min_subprotocol=2)
names: dict[str, str] = {}
counter = {"value": 0}


@app.auth
def auth(ctx: AuthContext) -> bool:
    return ctx.token == "secret"


def own_user(ctx: Context, action: Any, meta: dict[str, Any]) -> bool:
    return ctx.params["id"] == ctx.user_id


def load_user(ctx: Context, action: Any, meta: dict[str, Any]) -> dict[str, Any]:
    user = ctx.params["id"]
    return {"type": "user/name", "user": user, "name": names.get(user, "anonymous")}


app.channel("user/:id", access=own_user, load=load_user)


def chat_access(ctx: Context, action: Any, meta: dict[str, Any]) -> bool:
    return ctx.params["id"] != "secret"


def chat_load(ctx: Context, action: Any, meta: dict[str, Any]) -> None:
    if ctx.params["id"] == "missing":
        raise NotFound()
    if ctx.params["id"] == "broken":
        raise RuntimeError("load is broken on purpose")


app.channel("chat/{id}", access=chat_access, load=chat_load)


class ChangeName(BaseModel):
    user: str
    name: str


def change_name(ctx: Context, action: ChangeName, meta: dict[str, Any]) -> None:
    names[action.user] = action.name


app.type(
    "CHANGE_NAME",
    model=ChangeName,
    access=lambda ctx, action, meta: action.user == ctx.user_id,
    resend=lambda ctx, action, meta: {"channel": f"user/{action.user}"},
    process=change_name,
)


class ChatMessage(BaseModel):
    chat: str
    text: str = Field(min_length=1, max_length=1000)


def chat_process(ctx: Context, action: ChatMessage, meta: dict[str, Any]) -> None:
    if action.text == "fail":
        raise RuntimeError("process fails on purpose")


app.type(
    "chat/message",
    model=ChatMessage,
    access=lambda ctx, action, meta: True,
    resend=lambda ctx, action, meta: {"channel": f"chat/{action.chat}"},
    process=chat_process,
)


# chat/message without a `process` (so a client's run of them is appended in one store call):
# the benchmarks' fan-out of an app that only relays
app.type(
    "chat/note",
    model=ChatMessage,
    access=lambda ctx, action, meta: True,
    resend=lambda ctx, action, meta: {"channel": f"chat/{action.chat}"},
)


class Notify(BaseModel):
    user: str
    text: str


app.type(
    "notify",
    model=Notify,
    access=lambda ctx, action, meta: True,
    resend=lambda ctx, action, meta: {"user": action.user},
    batch=True,  # its access depends on nothing: a backlog of them is appended in one call
)


async def increment(ctx: Context, action: Any, meta: dict[str, Any]) -> None:
    counter["value"] += 1
    await ctx.send_back({"type": "counter/value", "value": counter["value"]})


app.type("counter/inc", access=lambda ctx, action, meta: True, process=increment)
app.type("denied/action", access=lambda ctx, action, meta: False)
