"""The app ``logsync serve`` runs when none is given: the Logux README example plus a chat.

Any user may connect with any non-empty token (it is a demo); ``user/{id}`` is private to that
user; ``chat/{room}`` is open to everyone.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from logsync.app import App, AuthContext, Context

app = App(subprotocol=1)
names: dict[str, str] = {}


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


class ChatMessage(BaseModel):
    room: str = Field(min_length=1, max_length=100)
    text: str = Field(min_length=1, max_length=2000)


app.channel("chat/{room}", access=lambda ctx, action, meta: True)
app.type(
    "chat/message",
    model=ChatMessage,
    access=lambda ctx, action, meta: True,
    resend=lambda ctx, action, meta: f"chat/{action.room}",
)
