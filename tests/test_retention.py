"""Retention (issue 16, point 3): the store forgets old sent rows and unwatched jobs in
small batches, gives the free pages back, and migration 2 turns a release-1 file into one
that can. A real SQLite file in tmp_path, a manual clock."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from store import NewOutboxRow, Pruned, Store
from store.migrations import MIGRATIONS, m001_initial, m002_retention
from tests.test_store import ManualClock, poll, row, subscribe

DAY = 86400.0
WEEK = 7 * DAY
MONTH = 30 * DAY


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.db"


@pytest.fixture
def store(db_path: Path, clock: ManualClock) -> Iterator[Store]:
    opened = Store(db_path, clock=clock)
    yield opened
    opened.close()


def states(store: Store) -> dict[str, list[str]]:
    return {
        state: [r.dedupe_key for r in store.rows_in_state(state)]
        for state in ("pending", "sending", "sent", "dead")
    }


def sent(store: Store, keys: list[str], *, job: str = "J1", payload: str = "{}") -> None:
    store.enqueue([row(key, job=job, payload=payload) for key in keys])
    for r in store.rows_in_state("pending"):
        if r.dedupe_key in keys:
            store.mark_sending(r.id)
            store.mark_sent(r.id, ts="1.0")


def prune_all_jobs(store: Store, retention: float = MONTH) -> int:
    count, more = 0, True
    while more:
        batch = store.prune_jobs(retention=retention)
        count, more = count + batch.count, batch.more
    return count


# -- the outbox ---------------------------------------------------------------------------


def test_outbox_batches_are_bounded_and_say_when_more_remain(
    store: Store, clock: ManualClock
) -> None:
    sent(store, [f"s{n}" for n in range(12)])
    store.enqueue([row("waiting")])
    clock.now += WEEK + 1
    batches = [store.prune_outbox(retention=WEEK, limit=5) for _ in range(4)]
    assert batches == [Pruned(5, True), Pruned(5, True), Pruned(2, False), Pruned(0, False)]
    assert states(store) == {"pending": ["waiting"], "sending": [], "sent": [], "dead": []}


def test_sent_and_dead_rows_go_after_the_retention_unsent_rows_never(
    store: Store, clock: ManualClock
) -> None:
    sent(store, ["old-sent"])
    store.enqueue([row("old-dead", channel="C2"), row("old-pending", channel="C3")])
    store.enqueue([row("old-sending", channel="C4")])
    by_key = {r.dedupe_key: r.id for r in store.rows_in_state("pending")}
    store.mark_dead(by_key["old-dead"], error="channel_not_found")
    store.mark_sending(by_key["old-sending"])
    clock.now += WEEK - 10
    sent(store, ["recent-sent"], job="J2")
    clock.now += 11  # the old rows are a week and a second old; the recent one 11 s
    assert store.prune_outbox(retention=WEEK) == Pruned(2, False)
    assert states(store) == {
        "pending": ["old-pending"],
        "sending": ["old-sending"],
        "sent": ["recent-sent"],
        "dead": [],
    }
    clock.now += 10 * 365 * DAY  # however old, a row not yet delivered stays
    assert store.prune_outbox(retention=WEEK) == Pruned(1, False)
    assert states(store)["pending"] == ["old-pending"]
    assert states(store)["sending"] == ["old-sending"]


# -- jobs -----------------------------------------------------------------------------------


def finished_job(store: Store, job: str = "J1", channel: str = "C1") -> None:
    """A job watched in `channel` that ran (history, a card, a sent row) and ended."""
    subscribe(store, channel=channel, job=job)
    store.save_card(channel_id=channel, job_key=job, ts="111.1")
    poll(store, job=job)
    poll(store, job=job, status="COMPLETED", terminal=True, snapshot_hash="hash-done")
    sent(store, [f"watch:{channel}:{job}:0"], job=job)


def test_a_watched_job_keeps_its_history_however_old(store: Store, clock: ManualClock) -> None:
    finished_job(store, "J1", "C1")
    finished_job(store, "J2", "C2")
    store.disable_channel(channel_id="C2", reason="not_in_channel")  # still listed
    clock.now += 10 * MONTH
    assert prune_all_jobs(store) == 0
    for job in ("J1", "J2"):
        assert len(store.history(job)) == 2
        assert store.get_job(job) is not None


def test_an_unwatched_job_is_forgotten_after_the_retention_and_a_resubscribe_works(
    store: Store, clock: ManualClock
) -> None:
    finished_job(store)
    store.db.execute(  # an on-call alert the job raised (issue 17): it goes with the job
        "INSERT INTO alerts (outbox_id, job_key, channel_id, subscription_id, status, "
        "raised_at, pages) VALUES (1, 'J1', 'C1', 1, 'FAILED', ?, 0)",
        (clock.now,),
    )
    assert store.unsubscribe(channel_id="C1", job_key="J1")
    clock.now += WEEK + 1
    store.prune_outbox(retention=WEEK)
    clock.now += MONTH - WEEK - 2
    assert prune_all_jobs(store) == 0  # a second short of the retention
    clock.now += 2
    assert prune_all_jobs(store) == 1
    assert store.get_job("J1") is None and store.history("J1") == []
    assert store.get_card(channel_id="C1", job_key="J1") is None
    assert store.get_subscription(channel_id="C1", job_key="J1") is None
    count = store.db.execute("SELECT count(*) FROM outbox WHERE job_key = 'J1'").fetchone()
    assert count == (0,)
    assert store.db.execute("SELECT count(*) FROM alerts").fetchone() == (0,)

    again = subscribe(store, snapshot_hash="hash-fresh", n=1)
    assert again.active and again.last_best == 0.5
    job = store.get_job("J1")
    assert job is not None and job.snapshot_hash == "hash-fresh" and job.version == 0
    assert [r.dedupe_key for r in store.rows_in_state("pending")] == ["watch:C1:J1:1"]
    update = NewOutboxRow("J1:v1:C1", "C1", "J1", "update", "{}")
    assert poll(store, outbox=[update]) == 1
    assert "J1:v1:C1" in states(store)["pending"]
    assert len(store.history("J1")) == 1


def test_a_job_is_kept_the_retention_after_its_last_watcher_left(
    store: Store, clock: ManualClock
) -> None:
    finished_job(store)
    subscribe(store, channel="C2")
    clock.now += 2 * MONTH  # the job ended long ago, but C2 watched it until now
    store.unsubscribe(channel_id="C1", job_key="J1")
    assert prune_all_jobs(store) == 0  # C2 still watches
    store.unsubscribe_all(channel_id="C2")
    clock.now += MONTH - 1
    assert prune_all_jobs(store) == 0
    clock.now += 2
    assert prune_all_jobs(store) == 1


def test_a_job_with_an_unsent_row_is_kept(store: Store, clock: ManualClock) -> None:
    finished_job(store)
    store.unsubscribe(channel_id="C1", job_key="J1")
    store.enqueue([row("sending", job="J1")])
    (waiting,) = store.rows_in_state("pending")
    store.mark_sending(waiting.id)  # in flight when the channel unsubscribed
    clock.now += 2 * MONTH
    assert prune_all_jobs(store) == 0
    store.mark_sent(waiting.id, ts="2.0")
    assert prune_all_jobs(store) == 1
    assert states(store) == {"pending": [], "sending": [], "sent": [], "dead": []}


def test_job_batches_are_bounded(store: Store, clock: ManualClock) -> None:
    for n in range(5):
        finished_job(store, job=f"J{n}", channel=f"C{n}")
        store.unsubscribe(channel_id=f"C{n}", job_key=f"J{n}")
    finished_job(store, job="kept", channel="C9")
    clock.now += 2 * MONTH
    batches = [store.prune_jobs(retention=MONTH, limit=2) for _ in range(4)]
    assert batches == [Pruned(2, True), Pruned(2, True), Pruned(1, False), Pruned(0, False)]
    assert store.get_job("kept") is not None and len(store.history("kept")) == 2


# -- space --------------------------------------------------------------------------------


def file_bytes(path: Path) -> int:
    return path.stat().st_size


def test_vacuum_gives_the_free_pages_back_and_the_file_shrinks(
    store: Store, clock: ManualClock, db_path: Path
) -> None:
    payload = '{"text": "' + "x" * 4000 + '"}'
    sent(store, [f"s{n}" for n in range(1000)], payload=payload)
    store.vacuum()  # a checkpoint: the rows are in the file now
    before, full = file_bytes(db_path), store.database_size()
    assert full.bytes >= 4_000_000 and full.free_bytes < 100_000
    clock.now += WEEK + 1
    while store.prune_outbox(retention=WEEK).more:
        pass
    freed = store.database_size()
    assert freed.bytes == full.bytes and freed.free_bytes > 3_900_000
    steps = [store.vacuum(pages=400)]
    while steps[-1].more:
        steps.append(store.vacuum(pages=400))
    assert steps[0].count == 400 and len(steps) > 2  # a step frees what it may, no more
    assert all(step.count <= 400 for step in steps)
    after = store.database_size()
    assert after.free_bytes == 0 and after.bytes < full.bytes - 3_900_000
    assert file_bytes(db_path) < before - 3_900_000
    assert store.vacuum() == Pruned(0, False)


# -- migration 2 ----------------------------------------------------------------------------


def release_one(path: Path) -> None:
    """A database as release 1 made it (migration 1 only), with a watched job in it."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    db = Database(conn)
    with conn:
        m001_initial(db)
        db.table("migrations").insert({"number": 1, "name": "m001_initial", "applied_at": 1.0})
    with conn:
        conn.execute(
            "INSERT INTO jobs (job_key, snapshot_json, snapshot_hash, status, next_poll_at, "
            "updated_at, version) VALUES ('J1', '{}', 'h', 'RUNNING', 0, 1000, 3)"
        )
        conn.execute(
            "INSERT INTO subscriptions (channel_id, job_key, created_at) VALUES ('C1', 'J1', 1)"
        )
        conn.executemany(
            "INSERT INTO performance_history (job_key, algorithm, at, value) "
            "VALUES ('J1', 'A', ?, 0.5)",
            [(float(n),) for n in range(100)],
        )
        conn.executemany(
            "INSERT INTO outbox (dedupe_key, channel_id, job_key, kind, payload, state, "
            "next_attempt_at, created_at, updated_at) "
            "VALUES (?, 'C1', 'J1', 'k', ?, 'sent', 0, 0, 0)",
            [(f"d{n}", '"' + "y" * 2000 + '"') for n in range(200)],
        )
    conn.close()


def auto_vacuum(store: Store) -> int:
    return int(store.db.execute("PRAGMA auto_vacuum").fetchone()[0])


def test_migration_2_applies_to_a_release_one_database_with_data(
    db_path: Path, clock: ManualClock
) -> None:
    release_one(db_path)
    store = Store(db_path, clock=clock)
    try:
        numbers = store.db.execute("SELECT number FROM migrations ORDER BY number").fetchall()
        assert numbers == [(number,) for number, _ in MIGRATIONS]  # 2 and every later one
        assert auto_vacuum(store) == 2  # INCREMENTAL: the VACUUM ran after the commit
        job = store.get_job("J1")
        assert job is not None and job.version == 3
        assert len(store.history("J1")) == 100
        assert len(store.rows_in_state("sent")) == 200
        assert store.unsubscribe(channel_id="C1", job_key="J1")
        clock.now += 2 * MONTH
        assert store.prune_outbox(retention=WEEK) == Pruned(200, False)
        assert prune_all_jobs(store) == 1
        while store.vacuum().more:
            pass
        assert store.database_size().free_bytes == 0
    finally:
        store.close()


def test_a_vacuum_left_undone_by_a_crash_runs_at_the_next_open(
    db_path: Path, clock: ManualClock
) -> None:
    release_one(db_path)
    conn = sqlite3.connect(db_path)
    with conn:  # migration 2 committed, then the process died before its VACUUM
        m002_retention(Database(conn))
        conn.execute("INSERT INTO migrations VALUES (2, 'm002_retention', 2.0)")
    assert conn.execute("PRAGMA auto_vacuum").fetchone() == (0,)
    conn.close()
    store = Store(db_path, clock=clock)
    try:
        assert auto_vacuum(store) == 2
    finally:
        store.close()


def test_a_new_database_has_incremental_vacuum_without_a_rewrite(
    db_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="store.migrations")
    store = Store(db_path, clock=clock)
    try:
        assert auto_vacuum(store) == 2
    finally:
        store.close()
    assert "applied migration 2" in caplog.text
    assert "VACUUM" not in caplog.text


def test_a_release_one_database_is_rewritten_once(
    db_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    release_one(db_path)
    caplog.set_level(logging.INFO, logger="store.migrations")
    for _ in range(2):
        Store(db_path, clock=clock).close()
    assert caplog.text.count("VACUUM") == 1
