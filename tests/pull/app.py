"""The app the pull tests run: rooms (with `load`), private channels, a filtered channel, and
action types that are accepted, denied, failing, or addressed to a user."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from logsync import App, AuthContext, Context

app = App(subprotocol=2, min_subprotocol=1)
# channel → how many times its `unsubscribe` callback ran, and `load` calls
unsubscribed: dict[str, int] = {}
loads: dict[str, int] = {}


@app.auth
def auth(ctx: AuthContext) -> bool:
    return ctx.token == "secret"


def room_load(ctx: Context, action: Any, meta: dict[str, Any]) -> dict[str, Any]:
    room = ctx.params["id"]
    loads[room] = loads.get(room, 0) + 1
    return {"type": "rooms/state", "room": room}


def room_unsubscribe(ctx: Context, action: Any, meta: dict[str, Any]) -> None:
    unsubscribed[ctx.params["id"]] = unsubscribed.get(ctx.params["id"], 0) + 1


app.channel(
    "rooms/{id}",
    access=lambda ctx, action, meta: ctx.params["id"] != "secret",
    load=room_load,
    unsubscribe=room_unsubscribe,
)
app.channel("users/{id}", access=lambda ctx, action, meta: ctx.params["id"] == ctx.user_id)


def tasks_filter(ctx: Context, action: Any, meta: dict[str, Any]) -> Any:
    wanted = (action.get("filter") or {}).get("done")
    if wanted is None:
        return None
    return lambda task, task_meta: task.get("done") == wanted


app.channel("tasks", access=lambda ctx, action, meta: True, filter=tasks_filter)


class Message(BaseModel):
    room: str
    text: str = Field(min_length=1, max_length=1000)


def process_message(ctx: Context, action: Message, meta: dict[str, Any]) -> None:
    if action.text == "fail":
        raise RuntimeError("process fails on purpose")


app.type(
    "rooms/add",
    model=Message,
    access=lambda ctx, action, meta: True,
    resend=lambda ctx, action, meta: {"channel": f"rooms/{action.room}"},
    process=process_message,
)
app.type(
    "tasks/set",
    access=lambda ctx, action, meta: True,
    resend=lambda ctx, action, meta: {"channel": "tasks"},
)
app.type(
    "notify",
    access=lambda ctx, action, meta: True,
    resend=lambda ctx, action, meta: {"user": action["user"]},
)
app.type("denied/action", access=lambda ctx, action, meta: False)
