"""The on-call loop (issue #17): page again the alerts nobody acknowledged.

An alert is opened by the poll that saw the bad ending, in the same transaction as its
outbox row (`alert_of`, `bot.engine.jobs.poll_record`). Every `every` seconds this loop
reads the open alerts whose next page is due (`ONCALL_REPAGE` after the alert was posted,
then after each page, at most `ONCALL_REPAGE_MAX` pages) and, for each, queues the re-page
as an outbox row (its own dedupe key) in the same transaction that advances the alert's
`pages` and `next_page_at`: a restart neither loses nor doubles a page, and the sender
delivers it exactly once. It also keeps the count of open alerts for /healthz and the
`mathfi_unacknowledged_alerts` gauge.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.core.notification import Notification
from bot.core.oncall import bad_ending, raises_alert, repage
from bot.core.priority import Priority
from bot.engine.loop import PeriodicLoop
from bot.metrics import Metrics
from store import AsyncStore, NewAlert, NewOutboxRow, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OncallConfig:
    repage: float = 900.0  # seconds; 0: never page again
    max_pages: int = 3
    every: float = 5.0  # how often the loop looks for due pages


def alert_of(notification: Notification, *, now: float) -> NewAlert | None:
    """The alert a notification opens, if it is one (`raises_alert`)."""
    if not raises_alert(notification) or notification.subscription_id is None:
        return None
    return NewAlert(
        outbox_key=notification.dedupe_key,
        job_key=notification.job_key,
        channel_id=notification.channel_id,
        subscription_id=notification.subscription_id,
        mention=notification.mention or "",
        status=bad_ending(notification),
        raised_at=now,
    )


class Oncall(PeriodicLoop):
    def __init__(
        self,
        store: AsyncStore,
        *,
        config: OncallConfig,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(what="on-call tick", log=log, every=config.every, sleep=sleep)
        self._store = store
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self.unacknowledged: int | None = None  # open alerts as of the last tick
        self.pages = 0  # re-pages queued by this process

    async def _round(self) -> object:  # the loop's rounds (bot.engine.loop)
        return await self.tick()

    async def tick(self) -> int:
        """Queue every re-page due now (one turn of the store's thread); returns how many."""
        now = self._clock()
        config = self._config

        def work(store: Store) -> tuple[int, int]:
            queued = 0
            if config.repage > 0 and config.max_pages > 0:
                due = store.due_alerts(now=now, repage=config.repage, max_pages=config.max_pages)
                for alert in due:
                    note = repage(
                        alert_id=alert.id,
                        alert_outbox_id=alert.outbox_id,
                        channel_id=alert.channel_id,
                        job_key=alert.job_key,
                        mention=alert.mention or "",
                        status=alert.status,
                        raised_at=alert.raised_at,
                        page=alert.pages + 1,
                        max_pages=config.max_pages,
                        now=now,
                    )
                    row = NewOutboxRow(
                        dedupe_key=note.dedupe_key,
                        channel_id=note.channel_id,
                        job_key=note.job_key,
                        kind=note.kind,
                        payload=note.to_json(),
                        priority=int(Priority.ALERT),  # before queued progress (issue #18)
                    )
                    if store.page_alert(
                        alert.id,
                        pages=alert.pages,
                        next_page_at=now + config.repage,
                        row=row,
                        now=now,
                    ):
                        queued += 1
            return queued, store.count_open_alerts()

        queued, count = await self._store.run(work)
        self.unacknowledged = count
        self._metrics.unacknowledged_alerts.set(count)
        if queued:
            self.pages += queued
            log.info("on-call: paged %d unacknowledged alert(s) again", queued)
        return queued
