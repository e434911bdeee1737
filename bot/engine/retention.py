"""The retention loop: the database stops growing (issue #16).

Every `every` seconds (and once shortly after start): sent and dead outbox rows older than
`OUTBOX_RETENTION` go, jobs finished for `OUTBOX_RETENTION` are compacted (store/compact.py:
their snapshot and the history their card draws, in one small row), then jobs nobody has
watched for `JOB_RETENTION` go, each in small
batches (one short write transaction a batch, the loop yielding in between, so polls and
sends queued on the store's thread are never held up for long); then free pages go back
to the file system (incremental vacuum), and `mathfi_database_bytes` is set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

from bot.engine.loop import PeriodicLoop
from bot.metrics import Metrics
from store import AsyncStore
from store.records import Pruned

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionConfig:
    outbox_retention: float  # seconds
    job_retention: float  # seconds
    every: float = 3600.0
    first_after: float = 60.0  # the first round waits until start-up work is done
    max_batches: int = 10_000  # per kind and round: a bound, never reached in practice


class Round(NamedTuple):
    rows: int  # sent and dead outbox rows deleted
    compacted: int  # finished jobs compacted
    jobs: int  # unwatched jobs forgotten


class Retention(PeriodicLoop):
    def __init__(
        self,
        store: AsyncStore,
        *,
        config: RetentionConfig,
        metrics: Metrics,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(
            what="retention round",
            log=log,
            every=config.every,
            first_after=config.first_after,
            sleep=sleep,
        )
        self._store = store
        self._config = config
        self._metrics = metrics

    async def _round(self) -> object:  # the loop's rounds (bot.engine.loop)
        return await self.round()

    async def round(self) -> Round:
        """One pass: what was deleted, compacted, forgotten; updates the size gauge."""
        started = time.perf_counter()
        config = self._config
        done = Round(
            rows=await self._drain(
                lambda: self._store.prune_outbox(retention=config.outbox_retention)
            ),
            # nothing more is sent about a job finished for as long as a sent row is kept
            compacted=await self._drain(
                lambda: self._store.compact_jobs(after=config.outbox_retention)
            ),
            jobs=await self._drain(lambda: self._store.prune_jobs(retention=config.job_retention)),
        )
        if any(done):
            await self._drain(self._store.vacuum)
        size = await self._store.database_size()
        self._metrics.database_bytes.set(size.bytes)
        if any(done):
            log.info(
                "retention: deleted %d sent notifications, compacted %d finished jobs and "
                "forgot %d unwatched jobs in %.1f s; database %.1f MB",
                *done,
                time.perf_counter() - started,
                size.bytes / 1e6,
            )
        return done

    async def _drain(self, batch: Callable[[], Awaitable[Pruned]]) -> int:
        total = 0
        for _ in range(self._config.max_batches):
            if self._stopping.is_set():
                break
            pruned = await batch()
            total += pruned.count
            if not pruned.more:
                break
            await asyncio.sleep(0)  # let the loop's other work reach the store's thread
        return total
