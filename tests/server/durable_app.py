"""An app for crash tests: `note` is kept for user `keeper`; `job` blocks in `process` while the
LOGSYNC_TEST_BLOCK environment variable is set (so a kill lands between append and process)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from logsync import App, AuthContext, Context

app = App()
done: list[str] = []


@app.auth
def auth(ctx: AuthContext) -> bool:
    return ctx.token == "secret"


def allow(ctx: Context, action: Any, meta: dict[str, Any]) -> bool:
    return True


app.type("note", access=allow, resend=lambda ctx, action, meta: {"user": "keeper"})


async def job(ctx: Context, action: dict[str, Any], meta: dict[str, Any]) -> None:
    if os.environ.get("LOGSYNC_TEST_BLOCK"):
        await ctx.send_back({"type": "job/started"})  # the action is in the log by now
        await asyncio.Event().wait()
    done.append(meta["id"])
    await ctx.node.add(
        {"type": "job/done", "id": meta["id"], "runs": done.count(meta["id"])}, users=["keeper"]
    )


app.type("job", access=allow, process=job)
