"""Compaction of finished jobs (issue #16): once a job has been terminal for the outbox
retention, its snapshot and the history its card draws go into one archive row and its
other history rows go; every read of the store answers as before. A real SQLite file in
tmp_path, a manual clock."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.core.sparkline import sparkline
from store import HistoryPoint, Pruned, Store
from store.compact import TAIL_POINTS, newest, pack, unpack
from tests.test_retention import DAY, MONTH, WEEK, prune_all_jobs, sent
from tests.test_store import ManualClock, poll, row, subscribe

ALGORITHMS = ("BSEV01", "BSEV02", "BSIX01")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(tmp_path: Path, clock: ManualClock) -> Iterator[Store]:
    opened = Store(tmp_path / "bot.db", clock=clock)
    yield opened
    opened.close()


def run_job(
    store: Store, clock: ManualClock, job: str, *, polls: int = 20, final: str = "COMPLETED"
) -> None:
    """A job watched from C1, polled `polls` times (a point per algorithm each, BSIX01 only
    every third poll), the last poll finishing it with `final` ("RUNNING": still running)."""
    subscribe(store, job=job, snapshot_json=f'{{"job": "{job}", "v": 0}}')
    for n in range(1, polls + 1):
        clock.now += 30
        terminal = n == polls and final != "RUNNING"
        status = final if terminal else "RUNNING"
        points = [
            HistoryPoint(name, clock.now, round(0.5 + n * 0.01 + i * 0.001, 6))
            for i, name in enumerate(ALGORITHMS)
            if name != "BSIX01" or n % 3 == 0
        ]
        poll(
            store,
            job=job,
            snapshot_json=f'{{"job": "{job}", "v": {n}, "status": "{status}"}}',
            snapshot_hash=f"{job}:{n}",
            status=status,
            terminal=terminal,
            history=points,
        )
    send_all(store)


def send_all(store: Store) -> None:
    """The sender: every queued row (here, each subscription's watch row) is sent."""
    for queued in store.rows_in_state("pending"):
        store.mark_sending(queued.id)
        store.mark_sent(queued.id, ts="1.0")


def compact_all(store: Store, *, after: float = WEEK) -> int:
    count, more = 0, True
    while more:
        batch = store.compact_jobs(after=after)
        count, more = count + batch.count, batch.more
    return count


def history_rows(store: Store, job: str) -> int:
    return int(
        store.db.execute(
            "SELECT count(*) FROM performance_history WHERE job_key = ?", (job,)
        ).fetchone()[0]
    )


def archived(store: Store, job: str) -> bool:
    found = store.db.execute("SELECT 1 FROM job_archive WHERE job_key = ?", (job,)).fetchone()
    return found is not None


def test_the_tail_is_what_the_card_sparkline_draws() -> None:
    width = inspect.signature(sparkline).parameters["width"].default
    assert width == TAIL_POINTS


def test_pack_keeps_the_snapshot_and_the_points_exactly() -> None:
    points = [
        HistoryPoint("B", 1.5, 0.1),
        HistoryPoint("A", 1.5, 1 / 3),
        HistoryPoint("B", 2.0, 0.30000000000000004),
    ]
    snapshot = '{"job_key": "J1", "status": "COMPLETED", "name": "é"}'
    assert unpack(pack(snapshot, points)) == (snapshot, points)
    assert unpack(pack(snapshot, [])) == (snapshot, [])


def test_newest_keeps_the_last_points_of_each_algorithm_in_order() -> None:
    points = [HistoryPoint(name, float(t), t / 10) for t in range(6) for name in ("A", "B")]
    points.append(HistoryPoint("C", 9.0, 1.0))
    assert newest(points, 2) == [
        HistoryPoint("A", 4.0, 0.4),
        HistoryPoint("B", 4.0, 0.4),
        HistoryPoint("A", 5.0, 0.5),
        HistoryPoint("B", 5.0, 0.5),
        HistoryPoint("C", 9.0, 1.0),
    ]


def test_a_job_finished_for_the_outbox_retention_keeps_its_snapshot_and_card_history(
    store: Store, clock: ManualClock
) -> None:
    run_job(store, clock, "J1")
    before_job, before_history = store.get_job("J1"), store.history("J1")
    clock.now += WEEK + 1
    assert compact_all(store) == 1

    after = store.get_job("J1")
    assert after == before_job  # every column, the snapshot byte for byte, updated_at too
    assert history_rows(store, "J1") == 0 and archived(store, "J1")
    kept = store.history("J1")
    assert kept == newest(before_history, TAIL_POINTS)
    for name in ALGORITHMS:  # what the card draws: the last 12 values of each algorithm
        values = [p.value for p in before_history if p.algorithm == name]
        assert [p.value for p in kept if p.algorithm == name] == values[-TAIL_POINTS:]
    assert len([p for p in kept if p.algorithm == "BSIX01"]) == 6  # had only 6: all kept
    assert store.history("J1", algorithm="BSEV02") == [p for p in kept if p.algorithm == "BSEV02"]
    since = kept[-1].at
    assert store.history("J1", since=since) == [p for p in kept if p.at >= since]
    assert compact_all(store) == 0  # once


def test_running_recent_and_unsent_jobs_are_left_whole(store: Store, clock: ManualClock) -> None:
    run_job(store, clock, "RUNNING", final="RUNNING")
    run_job(store, clock, "OLD")
    run_job(store, clock, "UNSENT")
    clock.now += WEEK + 1
    run_job(store, clock, "RECENT")  # finished a moment ago
    store.enqueue([row("late", job="UNSENT")])  # still to send: the job is left whole
    whole = {key: (store.get_job(key), store.history(key)) for key in ("RUNNING", "UNSENT")}
    whole["RECENT"] = (store.get_job("RECENT"), store.history("RECENT"))

    assert compact_all(store) == 1
    assert archived(store, "OLD") and history_rows(store, "OLD") == 0
    for key, (job, history) in whole.items():
        assert (store.get_job(key), store.history(key)) == (job, history)
        assert not archived(store, key) and history_rows(store, key) == len(history)


def test_a_watched_finished_job_answers_status_list_digest_and_home_the_same(
    store: Store, clock: ManualClock
) -> None:
    run_job(store, clock, "J1")
    subscribe(store, channel="DM1", job="J1", owner_user_id="U1")  # a personal follow
    send_all(store)
    store.set_digest(channel_id="C1", team_id="T1", daily_at="09:00", tz="UTC", user_id="U1")

    def answers() -> tuple[object, ...]:
        return (
            store.get_job("J1"),
            store.list_subscriptions(channel_id="C1"),
            store.subscriptions_for_job("J1"),
            store.digest_jobs(channel_id="C1"),
            store.home_items("U1"),
            store.followers("J1"),
            store.get_card(channel_id="C1", job_key="J1"),
        )

    before = answers()
    assert before[0] is not None and before[0].snapshot_json.startswith('{"job": "J1"')
    clock.now += WEEK + 1
    assert compact_all(store) == 1
    assert answers() == before


def test_batches_are_bounded_and_say_when_more_remain(store: Store, clock: ManualClock) -> None:
    for n in range(5):
        run_job(store, clock, f"J{n}", polls=2)
    clock.now += WEEK + 1
    batches = [store.compact_jobs(after=WEEK, limit=2) for _ in range(4)]
    assert batches == [Pruned(2, True), Pruned(2, True), Pruned(1, False), Pruned(0, False)]


def test_a_resubscribe_after_compaction_takes_the_fresh_snapshot_and_compacts_again(
    store: Store, clock: ManualClock
) -> None:
    run_job(store, clock, "J1")
    store.unsubscribe(channel_id="C1", job_key="J1")
    clock.now += WEEK + 1
    compact_all(store)
    tail = store.history("J1")

    # nobody watches it: the fresh snapshot becomes the baseline, the old points stay
    subscribe(store, job="J1", snapshot_json='{"fresh": 1}', n=1, terminal=True)
    job = store.get_job("J1")
    assert job is not None and job.snapshot_json == '{"fresh": 1}'
    assert store.history("J1") == tail
    later = HistoryPoint("BSEV01", clock.now + 1, 0.99)
    poll(store, job="J1", snapshot_json='{"fresh": 2}', terminal=True, history=[later])
    assert store.history("J1") == [*tail, later]
    send_all(store)

    clock.now += WEEK + 1
    assert compact_all(store) == 1
    job = store.get_job("J1")
    assert job is not None and job.snapshot_json == '{"fresh": 2}'
    assert store.history("J1") == newest([*tail, later], TAIL_POINTS)
    assert history_rows(store, "J1") == 0


def test_a_compacted_job_is_still_forgotten_after_the_job_retention(
    store: Store, clock: ManualClock
) -> None:
    run_job(store, clock, "J1")
    sent(store, ["final"], job="J1")
    store.unsubscribe(channel_id="C1", job_key="J1")
    clock.now += WEEK + 1
    assert store.prune_outbox(retention=WEEK).count == 2  # the watch row and the final one
    assert compact_all(store) == 1
    clock.now += MONTH
    assert prune_all_jobs(store) == 1
    assert store.get_job("J1") is None and not archived(store, "J1")
    assert store.history("J1") == []


def test_compaction_gives_pages_back(store: Store, clock: ManualClock) -> None:
    """Without moving each row (an UPDATE shrinks it in place), the jobs' pages stayed."""
    big = "x" * 1500
    for n in range(60):
        job = f"J{n:03d}"
        subscribe(store, job=job, snapshot_json=f'{{"job": "{job}", "pad": "{big}{n}"}}')
        clock.now += 1
        poll(store, job=job, terminal=True, status="COMPLETED", snapshot_json=f'"{big}{n}"')
    send_all(store)
    clock.now += WEEK + DAY
    jobs_pages = "SELECT count(*) FROM dbstat WHERE name = 'jobs'"
    before = store.db.execute(jobs_pages).fetchone()[0]
    compact_all(store)
    after = store.db.execute(jobs_pages).fetchone()[0]
    assert after <= before / 3
    job = store.get_job("J007")
    assert job is not None and job.snapshot_json == f'"{big}7"'


def test_the_archive_row_is_small(store: Store, clock: ManualClock) -> None:
    run_job(store, clock, "J1", polls=60)
    clock.now += WEEK + 1
    compact_all(store)
    (size,) = store.db.execute("SELECT length(data) FROM job_archive").fetchone()
    assert size < 600  # 12 points of 2 algorithms, 12 (of 20) of the third, a snapshot
    assert len(store.history("J1")) == 3 * TAIL_POINTS
