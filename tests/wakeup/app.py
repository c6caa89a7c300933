"""The app the wake-up tests run: token ``secret`` for everyone, a ``rooms/:id`` channel, and
``rooms/add`` resent to its room."""

from __future__ import annotations

from typing import Any

from logsync import App, AuthContext, Context

app = App()


@app.auth
def auth(ctx: AuthContext) -> bool:
    return ctx.token == "secret"


app.channel("rooms/:id", access=lambda ctx, action, meta: True)


def room(ctx: Context, action: Any, meta: dict[str, Any]) -> dict[str, Any]:
    return {"channel": f"rooms/{action['room']}"}


app.type("rooms/add", access=lambda ctx, action, meta: True, resend=room)
