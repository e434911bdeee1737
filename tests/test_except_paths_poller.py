"""The poller's `except` branches that no real MathFi or database fault reaches (issue #20).

The progress source is a fake that implements the `ProgressSource` protocol and raises; the
store is a real `AsyncStore` on the service's database file, closed when the test needs it
to refuse. Each test checks what the branch is for: the loop goes on, the job stays
scheduled, the log says it once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from bot.engine.jobs import ProgressAnswer, TrainingJob
from bot.engine.poller import Poller, PollerConfig
from bot.errors import MathFiUnavailable
from bot.metrics import Metrics
from store import AsyncStore, StoreUnavailable
from tests.conftest import Env
from tests.scripts import LIFECYCLE

CONFIG = PollerConfig(
    interval=10.0, jitter=0.0, concurrency=2, unreachable_after=60.0, resync_every=3600.0
)


class RaisingSource:
    """A `ProgressSource` whose every poll raises `error` (and counts the calls)."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    async def get_progress_if_changed(
        self, key: str, previous_digest: bytes | None
    ) -> ProgressAnswer:
        self.calls += 1
        raise self.error

    async def get_training(self, key: str) -> TrainingJob:
        raise AssertionError("never asked: no progress was read")


@pytest.fixture
async def watched(env: Env) -> str:
    """A job one channel subscribed to (its record and subscription are in the database)."""
    key = env.sim.script_job(LIFECYCLE)
    status, _, url = await env.command(f"subscribe {key}")
    assert status == 200
    await env.reply(url)
    return key


@pytest.fixture
async def second_store(env: Env) -> AsyncIterator[AsyncStore]:
    """Another AsyncStore on the service's file, for a poller of the test's own."""
    store = await AsyncStore.open(env.service.settings.database_path, clock=env.clock)
    try:
        yield store
    finally:
        await store.close()


def errors_of(metrics: Metrics, kind: str) -> float:
    value = metrics.registry.get_sample_value("mathfi_poll_errors_total", {"kind": kind})
    return value or 0.0


async def test_a_cycle_that_fails_is_logged_and_the_loop_goes_on(
    env: Env, second_store: AsyncStore, caplog: pytest.LogCaptureFixture
) -> None:
    await second_store.close()  # every resync is refused
    slept: list[float] = []
    poller = Poller(
        second_store, RaisingSource(RuntimeError("unused")), config=CONFIG, metrics=Metrics()
    )

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:
            poller.stop()

    poller._sleep = sleep
    with caplog.at_level(logging.ERROR, logger="bot.engine.poller"):
        await poller.run()
    failed = [r for r in caplog.records if r.getMessage() == "poller cycle failed; continuing"]
    assert len(failed) == 2  # the first failure did not end the loop
    assert slept == [1.0, 1.0]  # it waits a second before trying again
    assert failed[0].exc_info is not None and "closed" in str(failed[0].exc_info[1])


async def test_a_bug_while_polling_one_job_is_logged_and_the_job_stays_scheduled(
    env: Env, watched: str, second_store: AsyncStore, caplog: pytest.LogCaptureFixture
) -> None:
    source, metrics = RaisingSource(RuntimeError("a bug of our own")), Metrics()
    poller = Poller(second_store, source, config=CONFIG, metrics=metrics, clock=env.clock)
    with caplog.at_level(logging.ERROR, logger="bot.engine.poller"):
        await poller.resync()
        env.clock.advance(60.0)  # the job's first poll is due
        assert await poller.tick() == 1
        env.clock.advance(3600.0)  # well past any backoff
        assert await poller.tick() == 1
    assert source.calls == 2  # polled again: the bug did not drop the job
    assert poller.watched == 1
    assert errors_of(metrics, "internal") == 2
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"unexpected error polling job {watched}"] * 2


async def test_a_source_whose_store_refuses_counts_a_database_error(
    env: Env, watched: str, second_store: AsyncStore
) -> None:
    source, metrics = RaisingSource(StoreUnavailable("database is locked")), Metrics()
    poller = Poller(second_store, source, config=CONFIG, metrics=metrics, clock=env.clock)
    await poller.resync()
    env.clock.advance(60.0)
    assert await poller.tick() == 1
    assert errors_of(metrics, "database") == 1 and errors_of(metrics, "internal") == 0
    assert poller.watched == 1
    env.clock.advance(3600.0)
    assert await poller.tick() == 1 and source.calls == 2


async def test_mathfi_failing_while_the_database_refuses_keeps_the_job_scheduled(
    env: Env, watched: str, second_store: AsyncStore
) -> None:
    source, metrics = RaisingSource(MathFiUnavailable("down", status=503)), Metrics()
    poller = Poller(second_store, source, config=CONFIG, metrics=metrics, clock=env.clock)
    await poller.resync()  # the job is adopted while the store still answers
    assert poller.watched == 1
    await second_store.close()  # the first failure's record_error is refused
    env.clock.advance(60.0)
    assert await poller.tick() == 1
    assert source.calls == 1
    assert errors_of(metrics, "database") == 1  # the refused write, after the MathFi error
    assert poller.watched == 1
    assert poller._jobs[watched].errors == 2  # MathFi's failure and the database's
    env.clock.advance(1000.0)  # past the backoff, before the next resync
    assert await poller.tick() == 1 and source.calls == 2  # still polled
