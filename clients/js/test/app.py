"""The app the JS pull client's tests run (``logsync serve app:app`` from this folder).

Users authenticate with the token ``secret-<user>``. Channel ``tasks`` has a ``load`` (a
``tasks/snapshot``) and a filter (``{"done": …}``); ``tasks/add`` is resent to it and refused
(``denied``) when its text is ``forbidden``, undone with ``tooLate`` when ``late``; ``note`` is
resent to the user it names (for pages and long-polls); ``user/{id}`` is only the user's own.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from logsync import App, AuthContext, Context, Undo

app = App()


@app.auth
def auth(ctx: AuthContext) -> bool:
    return ctx.user_id is not None and ctx.token == f"secret-{ctx.user_id}"


def allow(ctx: Context, action: Any, meta: dict[str, Any]) -> bool:
    return True


def load_tasks(ctx: Context, action: Any, meta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tasks/snapshot", "for": ctx.user_id}


def done_filter(ctx: Context, action: dict[str, Any], meta: dict[str, Any]) -> Any:
    wanted = (action.get("filter") or {}).get("done")
    if wanted is None:
        return None
    return lambda task, task_meta: task.get("done") == wanted


app.channel("tasks", access=allow, load=load_tasks, filter=done_filter)
app.channel("user/{id}", access=lambda ctx, action, meta: ctx.params["id"] == ctx.user_id)


class Task(BaseModel):
    text: str
    done: bool = False


def task_access(ctx: Context, action: Task, meta: dict[str, Any]) -> bool:
    if action.text == "late":
        raise Undo("tooLate", hint="try earlier")
    return action.text != "forbidden"


app.type(
    "tasks/add",
    model=Task,
    access=task_access,
    resend=lambda ctx, action, meta: {"channel": "tasks"},
)


class Note(BaseModel):
    to: str
    n: int = 0


app.type(
    "note",
    model=Note,
    access=allow,
    resend=lambda ctx, action, meta: {"user": action.to},
    batch=True,
)
