"""store.AsyncStore: the Store on its own thread, awaited from the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from store import AsyncStore, NewOutboxRow, Store, StoreUnavailable, SubscriptionLimitReached


def row(key: str, payload: str = "{}") -> NewOutboxRow:
    return NewOutboxRow(dedupe_key=key, channel_id="C1", job_key="J1", kind="k", payload=payload)


async def subscribe(store: AsyncStore, job: str, *, channel_limit: int | None = None) -> None:
    await store.subscribe(
        team_id="T1", channel_id="C1", job_key=job, user_id="U1", snapshot_json="{}",
        snapshot_hash="h", status="RUNNING", best_performance=None, best_algorithm=None,
        terminal=False, next_poll_at=0.0, watch_row=row(f"watch:{job}"),
        channel_limit=channel_limit,
    )  # fmt: skip


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[AsyncStore]:
    opened = await AsyncStore.open(db_path, clock=lambda: 1000.0)
    yield opened
    await opened.close()


def store_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "store"]


def test_every_store_method_is_there_with_its_signature() -> None:
    public = [name for name, _ in inspect.getmembers(Store, inspect.isfunction)]
    public = [name for name in public if not name.startswith("_")]
    assert len(public) > 30
    for name in public:
        awaited = getattr(AsyncStore, name)
        assert inspect.iscoroutinefunction(awaited), name
        if name != "close":
            assert awaited.__wrapped__ is getattr(Store, name), name
            assert inspect.signature(awaited) == inspect.signature(getattr(Store, name))


async def test_calls_run_in_order_on_one_thread(store: AsyncStore) -> None:
    keys = [f"k{n:02}" for n in range(30)]
    inserted = await asyncio.gather(*(store.enqueue([row(key)]) for key in keys))
    assert inserted == [1] * 30
    assert [r.dedupe_key for r in await store.rows_in_state("pending")] == keys
    threads = {await store.run(lambda _: threading.get_ident()) for _ in range(3)}
    assert len(threads) == 1 and threading.get_ident() not in threads
    assert await store.run(lambda s: s.enqueue([row("a"), row("b")]) + s.outbox_counts()["pending"])
    assert await store.ping()


async def test_exceptions_cross_back_and_the_store_goes_on(store: AsyncStore) -> None:
    with pytest.raises(StoreUnavailable, match="outbox row refused") as refused:
        await store.enqueue([row("good"), row("bad", payload="not json")])
    assert isinstance(refused.value.__cause__, sqlite3.IntegrityError)
    await subscribe(store, "J1", channel_limit=1)
    with pytest.raises(SubscriptionLimitReached):
        await subscribe(store, "J2", channel_limit=1)
    with pytest.raises(ZeroDivisionError):
        await store.run(lambda _: 1 / 0)
    assert await store.count_all_active() == 1
    assert await store.enqueue([row("good")]) == 1


async def test_concurrent_subscribes_through_the_thread_respect_the_limit(
    store: AsyncStore,
) -> None:
    outcomes = await asyncio.gather(
        *(subscribe(store, f"J{n}", channel_limit=3) for n in range(10)), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, SubscriptionLimitReached)]
    assert (outcomes.count(None), len(refused)) == (3, 7)
    assert await store.count_active(channel_id="C1") == 3


async def test_close_finishes_queued_calls_then_joins_the_thread(db_path: Path) -> None:
    store = await AsyncStore.open(db_path)
    assert len(store_threads()) == 1
    queued = [asyncio.ensure_future(store.enqueue([row(f"k{n}")])) for n in range(5)]
    await asyncio.sleep(0)  # each task has made its call
    await store.close()
    assert [await call for call in queued] == [1] * 5
    assert store_threads() == []
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.outbox_counts()
    await store.close()  # twice is fine
    reopened = Store(db_path)
    assert reopened.outbox_counts()["pending"] == 5
    reopened.close()


async def test_a_call_cancelled_before_it_starts_is_skipped(store: AsyncStore) -> None:
    release = threading.Event()
    busy = asyncio.ensure_future(store.run(lambda _: release.wait(5)))
    await asyncio.sleep(0.05)  # the thread is inside `busy`
    skipped = asyncio.ensure_future(store.enqueue([row("never")]))
    await asyncio.sleep(0)
    skipped.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await skipped
    release.set()
    assert await busy
    assert (await store.outbox_counts())["pending"] == 0
    assert skipped.cancelled()


async def test_a_failed_open_raises_and_leaves_no_thread(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreUnavailable, match="cannot create"):
        await AsyncStore.open(tmp_path / "file" / "bot.db")
    assert store_threads() == []


async def ticking(gaps: list[float], stop: asyncio.Event) -> None:
    last = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.monotonic()
        gaps.append(now - last)
        last = now


async def test_a_lock_held_by_another_process_does_not_block_the_loop(db_path: Path) -> None:
    store = await AsyncStore.open(db_path, busy_timeout_ms=2000)
    holder = sqlite3.connect(db_path, isolation_level=None)
    gaps: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.ensure_future(ticking(gaps, stop))
    try:
        holder.execute("BEGIN EXCLUSIVE")
        asyncio.get_running_loop().call_later(0.4, holder.execute, "ROLLBACK")
        started = time.monotonic()
        assert await store.enqueue([row("waited")]) == 1  # waited on the lock, then wrote
        assert time.monotonic() - started >= 0.35
        assert len(gaps) >= 20 and max(gaps) < 0.1

        gaps.clear()
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"^database is locked$"):
            await store.enqueue([row("refused")])
        assert time.monotonic() - started >= 1.9
        assert len(gaps) >= 100 and max(gaps) < 0.1
        holder.execute("ROLLBACK")
        assert [r.dedupe_key for r in await store.rows_in_state("pending")] == ["waited"]
    finally:
        stop.set()
        await ticker
        holder.close()
        await store.close()
