"""The app the client tests run: rooms (with `load`), messages that are processed, undone on
purpose, or routed to a user; each `process` call is appended to the file named by the
``CLIENT_TEST_LOG`` environment variable (``<id> <meta time> <server now>``), so a test can read
what the server applied and when, from outside the server process."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, Field

from logsync import App, AuthContext, Context, Undo
from logsync.wallclock import now_ms

app = App(subprotocol=1)


@app.auth
def auth(ctx: AuthContext) -> bool:
    return ctx.token == "secret"


def room_load(ctx: Context, action: Any, meta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "rooms/state", "room": ctx.params["id"]}


app.channel(
    "rooms/{id}", access=lambda ctx, action, meta: ctx.params["id"] != "secret", load=room_load
)


class Message(BaseModel):
    room: str
    text: str = Field(min_length=1, max_length=10_000)


def record(meta: dict[str, Any]) -> None:
    path = os.environ.get("CLIENT_TEST_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{meta['id']}|{meta['time']}|{now_ms()}\n")


def process_message(ctx: Context, action: Message, meta: dict[str, Any]) -> None:
    if action.text == "forbidden":
        raise Undo("forbiddenWord", word=action.text)
    record(meta)


app.type(
    "rooms/add",
    model=Message,
    access=lambda ctx, action, meta: True,
    resend=lambda ctx, action, meta: {"channel": f"rooms/{action.room}"},
    process=process_message,
)
app.type("denied/action", access=lambda ctx, action, meta: False)
