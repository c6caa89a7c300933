"""What travels through the inbound queues: a client's ``sync`` (:class:`Batch`) and each action
of it on its way through the rules (:class:`Job`), and the one way a client action is appended
(:func:`append_job`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from logsync.app import Context, Route
from logsync.engine.peer import Peer
from logsync.log import WAITING, Entry, NewEntry
from logsync.log.writer import LogWriter
from logsync.metrics import Metrics


@dataclass
class Batch:
    """One client `sync` message: answered with `synced` once every action in it is answered
    (processed or undone)."""

    added: float
    remaining: int
    # the frame's bytes, counted against the peer's inbound bound until `synced`
    size: int = 0
    # the highest log position its actions' answers were written at (a logged undo): its
    # `synced` waits until the peer has been sent that far
    barrier: int = 0


@dataclass
class Job:
    """One received action on its way through the rules."""

    peer: Peer
    action: dict[str, Any]
    meta: dict[str, Any]
    batch: Batch
    # what `logsync_action_stage_seconds` calls its type (bounded: a rule's name, not any string)
    kind: str = ""
    # perf_counter() when the frame was handed to the node (stage timings)
    received: float = 0.0
    accepted: bool = False
    appended: bool = False
    # appended, then the store failed before the answer: leave it unacknowledged, the client resends
    stranded: bool = False
    # processed; its status write is under way (the awaitable) and its `logux/processed` waits
    # for it with this barrier: the inbound stage finishes it while the queue moves on
    writing: tuple[Awaitable[None], int] | None = None
    answering: asyncio.Task[None] | None = None
    # refused at the door (reason, details): undone in its turn, never deduped nor appended
    refusal: tuple[str, str | None] | None = None
    # the rule context its handling runs with (what it wrote: `ctx.last_added`)
    ctx: Context | None = None


def new_entry(job: Job, route: Route, status: str = WAITING) -> NewEntry:
    """The log entry of a client's action."""
    meta = job.meta
    return NewEntry(
        id=meta["id"],
        time=int(meta["time"]),
        action=job.action,
        indexes=route.indexes(),
        exclude_clients=route.exclude_clients,
        subprotocol=meta.get("subprotocol"),
        status=status,
    )


async def append_job(
    writer: LogWriter, metrics: Metrics, job: Job, route: Route, status: str = WAITING
) -> Entry | None:
    """Append a client's action (None if the log had its id already)."""
    start = time.perf_counter()
    [appended] = await writer.append([new_entry(job, route, status)])
    metrics.stage(job.kind, "append", time.perf_counter() - start)
    job.appended = True
    return appended.entry if appended.created else None
