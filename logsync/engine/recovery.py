"""What a node does for the log beyond single actions: process again the actions a crash left
``waiting`` (:meth:`Recovery.recover`, at start), and apply the retention settings
(:meth:`Recovery.trim`, every ``trim_interval_ms``).
"""

from __future__ import annotations

import asyncio
import logging

from logsync.engine.rules import Rules
from logsync.log import LogStore
from logsync.settings import Settings
from logsync.wallclock import now_ms

logger = logging.getLogger("logsync.node")


class Recovery:
    """Crash recovery and retention of one node's log."""

    def __init__(self, store: LogStore, rules: Rules, settings: Settings) -> None:
        self.store = store
        self.rules = rules
        self.settings = settings

    async def recover(self) -> int:
        """Process again the actions that were appended but whose ``process`` never finished
        (the node died in between): append exactly once, ``process`` at least once."""
        count = 0
        while pending := await self.store.waiting(100):
            for entry in pending:
                await self.rules.reprocess(entry)
                count += 1
        if count:
            logger.warning("processed %d actions a previous run left waiting", count)
        return count

    async def trim(self) -> int:
        """Apply the retention settings once: channel history by age and count, other indexes
        by age, dedupe ids by their own window."""
        settings, now = self.settings, now_ms()
        age = settings.history_max_age_ms
        removed = await self.store.trim(
            index_prefix="channel:",
            before_time_ms=now - age if age else None,
            keep_last=settings.history_keep_last or None,
        )
        if age:
            removed += await self.store.trim(before_time_ms=now - age)
        if settings.id_retention_ms:
            removed += await self.store.forget_ids(now - settings.id_retention_ms)
        return removed

    async def trim_periodically(self, running: asyncio.Event) -> None:
        """Trim every ``trim_interval_ms`` while ``running`` is set."""
        interval = self.settings.trim_interval_ms / 1000
        while running.is_set():
            await asyncio.sleep(interval)
            try:
                await self.trim()
            except Exception:
                logger.exception("trimming the log failed")
