"""The poller's workers: at most `concurrency` polls at once, run by that many tasks (not one
task per poll), every due job polled once per slot, and a stop that starts nothing new.

The progress source is a fake implementing the `ProgressSource` protocol (every answer the
body seen before, as on the cheap path); the store is a real `AsyncStore` on a file.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.core.events import EventsFilter
from bot.core.models import Snapshot
from bot.engine.jobs import ProgressAnswer, TrainingJob
from bot.engine.poller import Poller, PollerConfig
from bot.mathfi.client import ProgressReply
from bot.metrics import Metrics
from bot.slack.commands import subscribe_snapshot
from store import AsyncStore, Store
from tests.conftest import ManualClock

KEYS = [f"job-{i:02d}" for i in range(20)]


class HeldSource:
    """Answers every poll with "unchanged" once `gate` is open; records who polled what."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.in_flight: set[str] = set()
        self.peak = 0
        self.polls: Counter[str] = Counter()
        self.tasks: set[asyncio.Task[object] | None] = set()
        self.by_task: dict[str, asyncio.Task[object] | None] = {}
        self.overlapped: list[str] = []  # a job polled while a poll of it was in flight
        self.changed = asyncio.Event()  # set at each poll's start and end

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self.changed.clear()
            await self.changed.wait()

    async def get_progress_if_changed(
        self, key: str, previous_digest: bytes | None
    ) -> ProgressAnswer:
        if key in self.in_flight:
            self.overlapped.append(key)
        self.in_flight.add(key)
        self.peak = max(self.peak, len(self.in_flight))
        self.polls[key] += 1
        task = asyncio.current_task()
        self.tasks.add(task)
        self.by_task[key] = task
        self.changed.set()
        try:
            await asyncio.sleep(0)
            await self.gate.wait()
            await asyncio.sleep(0)
        finally:
            self.in_flight.discard(key)
            self.changed.set()
        return ProgressReply(b"the same body", None)

    async def get_training(self, key: str) -> TrainingJob:
        raise AssertionError("never asked: no progress was parsed")


def subscribe(sync: Store, key: str) -> None:
    subscribe_snapshot(
        sync,
        Snapshot(job_key=key, status="RUNNING"),
        team_id="T0TEST",
        channel_id=f"C{key}",
        user_id="U0TEST",
        min_improvement=0.005,
        mention=None,
        events=EventsFilter.ALL,
        next_poll_at=0.0,
        now=0.0,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AsyncStore]:
    store = await AsyncStore.open(tmp_path / "bot.db")
    await store.run(lambda sync: [subscribe(sync, key) for key in KEYS])
    try:
        yield store
    finally:
        await store.close()


def poller_of(store: AsyncStore, source: HeldSource, **config: float) -> Poller:
    options = {"interval": 10.0, "jitter": 0.0, "concurrency": 4, "resync_every": 1e9} | config
    return Poller(
        store,
        source,
        config=PollerConfig(**options),  # type: ignore[arg-type]
        metrics=Metrics(),
        clock=ManualClock(),
    )


async def test_due_jobs_are_polled_once_each_by_at_most_concurrency_tasks(
    store: AsyncStore,
) -> None:
    source = HeldSource()
    poller = poller_of(store, source)
    for key in KEYS:
        await poller.watch(key)
    assert await poller.tick() == len(KEYS)
    assert source.polls == Counter(KEYS)  # none lost, none doubled
    assert source.peak == 4 and not source.overlapped
    assert len(source.tasks) == 4  # four workers took the twenty jobs in turn
    assert await poller.tick() == 0  # nothing is due before the next slot
    poller._clock.advance(10.0)  # type: ignore[attr-defined]
    assert await poller.tick() == len(KEYS)
    assert source.polls == Counter({key: 2 for key in KEYS})


async def test_under_run_the_polls_never_exceed_the_concurrency_or_overlap(
    store: AsyncStore,
) -> None:
    source = HeldSource()
    poller = Poller(
        store,
        source,
        config=PollerConfig(interval=0.001, jitter=0.0, concurrency=4, resync_every=1e9),
        metrics=Metrics(),
    )
    for key in KEYS:
        await poller.watch(key)
    running = asyncio.create_task(poller.run())
    await source.until(lambda: sum(source.polls.values()) >= 10 * len(KEYS))
    poller.stop()
    await asyncio.wait_for(running, 5.0)
    assert source.peak <= 4 and not source.overlapped
    counts = [source.polls[key] for key in KEYS]
    assert min(counts) >= 5  # every job in turn, none starved
    assert sum(counts) == poller.polls_completed


async def test_a_job_due_while_every_worker_is_busy_goes_to_the_next_free_worker(
    store: AsyncStore,
) -> None:
    source = HeldSource()
    source.gate.clear()
    poller = poller_of(store, source, concurrency=2)
    for key in KEYS[:2]:
        await poller.watch(key)
    ticking = asyncio.create_task(poller.tick())
    await source.until(lambda: len(source.in_flight) == 2)
    await store.run(lambda sync: subscribe(sync, "late"))
    await poller.watch("late")  # due now; both workers are busy
    await asyncio.sleep(0.01)
    assert source.polls["late"] == 0
    source.gate.set()
    assert await ticking == 3
    assert source.by_task["late"] in {source.by_task[key] for key in KEYS[:2]}
    assert len(source.tasks) == 2


async def test_stop_finishes_the_polls_in_flight_and_starts_no_other(store: AsyncStore) -> None:
    source = HeldSource()
    source.gate.clear()
    poller = Poller(
        store,
        source,
        config=PollerConfig(interval=10.0, jitter=0.0, concurrency=4, resync_every=1e9),
        metrics=Metrics(),
    )
    for key in KEYS:
        await poller.watch(key)
    running = asyncio.create_task(poller.run())
    await source.until(lambda: len(source.in_flight) == 4)
    poller.stop()
    source.gate.set()
    await asyncio.wait_for(running, 5.0)
    assert sum(source.polls.values()) == 4 and poller.polls_completed == 4
    assert not source.in_flight
