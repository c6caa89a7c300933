"""An app that exercises the rule features the interop app does not."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from logsync import App, AuthContext, Context, Undo

app = App()


@app.auth
async def auth(ctx: AuthContext) -> bool:
    await asyncio.sleep(0)  # coroutine callbacks are awaited
    return ctx.token == "secret"


def allow(ctx: Context, action: Any, meta: dict[str, Any]) -> bool:
    return True


def only_color(ctx: Context, action: dict[str, Any], meta: dict[str, Any]) -> Any:
    wanted = (action.get("filter") or {}).get("color")
    if wanted is None:
        return None
    return lambda item, item_meta: item.get("color") == wanted


async def left(ctx: Context, action: dict[str, Any], meta: dict[str, Any]) -> None:
    await ctx.node.add({"type": "presence/left", "user": ctx.user_id}, users=["watcher"])


app.channel("items", access=allow, filter=only_color)
app.channel("room/{id}", access=allow, unsubscribe=left)
app.other_channel(access=lambda ctx, action, meta: action["channel"].startswith("any/"))

app.type("item/add", access=allow, resend=lambda ctx, action, meta: "items")
app.type(
    "room/say",
    access=allow,
    resend=lambda ctx, action, meta: {
        "channel": f"room/{action['room']}",
        "excludeClients": action.get("exclude", []),
    },
)


def explode(ctx: Context, action: dict[str, Any], meta: dict[str, Any]) -> None:
    raise RuntimeError("boom")


app.type(
    "room/explode",
    access=allow,
    resend=lambda ctx, action, meta: f"room/{action['room']}",
    process=explode,
)


def custom_undo(ctx: Context, action: dict[str, Any], meta: dict[str, Any]) -> bool:
    raise Undo("tooLate", hint="try earlier")


app.type("late", access=custom_undo)


async def announce(ctx: Context, action: dict[str, Any], meta: dict[str, Any]) -> None:
    await ctx.node.app.add(
        {"type": "announcement", "text": action["text"]}, channels=[f"room/{action['room']}"]
    )


app.type("announce", access=allow, process=announce)

order: list[str] = []


async def slow(ctx: Context, action: dict[str, Any], meta: dict[str, Any]) -> None:
    await asyncio.sleep(0.2)
    order.append(action["name"])
    await ctx.send_back({"type": "order", "seen": list(order)})


def fast(ctx: Context, action: dict[str, Any], meta: dict[str, Any]) -> None:
    order.append(action["name"])


app.type("step/slow", access=allow, process=slow)
app.type("step/fast", access=allow, process=fast)
# allowed only once the named step's `process` has run: proves `access` waits for the action
# queued before it
app.type("step/after", access=lambda ctx, action, meta: action["name"] in order)
app.type(re.compile(r"regex/.+"), access=allow)
app.type("mail", access=allow, resend=lambda ctx, action, meta: {"user": action["to"]})

# `batch=True`: one store call for a client's run of these actions
bulk_runs: list[int] = []


async def bulk_process(ctx: Context, action: dict[str, Any], meta: dict[str, Any]) -> None:
    bulk_runs.append(action["n"])
    await ctx.send_back(
        {"type": "bulk/ran", "n": action["n"], "runs": bulk_runs.count(action["n"])}
    )


app.type("bulk", access=allow, resend=lambda ctx, action, meta: {"user": "bulkreader"}, batch=True)
# no `process`, no `finally_`: batched by default; `batch=False` keeps one store call per action
app.type("bulk/default", access=allow)
app.type("bulk/serial", access=allow, batch=False)
app.type(
    "bulk/checked",
    access=lambda ctx, action, meta: action["n"] != 3,
    process=bulk_process,
    batch=True,
)

# a `process` type: one client's actions run one at a time, each while its append is on its way
# to the disk, so several share a commit (and a reader's `sync`)
piped_runs: list[int] = []


def piped_process(ctx: Context, action: dict[str, Any], meta: dict[str, Any]) -> None:
    piped_runs.append(action["n"])
    if action["n"] == 5:
        raise Undo("piped-five")


app.type(
    "piped",
    access=lambda ctx, action, meta: action["n"] == 0 or action["n"] - 1 in piped_runs,
    resend=lambda ctx, action, meta: {"user": "pipedreader"},
    process=piped_process,
)
