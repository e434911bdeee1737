"""The service's retention loop (bot/engine/retention.py) over the async store: it prunes
in batches, sets `mathfi_database_bytes`, survives a refusing database and stops at once."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bot.engine.retention import Retention, RetentionConfig
from bot.metrics import Metrics
from store import AsyncStore, Store
from tests.test_retention import DAY, WEEK, sent
from tests.test_retention_compact import history_rows, run_job
from tests.test_store import ManualClock


def gauge(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("mathfi_database_bytes")
    assert value is not None
    return value


async def test_a_round_prunes_old_sent_rows_in_batches_and_sets_the_size(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    path = tmp_path / "bot.db"
    setup = Store(path, clock=clock)
    sent(setup, [f"old-{n}" for n in range(1200)])  # more than two batches of 500
    setup.close()
    clock.now += WEEK + DAY
    store = await AsyncStore.open(path, clock=clock)
    try:
        metrics = Metrics()
        retention = Retention(
            store,
            config=RetentionConfig(outbox_retention=WEEK, job_retention=30 * DAY),
            metrics=metrics,
        )
        with caplog.at_level(logging.INFO, logger="bot.engine.retention"):
            rows = (await retention.round()).rows
        assert rows == 1200
        assert not await store.rows_in_state("sent")
        assert gauge(metrics) == (await store.database_size()).bytes > 0
        assert "deleted 1200 sent notifications" in caplog.text
        assert await retention.round() == (0, 0, 0)  # nothing left: nothing said
    finally:
        await store.close()


async def test_a_round_compacts_jobs_finished_for_the_outbox_retention_in_batches(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    path = tmp_path / "bot.db"
    setup = Store(path, clock=clock)
    for n in range(120):  # more than two batches of 50
        run_job(setup, clock, f"J{n:03d}", polls=3)
    clock.now += WEEK
    run_job(setup, clock, "LATE", polls=3)  # the others finished a week and a bit ago
    before = setup.history("J000")
    setup.close()
    store = await AsyncStore.open(path, clock=clock)
    try:
        retention = Retention(
            store,
            config=RetentionConfig(outbox_retention=WEEK, job_retention=30 * DAY),
            metrics=Metrics(),
        )
        with caplog.at_level(logging.INFO, logger="bot.engine.retention"):
            done = await retention.round()
        assert done.compacted == 120  # "LATE" finished less than a week ago
        assert "compacted 120 finished jobs" in caplog.text
        assert await store.history("J000") == before
        assert await store.run(lambda db: history_rows(db, "J119")) == 0  # in the archive
        assert await store.run(lambda db: history_rows(db, "LATE")) == 7  # left whole
    finally:
        await store.close()


async def test_the_loop_waits_runs_and_stops_promptly(tmp_path: Path) -> None:
    store = await AsyncStore.open(tmp_path / "bot.db", clock=ManualClock())
    waits: list[float] = []
    parked = asyncio.Event()

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:  # the third wait lasts until stop()
            parked.set()
            await asyncio.Event().wait()

    metrics = Metrics()
    retention = Retention(
        store,
        config=RetentionConfig(outbox_retention=WEEK, job_retention=30 * DAY, every=3600.0),
        metrics=metrics,
        sleep=sleep,
    )
    task = asyncio.create_task(retention.run())
    try:
        await asyncio.wait_for(parked.wait(), timeout=2.0)
        assert waits == [60.0, 3600.0, 3600.0]  # first shortly after start, then every hour
        assert gauge(metrics) > 0  # two rounds ran
        retention.stop()
        await asyncio.wait_for(task, timeout=1.0)  # stops while it sleeps
    finally:
        task.cancel()
        await store.close()


async def test_a_refusing_database_skips_the_round_and_the_loop_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await AsyncStore.open(tmp_path / "bot.db", clock=ManualClock())
    await store.close()  # every call now refuses with StoreUnavailable
    calls = 0

    async def sleep(seconds: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            retention.stop()
        await asyncio.sleep(0)

    retention = Retention(
        store,
        config=RetentionConfig(outbox_retention=WEEK, job_retention=30 * DAY),
        metrics=Metrics(),
        sleep=sleep,
    )
    with caplog.at_level(logging.WARNING, logger="bot.engine.retention"):
        await asyncio.wait_for(retention.run(), timeout=2.0)
    assert caplog.text.count("retention round skipped") == 2
