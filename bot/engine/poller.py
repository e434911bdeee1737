"""The poller: one loop, due-time scheduling, bounded concurrency, group commit.

Model: Home Assistant's update coordinator: one shared poll feeds every channel watching the
job; health is logged on the edge from healthy to failing and on recovery, not every tick.

Each job is polled once per interval however many channels watch it. A job lives in an
in-memory heap keyed by its due time; the loop pops what is due, polls it under a semaphore
and pushes it back with its next due time (RUNNING: its last slot + `interval`, PENDING:
twice that, failing: exponential backoff). A changed poll's rows commit in one SQLite
transaction, shared with the other polls that finish in the same turn of the loop. A
terminal job leaves the heap once its final events are committed; a job nobody watches
leaves it at the next resync with the store.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from bot.core.diff import (
    DiffOptions,
    diff,
    filter_for_subscription,
    headline_kind,
    job_recovered,
    job_unreachable,
    snapshot_hash,
)
from bot.core.events import Event, EventKind
from bot.core.models import PENDING, Snapshot, TrainingJob, TrainingProgress, is_terminal
from bot.errors import MathFiAuthError, MathFiError, MathFiUnavailable, TrainingJobNotFound
from bot.metrics import Metrics
from store import HistoryPoint, NewOutboxRow, Store, StoreUnavailable
from store.db import PollRecord, refused_row

log = logging.getLogger(__name__)


class ProgressSource(Protocol):
    async def get_progress(self, key: str) -> TrainingProgress: ...
    async def get_training(self, key: str) -> TrainingJob: ...


@dataclass
class JobState:
    """What the poller remembers of a job between polls (the store has the durable copy)."""

    key: str
    snapshot: Snapshot | None
    hash: str | None
    version: int = 0
    errors: int = 0
    failing_since: float | None = None
    unreachable: bool = False
    due_at: float = 0.0
    slot: float | None = None  # the due time of the last poll taken: the job's grid


@dataclass(frozen=True)
class PollerConfig:
    interval: float = 30.0
    concurrency: int = 50
    jitter: float = 0.1  # +/- this fraction of a failing job's backoff
    max_backoff: float = 600.0
    unreachable_after: float = 300.0
    resync_every: float = 10.0
    # The loop sleeps at least this long: jobs falling due meanwhile start together (a
    # little late, never early), so at 1,000 polls/s it wakes 20 times a second, not 1,000.
    batch_window: float = 0.05


def notification_payload(
    events: list[Event], *, version: int, mention: str | None, snapshot: Snapshot | None = None
) -> str:
    """The outbox payload: the events, who to alert, and the job as it was when they happened
    (the reply is rendered from this, not from whatever the job looks like at send time)."""
    return json.dumps(
        {
            "version": version,
            "mention": mention,
            "events": [e.model_dump(mode="json", exclude_none=True) for e in events],
            "snapshot": snapshot.model_dump(mode="json") if snapshot is not None else None,
        },
        sort_keys=True,
    )


@dataclass(frozen=True)
class _Queued:
    poll: PollRecord
    written: Callable[[int], None]
    refused: Callable[[StoreUnavailable], None]
    done: asyncio.Future[None]


class GroupCommit:
    """Changed polls that finish in the same turn of the event loop share one transaction.

    `record` queues a poll and returns once it is written or refused. What to do then is
    given as callbacks that the flush itself runs, so a poll cancelled while it waits
    cannot leave the database and the poller's memory disagreeing. One bad poll never
    fails its neighbours (see `_write`).
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: list[_Queued] = []

    async def record(
        self,
        poll: PollRecord,
        *,
        written: Callable[[int], None],
        refused: Callable[[StoreUnavailable], None],
    ) -> None:
        loop = asyncio.get_running_loop()
        if not self._queue:
            loop.call_soon(self._flush)
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append(_Queued(poll, written, refused, done))
        await done

    def _write(self, polls: list[PollRecord]) -> list[int | StoreUnavailable]:
        """The batch in one transaction. If SQLite refused a row, each poll is tried on its
        own; if the database itself failed (locked, full...), every poll gets that error
        at once rather than waiting out the busy timeout one by one."""
        try:
            return list(self._store.record_polls(polls))
        except StoreUnavailable as err:
            if len(polls) == 1 or not refused_row(err):
                return [err] * len(polls)
        except Exception:
            if len(polls) == 1:
                raise
        return [self._write([poll])[0] for poll in polls]

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        try:
            outcomes = self._write([entry.poll for entry in batch])
        except Exception as err:  # not the database's refusal: a bug, told to every poll
            for entry in batch:
                _settle(entry.done, err)
            return
        for entry, outcome in zip(batch, outcomes, strict=True):
            try:
                if isinstance(outcome, StoreUnavailable):
                    entry.refused(outcome)
                else:
                    entry.written(outcome)
            except Exception as err:  # the poll that waits logs it
                _settle(entry.done, err)
            else:
                _settle(entry.done, None)


def _settle(done: asyncio.Future[None], error: Exception | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


class Poller:
    def __init__(
        self,
        store: Store,
        source: ProgressSource,
        *,
        config: PollerConfig,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._source = source
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._jobs: dict[str, JobState] = {}
        self._heap: list[tuple[float, str]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._busy: set[str] = set()
        self._slots = asyncio.Semaphore(config.concurrency)
        self._writer = GroupCommit(store)
        self._next_resync = 0.0
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._sleep_until = math.inf
        self._mathfi_down_since: float | None = None
        self._store_failing = False
        self.last_cycle_at: float | None = None
        self.polls_completed = 0

    # ----------------------------------------------------------------- scheduling
    @property
    def watched(self) -> int:
        return len(self._jobs)

    def watch(self, job_key: str, *, due_at: float | None = None) -> None:
        """Poll a job now (or at `due_at`), from the state the store has of it.

        The commands call this after a subscribe (whose snapshot may be a fresh baseline)
        and for the card's Refresh button.
        """
        record = self._store.get_job(job_key)
        if record is None or record.terminal:
            return
        known = self._jobs.get(job_key)
        if known is None or known.version != record.version:
            self._jobs[job_key] = JobState(
                key=job_key,
                snapshot=Snapshot.model_validate_json(record.snapshot_json),
                hash=record.snapshot_hash,
                version=record.version,
                unreachable=bool(record.unreachable),
            )
            self._metrics.watched_jobs.set(len(self._jobs))
        self._schedule(job_key, self._clock() if due_at is None else due_at)

    def _schedule(self, job_key: str, at: float) -> None:
        state = self._jobs[job_key]
        state.due_at = at
        heapq.heappush(self._heap, (at, job_key))
        if at < self._sleep_until:
            self._wake.set()  # earlier than the loop planned to wake up

    def _next_due(self, state: JobState, now: float) -> float:
        """When to poll the job next.

        Healthy: the next slot of the job's own grid (the slot just polled plus the
        interval), so neither the poll's latency nor a late wake-up stretches the
        interval: N jobs cost N/interval polls a second and a change waits at most one
        interval. A job more than an interval behind skips the slots it missed. Failing:
        exponential backoff from now, with jitter so that failing jobs spread out.
        """
        base = self._config.interval
        if state.errors:
            base = min(base * 2.0 ** min(state.errors, 16), self._config.max_backoff)
            spread = base * self._config.jitter
            return now + base + self._rng.uniform(-spread, spread)
        if state.snapshot is not None and state.snapshot.status == PENDING:
            base *= 2
        slot = now if state.slot is None else state.slot
        if slot + base > now:
            return slot + base
        return slot + base * (math.floor((now - slot) / base) + 1)

    def resync(self) -> None:
        """Align the heap with the store: new watched jobs in, orphaned ones out."""
        now = self._clock()
        watched = self._store.watched_keys()
        for key in list(self._jobs):
            if key not in watched:
                del self._jobs[key]
        for key, next_poll_at in watched.items():
            if key in self._jobs:
                continue
            spread = self._config.interval * self._rng.random()
            self.watch(key, due_at=max(now, next_poll_at or now) + spread * 0.1)
        self._metrics.watched_jobs.set(len(self._jobs))
        self._next_resync = now + self._config.resync_every

    # ----------------------------------------------------------------- the loop
    async def run(self) -> None:
        log.info(
            "poller started (interval %.1f s, concurrency %d)",
            self._config.interval,
            self._config.concurrency,
        )
        while not self._stopping.is_set():
            try:
                await self._cycle()
            except Exception:  # the one broad except of this loop
                log.exception("poller cycle failed; continuing")
                await self._sleep(1.0)
        await self.drain()

    async def _cycle(self) -> None:
        now = self._clock()
        self.last_cycle_at = now
        if now >= self._next_resync:
            self.resync()
        await self._start_due(now)
        wait = self._next_resync - self._clock()
        if self._heap:
            wait = min(wait, self._heap[0][0] - self._clock())
        if wait > 0:
            wait = min(max(wait, self._config.batch_window), 1.0)
            self._wake.clear()
            self._sleep_until = self._clock() + wait
            sleeper = asyncio.ensure_future(self._sleep(wait))
            waker = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({sleeper, waker, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in (sleeper, waker, stopper):
                task.cancel()
            self._sleep_until = math.inf

    async def _start_due(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now and not self._stopping.is_set():
            due_at, key = heapq.heappop(self._heap)
            state = self._jobs.get(key)
            if state is None or state.due_at != due_at:
                continue  # unwatched, rescheduled since, or already taken
            state.due_at = math.inf  # taken: duplicate heap entries for this time are skipped
            state.slot = due_at
            if key in self._busy:
                continue  # a poll of this job is in flight; it schedules the next one
            self._busy.add(key)
            await self._slots.acquire()
            task = asyncio.create_task(self._poll_guarded(state))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def tick(self) -> int:
        """Poll everything due now and wait for it (tests drive the poller with this)."""
        now = self._clock()
        self.last_cycle_at = now
        if now >= self._next_resync:
            self.resync()
        before = self.polls_completed
        await self._start_due(now)
        await self.drain()
        return self.polls_completed - before

    async def drain(self) -> None:
        if self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    def stop(self) -> None:
        self._stopping.set()

    # ----------------------------------------------------------------- one poll
    async def _poll_guarded(self, state: JobState) -> None:
        try:
            started = time.perf_counter()
            await self._poll(state)
            self._metrics.poll_latency.observe(time.perf_counter() - started)
        except StoreUnavailable as err:  # a read refused: logged once, on the edge
            if state.key in self._jobs:
                self._on_store_error(state, err)
        except Exception:
            log.exception("unexpected error polling job %s", state.key)
            self._metrics.poll_errors.labels(kind="internal").inc()
            if state.key in self._jobs:
                state.errors += 1
                self._schedule(state.key, self._next_due(state, self._clock()))
        finally:
            self._busy.discard(state.key)
            self._slots.release()
            self.polls_completed += 1

    async def _poll(self, state: JobState) -> None:
        try:
            progress = await self._source.get_progress(state.key)
            job = (
                await self._source.get_training(state.key) if is_terminal(progress.status) else None
            )
        except MathFiError as err:
            self._on_error(state, err)
            return
        self._metrics.polls.inc()
        self._mathfi_recovered()
        snapshot = Snapshot.from_api(state.key, progress, job)
        digest = snapshot_hash(snapshot)
        now = self._clock()
        if digest == state.hash and not state.unreachable:
            state.errors, state.failing_since = 0, None
            self._schedule(state.key, self._next_due(state, now))
            return
        await self._commit(state, snapshot, digest, now)

    async def _commit(self, state: JobState, snapshot: Snapshot, digest: str, now: float) -> None:
        """Diff, then write snapshot + history + outbox rows in one transaction (shared
        with the other polls that finish in the same turn of the event loop)."""
        previous = state.snapshot
        job_events = diff(previous, snapshot)
        if state.unreachable:
            job_events = [job_recovered(state.key), *job_events]
        for event in job_events:
            self._metrics.events.labels(kind=event.kind.value).inc()
        version = state.version + 1
        outbox: list[NewOutboxRow] = []
        last_best: dict[int, float] = {}
        for sub in self._store.subscriptions_for_job(state.key):
            events = diff(
                previous,
                snapshot,
                DiffOptions(min_improvement=sub.min_improvement, reference_best=sub.last_best),
            )
            if state.unreachable:
                events = [job_recovered(state.key), *events]
            events = filter_for_subscription(
                events, events_filter=sub.events, muted_until=sub.muted_until, now=now
            )
            if not events:
                continue
            best = [e.performance for e in events if e.kind == EventKind.NEW_BEST]
            if best and best[0] is not None:
                last_best[sub.id] = best[0]
            outbox.append(
                NewOutboxRow(
                    dedupe_key=f"{state.key}:v{version}:{sub.channel_id}",
                    channel_id=sub.channel_id,
                    job_key=state.key,
                    kind=headline_kind(events).value,
                    payload=notification_payload(
                        events, version=version, mention=sub.mention, snapshot=snapshot
                    ),
                )
            )
        best_now = snapshot.best()
        best_before = previous.best() if previous else None
        improved = best_now is not None and (
            best_before is None
            or (best_now.latest_performance or 0.0) > (best_before.latest_performance or 0.0)
        )
        poll = PollRecord(
            job_key=state.key,
            snapshot_json=snapshot.canonical_json(),
            snapshot_hash=digest,
            status=snapshot.status,
            best_performance=best_now.latest_performance if best_now else None,
            best_algorithm=best_now.algorithm if best_now else None,
            terminal=snapshot.terminal,
            next_poll_at=self._next_due(state, now),
            history=history_points(previous, snapshot, now),
            outbox=outbox,
            last_best=last_best,
            improved=improved,
        )
        await self._writer.record(
            poll,
            written=partial(self._committed, state, snapshot, digest, now),
            refused=partial(self._on_store_error, state),
        )

    def _committed(
        self, state: JobState, snapshot: Snapshot, digest: str, now: float, version: int
    ) -> None:
        """The poll is in the database: remember it and schedule the next one."""
        self._store_recovered()
        state.version = version
        state.snapshot, state.hash = snapshot, digest
        state.errors, state.failing_since, state.unreachable = 0, None, False
        if snapshot.terminal:
            log.info("job %s reached %s; no more polling", state.key, snapshot.status)
            del self._jobs[state.key]
            self._metrics.watched_jobs.set(len(self._jobs))
        else:
            self._schedule(state.key, self._next_due(state, now))

    # ----------------------------------------------------------------- failures
    def _on_error(self, state: JobState, err: MathFiError) -> None:
        now = self._clock()
        kind = _error_kind(err)
        self._metrics.poll_errors.labels(kind=kind).inc()
        state.errors += 1
        if state.failing_since is None:
            state.failing_since = now
        if isinstance(err, MathFiUnavailable | MathFiAuthError):  # MathFi-wide, logged once
            if self._mathfi_down_since is None:
                self._mathfi_down_since = now
                what = "refused the login" if isinstance(err, MathFiAuthError) else "unreachable"
                log.warning("MathFi %s: %s (will keep retrying with backoff)", what, err)
        elif state.errors == 1:
            log.warning("job %s: polling failed: %s", state.key, err)
        outbox: list[NewOutboxRow] = []
        goes_unreachable = (
            not state.unreachable
            and not isinstance(err, MathFiAuthError)  # our credentials, not the job
            and state.errors >= 3
            and now - state.failing_since >= self._config.unreachable_after
        )
        if goes_unreachable:
            event = job_unreachable(state.key, str(err))
            self._metrics.events.labels(kind=event.kind.value).inc()
            for sub in self._store.subscriptions_for_job(state.key):
                events = filter_for_subscription(
                    [event], events_filter=sub.events, muted_until=sub.muted_until, now=now
                )
                if events:
                    outbox.append(
                        NewOutboxRow(
                            dedupe_key=f"{state.key}:v{state.version}:unreachable:{sub.channel_id}",
                            channel_id=sub.channel_id,
                            job_key=state.key,
                            kind=EventKind.UNREACHABLE.value,
                            payload=notification_payload(
                                events, version=state.version, mention=sub.mention
                            ),
                        )
                    )
        next_at = self._next_due(state, now)
        if state.errors == 1 or goes_unreachable:
            try:
                self._store.record_error(
                    job_key=state.key,
                    next_poll_at=next_at,
                    unreachable=goes_unreachable or state.unreachable,
                    outbox=outbox,
                )
            except StoreUnavailable as store_err:
                self._on_store_error(state, store_err)
                return
            if goes_unreachable:
                state.unreachable = True
                log.warning(
                    "job %s is unreachable since %.0f s: %s",
                    state.key,
                    now - state.failing_since,
                    err,
                )
        self._schedule(state.key, next_at)

    def _on_store_error(self, state: JobState, err: StoreUnavailable) -> None:
        self._metrics.poll_errors.labels(kind="database").inc()
        if not self._store_failing:
            self._store_failing = True
            log.error(
                "database refused a write (%s); keeping the last good state and retrying", err
            )
        state.errors += 1
        self._schedule(state.key, self._next_due(state, self._clock()))

    def _store_recovered(self) -> None:
        if self._store_failing:
            self._store_failing = False
            log.info("database writable again")

    def _mathfi_recovered(self) -> None:
        if self._mathfi_down_since is not None:
            log.info("MathFi reachable again after %.0f s", self._clock() - self._mathfi_down_since)
            self._mathfi_down_since = None

    @property
    def mathfi_down(self) -> bool:
        return self._mathfi_down_since is not None


def _error_kind(err: MathFiError) -> str:
    if isinstance(err, TrainingJobNotFound):
        return "not_found"
    if isinstance(err, MathFiUnavailable):
        return "unavailable"
    return type(err).__name__.removeprefix("MathFi").lower() or "error"


def history_points(previous: Snapshot | None, current: Snapshot, now: float) -> list[HistoryPoint]:
    """One point per algorithm whose latest performance changed since the last snapshot."""
    before = {a.algorithm: a.latest_performance for a in previous.algorithms} if previous else {}
    return [
        HistoryPoint(algorithm=a.algorithm, at=now, value=a.latest_performance)
        for a in current.algorithms
        if a.latest_performance is not None and before.get(a.algorithm) != a.latest_performance
    ]
