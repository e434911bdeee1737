"""The poller: one loop, due-time scheduling, bounded concurrency, group commit.

(About 440 lines, kept whole: the loop, its workers and one poll share the heap and the
per-job state. What needs no loop is elsewhere: the schedule and the records a poll writes
in `bot.engine.jobs`, the shared transaction in `bot.engine.group_commit`, the health log
in `bot.engine.health`, who is told what in `bot.core.fanout`.)

Model: Home Assistant's update coordinator: one shared poll feeds every channel watching the
job; health is logged on the edge from healthy to failing and on recovery, not every tick.

Each job is polled once per interval however many channels watch it. A job lives in an
in-memory heap keyed by its due time; at most `concurrency` workers pop what is due, poll it
and push it back with its next due time (RUNNING: its last slot + `interval`, PENDING:
twice that, failing: exponential backoff). The loop starts a worker for a due job while
fewer than `concurrency` run; a worker goes on with the next due job and ends when none is
due, so a saturated poller creates no task per poll. An answer whose raw body is
byte-identical to the one the job's snapshot came from is neither parsed nor hashed (the
client compares digests, `get_progress_if_changed`). A changed poll's rows commit in one
SQLite transaction, shared with the other polls that finish in the same turn of the loop. A
terminal job leaves the heap once its final events are committed; a job nobody watches
leaves it at the next resync with the store.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from functools import partial

from bot.core.diff import diff, job_recovered, json_hash
from bot.core.events import EventKind
from bot.core.fanout import Unreachable, fan_out
from bot.core.forecast_state import ForecastState, read_state
from bot.core.models import PENDING, Snapshot, is_terminal
from bot.engine.group_commit import GroupCommit
from bot.engine.health import Health
from bot.engine.jobs import (
    JobState,
    PollerConfig,
    ProgressSource,
    error_kind,
    forecast_step,
    lost_for_good,
    next_due,
    outbox_row,
    poll_record,
    recipient,
)
from bot.errors import MathFiError
from bot.metrics import Metrics
from store import AsyncStore, JobRecord, Store, StoreUnavailable
from store.db import PollRecord

__all__ = ["JobState", "Poller", "PollerConfig", "ProgressSource"]

log = logging.getLogger(__name__)


class Poller:
    def __init__(
        self,
        store: AsyncStore,
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
        self._workers: set[asyncio.Task[None]] = set()
        self._busy: set[str] = set()
        self._tick_at: float | None = None  # during `tick`: take only what was due then
        self._writer = GroupCommit(store)
        self._next_resync = 0.0
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._sleep_until = math.inf
        self._health = Health(clock)
        self.last_cycle_at: float | None = None
        self.polls_completed = 0

    # ----------------------------------------------------------------- scheduling
    @property
    def watched(self) -> int:
        return len(self._jobs)

    async def watch(self, job_key: str, *, due_at: float | None = None) -> None:
        """Poll a job now (or at `due_at`), from the state the store has of it.

        The commands call this after a subscribe (whose snapshot may be a fresh baseline)
        and for the card's Refresh button.
        """
        self._adopt(job_key, await self._store.get_job(job_key), due_at)

    def _adopt(self, job_key: str, record: JobRecord | None, due_at: float | None) -> None:
        """Schedule the job as the store has it (a terminal or unknown job: not at all)."""
        if record is None or record.terminal:
            return
        known = self._jobs.get(job_key)
        if known is None or known.version != record.version:
            self._jobs[job_key] = JobState(
                key=job_key,
                snapshot_json=record.snapshot_json,
                hash=record.snapshot_hash,
                pending=record.status == PENDING,
                version=record.version,
                unreachable=bool(record.unreachable),
                forecast=read_state(record.forecast_json),
            )
            self._metrics.watched_jobs.set(len(self._jobs))
        self._schedule(job_key, self._clock() if due_at is None else due_at)

    def _schedule(self, job_key: str, at: float) -> None:
        state = self._jobs[job_key]
        state.due_at = at
        heapq.heappush(self._heap, (at, job_key))
        if at < self._sleep_until and len(self._workers) < self._config.concurrency:
            self._wake.set()  # earlier than the loop planned to wake up, and it may start a worker

    def _next_due(self, state: JobState, now: float) -> float:
        return next_due(self._config, state, now, self._rng)

    async def resync(self) -> None:
        """Align the heap with the store: new watched jobs in, orphaned ones out (one turn
        of the store's thread: the watched keys and the records of the new ones)."""
        known = set(self._jobs)

        def read(store: Store) -> tuple[dict[str, float], dict[str, JobRecord | None]]:
            watched = store.watched_keys()
            return watched, {key: store.get_job(key) for key in watched if key not in known}

        watched, new = await self._store.run(read)
        now = self._clock()
        for key in list(self._jobs):
            if key not in watched:
                del self._jobs[key]
        for key, record in new.items():
            if key in self._jobs:
                continue  # watched meanwhile (a subscribe): that state is newer
            spread = self._config.interval * self._rng.random()
            next_poll_at = watched[key]
            self._adopt(key, record, max(now, next_poll_at or now) + spread * 0.1)
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
            await self.resync()
        self._start_due(now)
        wait = self._next_resync - self._clock()
        if self._heap:
            head = self._heap[0][0] - self._clock()
            if len(self._workers) >= self._config.concurrency:
                head = max(head, self._config.batch_window)  # the workers take what is due
            wait = min(wait, head)
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

    def _start_due(self, now: float) -> None:
        """Start a worker for each job due at `now`, up to `concurrency` workers."""
        while len(self._workers) < self._config.concurrency and not self._stopping.is_set():
            state = self._take(now)
            if state is None:
                return
            worker = asyncio.create_task(self._work(state))
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)

    def _take(self, until: float) -> JobState | None:
        """The next job due at `until`, marked busy (None: nothing is due)."""
        heap = self._heap
        while heap and heap[0][0] <= until:
            due_at, key = heapq.heappop(heap)
            state = self._jobs.get(key)
            if state is None or state.due_at != due_at:
                continue  # unwatched, rescheduled since, or already taken
            state.due_at = math.inf  # taken: duplicate heap entries for this time are skipped
            state.slot = due_at
            if key in self._busy:
                continue  # a poll of this job is in flight; it schedules the next one
            self._busy.add(key)
            return state
        return None

    async def _work(self, state: JobState) -> None:
        """One worker: poll `state`, then each job due meanwhile, until none is due (or
        the poller stops). The polls run in this one task, not in one task each."""
        job: JobState | None = state
        while job is not None:
            try:
                started = time.perf_counter()
                await self._poll(job)
                self._metrics.poll_latency.observe(time.perf_counter() - started)
            except StoreUnavailable as err:  # a read refused: logged once, on the edge
                if job.key in self._jobs:
                    self._on_store_error(job, err)
            except Exception:
                log.exception("unexpected error polling job %s", job.key)
                self._metrics.poll_error("internal").inc()
                if job.key in self._jobs:
                    job.errors += 1
                    self._schedule(job.key, self._next_due(job, self._clock()))
            finally:
                self._busy.discard(job.key)
                self.polls_completed += 1
            if self._stopping.is_set():
                return
            job = self._take(self._clock() if self._tick_at is None else self._tick_at)
        if self._heap and self._heap[0][0] < self._sleep_until:
            self._wake.set()  # its last poll's next time is before the loop's wake-up

    async def tick(self) -> int:
        """Poll everything due now and wait for it (tests drive the poller with this)."""
        now = self._clock()
        self.last_cycle_at = now
        if now >= self._next_resync:
            await self.resync()
        before = self.polls_completed
        self._tick_at = now
        try:
            self._start_due(now)
            await self.drain()
        finally:
            self._tick_at = None
        return self.polls_completed - before

    async def drain(self) -> None:
        """Wait for the workers (each ends once nothing is due, or after its poll once the
        poller is stopping)."""
        while self._workers:
            await asyncio.gather(*list(self._workers), return_exceptions=True)

    def stop(self) -> None:
        self._stopping.set()

    # ----------------------------------------------------------------- one poll
    async def _poll(self, state: JobState) -> None:
        # An unreachable job's next answer is parsed whatever it is: its recovery is news.
        known = None if state.unreachable else state.body_digest
        try:
            answer = await self._source.get_progress_if_changed(state.key, known)
            progress = answer.progress
            job = (
                await self._source.get_training(state.key)
                if progress is not None and is_terminal(progress.status)
                else None
            )
        except MathFiError as err:
            await self._on_error(state, err)
            return
        self._metrics.polls.inc()
        self._health.mathfi_answered()
        now = self._clock()
        if progress is None:  # the very body the current snapshot was made from
            self._unchanged(state, now)
            return
        snapshot = Snapshot.from_api(state.key, progress, job)
        snapshot_json = snapshot.canonical_json()  # serialised once: hashed, then stored
        digest = json_hash(snapshot_json)
        if digest == state.hash and not state.unreachable:
            state.body_digest = answer.digest  # a new body, the same snapshot
            self._unchanged(state, now)
            return
        await self._commit(state, snapshot, snapshot_json, digest, now, body_digest=answer.digest)

    def _unchanged(self, state: JobState, now: float) -> None:
        state.errors, state.failing_since = 0, None
        self._schedule(state.key, self._next_due(state, now))

    async def _commit(
        self,
        state: JobState,
        snapshot: Snapshot,
        snapshot_json: str,
        digest: str,
        now: float,
        *,
        body_digest: bytes,
    ) -> None:
        """Diff, then write snapshot + history + outbox rows in one transaction (shared
        with the other polls that finish in the same turn of the event loop)."""
        previous = state.previous()
        job_events = diff(previous, snapshot)
        if state.unreachable:
            job_events = [job_recovered(state.key), *job_events]
        for event in job_events:
            self._metrics.event(event.kind.value).inc()
        version, recovered = state.version + 1, state.unreachable
        next_poll_at = self._next_due(state, now)
        forecasts: list[ForecastState] = []  # what `prepare` decided, for `_committed`

        def prepare(store: Store) -> PollRecord:  # on the store's thread, with the batch
            forecast, warnings = forecast_step(
                store, self._config, state.forecast, previous, snapshot, now
            )
            for warning in warnings:
                self._metrics.event(warning.kind.value).inc()
            forecasts.append(forecast)
            notifications = fan_out(
                previous,
                snapshot,
                map(recipient, store.subscriptions_for_job(snapshot.job_key)),
                now,
                version=version,
                recovered=recovered,
                warnings=warnings,
            )
            return poll_record(
                previous,
                snapshot,
                snapshot_json=snapshot_json,
                digest=digest,
                now=now,
                next_poll_at=next_poll_at,
                notifications=notifications,
                forecast=None if forecast is state.forecast else forecast,  # None: unchanged
            )

        await self._writer.record(
            prepare,
            written=partial(
                self._committed,
                state,
                snapshot,
                (snapshot_json, digest, body_digest),
                now,
                forecasts,
            ),
            refused=partial(self._on_store_error, state),
        )

    def _committed(
        self,
        state: JobState,
        snapshot: Snapshot,
        forms: tuple[str, str, bytes],
        now: float,
        forecasts: list[ForecastState],
        version: int,
    ) -> None:
        """The poll is in the database: remember it (`forms`: its canonical JSON, hash and
        body digest) and schedule the next one."""
        self._health.store_written()
        if forecasts:
            state.forecast = forecasts[-1]
        state.version = version
        snapshot_json, digest, state.body_digest = forms
        state.remember(snapshot_json, digest, snapshot.status)
        state.errors, state.failing_since, state.unreachable = 0, None, False
        if snapshot.terminal:
            log.info("job %s reached %s; no more polling", state.key, snapshot.status)
            del self._jobs[state.key]
            self._metrics.watched_jobs.set(len(self._jobs))
        else:
            self._schedule(state.key, self._next_due(state, now))

    # ----------------------------------------------------------------- failures
    async def _on_error(self, state: JobState, err: MathFiError) -> None:
        now = self._clock()
        kind = error_kind(err)
        self._metrics.poll_error(kind).inc()
        state.errors += 1
        if state.failing_since is None:
            state.failing_since = now
        self._health.mathfi_failed(err, job_key=state.key, first=state.errors == 1)
        goes_unreachable = lost_for_good(self._config, state, err, now)
        next_at = self._next_due(state, now)
        if state.errors == 1 or goes_unreachable:
            if goes_unreachable:
                self._metrics.event(EventKind.UNREACHABLE.value).inc()
            # The channel hears the kind of trouble only; the details stay in the log.
            lost = Unreachable(state.key, err.public_reason) if goes_unreachable else None
            key, previous, version = state.key, state.previous(), state.version
            unreachable = goes_unreachable or state.unreachable

            def write(store: Store) -> None:  # one turn of the store's thread
                notifications = []
                if lost is not None:
                    subscriptions = map(recipient, store.subscriptions_for_job(key))
                    notifications = fan_out(previous, lost, subscriptions, now, version=version)
                store.record_error(
                    job_key=key,
                    next_poll_at=next_at,
                    unreachable=unreachable,
                    outbox=[outbox_row(n) for n in notifications],
                )

            try:
                await self._store.run(write)
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
        self._metrics.poll_error("database").inc()
        self._health.store_failed(err)
        state.errors += 1
        self._schedule(state.key, self._next_due(state, self._clock()))

    @property
    def mathfi_down(self) -> bool:
        return self._health.mathfi_down
