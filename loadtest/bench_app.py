"""The app the fan-out benchmark runs: ``logsync serve loadtest.bench_app:app``.

Every client may connect (any token) and subscribe to any ``bench/{id}`` channel; ``bench/msg``
(``{"type": "bench/msg", "ch": "<id>", ...}``) is resent to ``bench/<ch>``. No payload model and no
``process``: the benchmark measures the server's own path (append, fan-out, delivery), not the app.
"""

from __future__ import annotations

from typing import Any

from logsync import App, AuthContext, Context

app = App(subprotocol=1)


@app.auth
def auth(ctx: AuthContext) -> bool:
    return True


def _anyone(ctx: Context, action: Any, meta: dict[str, Any]) -> bool:
    return True


def _to_channel(ctx: Context, action: Any, meta: dict[str, Any]) -> str:
    return f"bench/{action['ch']}"


app.channel("bench/{id}", access=_anyone)
app.type("bench/msg", access=_anyone, resend=_to_channel)
