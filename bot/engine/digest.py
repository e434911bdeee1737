"""The digest loop: each channel's daily digest, queued once per local day (issue #14).

Every `every` seconds (injected clock and sleep, like the retention loop) it looks at the
channels whose digest is on; one whose local time has passed its hour on a local day not
yet marked gets that day's digest: in one turn of the store's thread, the jobs it watches
are read, the digest built (`bot.core.digest`), and ONE outbox row (dedupe key
`digest:<channel>:<local date>`) is written in the same transaction that marks the day
sent (`Store.record_digest`). A restart, a crash between two rounds or a second loop finds
the day marked and writes nothing; the sender posts the row exactly once like any other.
A quiet day (no job finished, none running) marks the day and queues nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.core.digest import DIGEST_JOB, DIGEST_KIND, DailyDigest, WatchedJob, build_digest
from bot.core.forecast_state import read_state
from bot.core.models import Snapshot
from bot.engine.loop import PeriodicLoop
from store import AsyncStore, DigestSetting, NewOutboxRow, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DigestConfig:
    every: float = 30.0  # how often the loop looks (a digest is at most this late)
    lookback: float = 86400.0  # what a channel's first digest covers


def local_now(tz: str, now: float) -> datetime:
    """`now` on the wall clock of `tz` (ZoneInfoNotFoundError for an unknown zone)."""
    return datetime.fromtimestamp(now, ZoneInfo(tz))


def due_day(setting: DigestSetting, now: float) -> str | None:
    """The local date (ISO) whose digest is due now, or None: due once the local time
    reaches `daily_at` on a day later than the last one marked. Wall-clock times compare
    as text ("09:00" <= "09:30"), so a daylight-saving jump never skips nor repeats a day."""
    local = local_now(setting.tz, now)
    today = local.date().isoformat()
    if local.strftime("%H:%M") < setting.daily_at:
        return None
    if setting.last_sent_day is not None and setting.last_sent_day >= today:
        return None
    return today


def skip_today(daily_at: str, tz: str, now: float) -> str | None:
    """The local date not to send for when a digest is set up after its hour today (the
    first one comes tomorrow), else None."""
    local = local_now(tz, now)
    return local.date().isoformat() if local.strftime("%H:%M") >= daily_at else None


def digest_row(digest: DailyDigest) -> NewOutboxRow:
    return NewOutboxRow(
        dedupe_key=f"digest:{digest.channel_id}:{digest.day}",
        channel_id=digest.channel_id,
        job_key=DIGEST_JOB,
        kind=DIGEST_KIND,
        payload=digest.to_json(),
    )


def write_digest(store: Store, channel_id: str, day: str, *, now: float, lookback: float) -> bool:
    """On the store's thread: build the channel's digest for `day` and record it (queue the
    row, mark the day) in one transaction; False when the day was already marked."""
    setting = store.get_digest(channel_id=channel_id)
    if setting is None:
        return False
    jobs = [
        WatchedJob(
            snapshot=Snapshot.model_validate_json(watched.job.snapshot_json),
            changed_at=watched.job.updated_at,
            forecast=read_state(watched.job.forecast_json).last,
        )
        for watched in store.digest_jobs(channel_id=channel_id)
    ]
    since = setting.last_sent_at if setting.last_sent_at is not None else now - lookback
    digest = build_digest(
        channel_id, jobs, day=day, tz=setting.tz, since=since, now=now, set_by=setting.updated_by
    )
    row = digest_row(digest) if digest is not None else None
    return store.record_digest(channel_id=channel_id, day=day, row=row, now=now)


class DigestLoop(PeriodicLoop):
    def __init__(
        self,
        store: AsyncStore,
        *,
        config: DigestConfig,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(what="digest round", log=log, every=config.every, sleep=sleep)
        self._store = store
        self._config = config
        self._clock = clock

    async def _round(self) -> object:  # the loop's rounds (bot.engine.loop)
        return await self.round()

    async def round(self) -> list[str]:
        """Queue every digest due now; the channels that got one written."""
        now = self._clock()
        written: list[str] = []
        for setting in await self._store.active_digests():
            try:
                day = due_day(setting, now)
            except (ZoneInfoNotFoundError, ValueError):  # the zone left the zone database
                log.warning("digest of %s: unknown time zone %r", setting.channel_id, setting.tz)
                continue
            if day is None:
                continue
            if await self._store.run(self._writer(setting.channel_id, day, now)):
                log.info("digest of %s for %s queued", setting.channel_id, day)
                written.append(setting.channel_id)
        return written

    def _writer(self, channel_id: str, day: str, now: float) -> Callable[[Store], bool]:
        lookback = self._config.lookback
        return lambda sync: write_digest(sync, channel_id, day, now=now, lookback=lookback)
