"""store.Store on a real SQLite file in tmp_path, with a manual clock."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from store import (
    HistoryPoint,
    NewOutboxRow,
    Store,
    StoreUnavailable,
    Subscription,
    SubscriptionLimitReached,
)
from store.migrations import MIGRATIONS


class ManualClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "bot.db"


@pytest.fixture
def store(db_path: Path, clock: ManualClock) -> Iterator[Store]:
    opened = Store(db_path, clock=clock)
    yield opened
    opened.close()


def row(key: str, channel: str = "C1", job: str = "J1", payload: str = "{}") -> NewOutboxRow:
    return NewOutboxRow(dedupe_key=key, channel_id=channel, job_key=job, kind="k", payload=payload)


def subscribe(store: Store, channel: str = "C1", job: str = "J1", **options: Any) -> Subscription:
    arguments: dict[str, Any] = {
        "team_id": "T1",
        "user_id": "U1",
        "min_improvement": 0.005,
        "mention": None,
        "events": "all",
        "snapshot_json": '{"status": "RUNNING"}',
        "snapshot_hash": "hash-0",
        "status": "RUNNING",
        "best_performance": 0.5,
        "best_algorithm": "BSEV01",
        "terminal": False,
        "next_poll_at": 1030.0,
        "watch_row": row(f"watch:{channel}:{job}:{options.pop('n', 0)}", channel, job),
    }
    arguments.update(options)
    subscription, _ = store.subscribe(channel_id=channel, job_key=job, **arguments)
    return subscription


def poll(store: Store, job: str = "J1", **options: Any) -> int:
    arguments: dict[str, Any] = {
        "snapshot_json": '{"status": "RUNNING", "n": 1}',
        "snapshot_hash": "hash-1",
        "status": "RUNNING",
        "best_performance": 0.6,
        "best_algorithm": "BSEV02",
        "terminal": False,
        "next_poll_at": 1060.0,
        "history": [HistoryPoint("BSEV02", 1000.0, 0.6)],
        "outbox": [],
        "last_best": {},
        "improved": True,
    }
    arguments.update(options)
    return store.record_poll(job_key=job, **arguments)


# -- opening and migrations -------------------------------------------------------------


def test_open_creates_dir_wal_and_reopens_idempotently(db_path: Path, clock: ManualClock) -> None:
    first = Store(db_path, clock=clock)
    subscribe(first)
    assert first.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert first.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    first.close()
    clock.now = 5000.0
    second = Store(db_path, clock=clock)
    applied = second.db.execute("SELECT number, applied_at FROM migrations").fetchall()
    assert applied == [(number, 1000.0) for number, _ in MIGRATIONS]
    assert second.get_subscription(channel_id="C1", job_key="J1") is not None
    second.close()


def test_database_and_the_folders_it_creates_are_owner_only(
    tmp_path: Path, clock: ManualClock
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    path = shared / "data" / "nested" / "bot.db"
    before = os.umask(0o022)
    try:
        opened = Store(path, clock=clock)
        subscribe(opened)  # the WAL and its index exist once something is written
        try:
            files = [path, path.with_name("bot.db-wal"), path.with_name("bot.db-shm")]
            assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {
                f.name: 0o600 for f in files
            }
            folders = [path.parent, path.parent.parent]
            assert [stat.S_IMODE(f.stat().st_mode) for f in folders] == [0o700, 0o700]
            assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # it existed: left alone
        finally:
            opened.close()
    finally:
        os.umask(before)


# -- subscriptions ----------------------------------------------------------------------


def test_subscribe_creates_job_baseline_and_watch_row(store: Store) -> None:
    subscription, created = store.subscribe(
        team_id="T1", channel_id="C1", job_key="J1", user_id="U1", min_improvement=0.01,
        mention="<!here>", events="status", snapshot_json="{}", snapshot_hash="h",
        status="PENDING", best_performance=None, best_algorithm=None, terminal=False,
        next_poll_at=1060.0, watch_row=row("watch-1"),
    )  # fmt: skip
    assert created
    assert (subscription.channel_id, subscription.created_by, subscription.events) == (
        "C1",
        "U1",
        "status",
    )
    assert subscription.delivering and subscription.mention == "<!here>"
    job = store.get_job("J1")
    assert job is not None and (job.status, job.next_poll_at, job.version) == ("PENDING", 1060, 0)
    assert [r.dedupe_key for r in store.rows_in_state("pending")] == ["watch-1"]


def test_channels_are_isolated(store: Store) -> None:
    subscribe(store, "C1", "J1")
    subscribe(store, "C1", "J2")
    subscribe(store, "C2", "J1")
    assert [v.subscription.job_key for v in store.list_subscriptions(channel_id="C1")] == [
        "J1",
        "J2",
    ]
    assert not store.unsubscribe(channel_id="C2", job_key="J2")
    assert store.unsubscribe_all(channel_id="C1") == 2
    assert store.list_subscriptions(channel_id="C1") == []
    assert [v.subscription.channel_id for v in store.list_subscriptions(channel_id="C2")] == ["C2"]
    assert store.count_active(channel_id="C1") == 0
    assert store.count_active(channel_id="C2") == 1
    assert store.count_all_active() == 1
    assert [s.channel_id for s in store.subscriptions_for_job("J1")] == ["C2"]


def test_resubscribe_is_one_row(store: Store, clock: ManualClock) -> None:
    first = subscribe(store)
    again, created = store.subscribe(
        team_id="T1", channel_id="C1", job_key="J1", user_id="U2", min_improvement=0.02,
        mention="<@U9>", events="failures", snapshot_json="{}", snapshot_hash="other",
        status="FAILED", best_performance=0.9, best_algorithm="X", terminal=True,
        next_poll_at=0.0, watch_row=row("watch-again"),
    )  # fmt: skip
    assert not created
    assert again.id == first.id and again.created_by == "U1" and again.last_best == 0.5
    assert (again.min_improvement, again.mention, again.events) == (0.02, "<@U9>", "failures")
    job = store.get_job("J1")
    assert job is not None and (job.status, job.snapshot_hash) == ("RUNNING", "hash-0")
    assert store.outbox_counts()["pending"] == 1  # no second watch card
    assert store.unsubscribe(channel_id="C1", job_key="J1")
    assert not store.unsubscribe(channel_id="C1", job_key="J1")
    clock.now = 2000.0
    back = subscribe(store, n=2, best_performance=0.7)
    assert back.id == first.id and back.active and back.last_best == 0.7
    assert back.created_at == 2000.0
    counts = store.outbox_counts()
    assert (counts["pending"], counts["dead"]) == (1, 1)  # the unsent first card was dropped
    rows = store.db.execute("SELECT count(*) FROM subscriptions").fetchone()
    assert rows[0] == 1


def test_disable_channel_keeps_listing_but_stops_delivery(store: Store) -> None:
    subscribe(store, "C1", "J1")
    subscribe(store, "C2", "J1")
    assert store.disable_channel(channel_id="C1", reason="not_in_channel") == 1
    assert store.disable_channel(channel_id="C1", reason="not_in_channel") == 0
    (view,) = store.list_subscriptions(channel_id="C1")
    assert view.subscription.disabled_reason == "not_in_channel"
    assert (view.status, view.best_performance) == ("RUNNING", 0.5)
    assert [s.channel_id for s in store.subscriptions_for_job("J1")] == ["C2"]
    assert [j.job_key for j in store.jobs_to_watch()] == ["J1"]
    store.unsubscribe(channel_id="C2", job_key="J1")
    assert store.jobs_to_watch() == []
    subscribe(store, "C1", "J1")
    sub = store.get_subscription(channel_id="C1", job_key="J1")
    assert sub is not None and sub.disabled_reason is None and sub.delivering


def test_mute_and_unknown_events_filter(store: Store) -> None:
    subscribe(store)
    assert store.set_muted_until(channel_id="C1", job_key="J1", until=4600.0)
    sub = store.get_subscription(channel_id="C1", job_key="J1")
    assert sub is not None and sub.muted_until == 4600.0
    assert store.set_muted_until(channel_id="C1", job_key="J1", until=None)
    assert not store.set_muted_until(channel_id="C9", job_key="J1", until=1.0)
    with pytest.raises(StoreUnavailable, match="events filter"):
        subscribe(store, "C2", events="everything")


def test_jobs_to_watch_skips_terminal_jobs(store: Store) -> None:
    subscribe(store, job="J1")
    subscribe(store, job="J2")
    poll(store, job="J2", status="COMPLETED", terminal=True)
    assert [j.job_key for j in store.jobs_to_watch()] == ["J1"]


# -- polls --------------------------------------------------------------------------------


def test_record_poll_writes_everything(store: Store, clock: ManualClock) -> None:
    sub = subscribe(store)
    store.save_card(channel_id="C1", job_key="J1", ts="111.1")
    store.record_error(job_key="J1", next_poll_at=1030.0, unreachable=True)
    clock.now = 1030.0
    version = poll(store, outbox=[row("p1")], last_best={sub.id: 0.6})
    assert version == 1
    job = store.get_job("J1")
    assert job is not None
    assert (job.version, job.consecutive_errors, job.unreachable) == (1, 0, False)
    assert (job.snapshot_hash, job.best_algorithm, job.last_improvement_at) == (
        "hash-1",
        "BSEV02",
        1030,
    )
    assert store.history("J1") == [HistoryPoint("BSEV02", 1000.0, 0.6)]
    assert store.outbox_counts()["pending"] == 2
    changed = store.get_subscription(channel_id="C1", job_key="J1")
    assert changed is not None and changed.last_best == 0.6
    card = store.get_card(channel_id="C1", job_key="J1")
    assert card is not None and card.dirty and card.card_version == 1
    clock.now = 1060.0
    assert poll(store, history=[], improved=False) == 2
    job = store.get_job("J1")
    assert job is not None and job.last_improvement_at == 1030.0


def test_record_poll_is_atomic(store: Store) -> None:
    sub = subscribe(store)
    store.save_card(channel_id="C1", job_key="J1", ts="111.1")
    with pytest.raises(StoreUnavailable, match="outbox row refused"):
        poll(
            store,
            outbox=[row("good"), row("bad", payload="not json")],
            last_best={sub.id: 0.6},
        )
    job = store.get_job("J1")
    assert job is not None and (job.version, job.snapshot_hash) == (0, "hash-0")
    assert store.history("J1") == []
    assert [r.dedupe_key for r in store.rows_in_state("pending")] == ["watch:C1:J1:0"]
    unchanged = store.get_subscription(channel_id="C1", job_key="J1")
    assert unchanged is not None and unchanged.last_best == 0.5
    card = store.get_card(channel_id="C1", job_key="J1")
    assert card is not None and not card.dirty and card.card_version == 0
    assert poll(store, outbox=[row("good")]) == 1  # the connection is usable afterwards


def test_record_error_counts_and_resets(store: Store) -> None:
    subscribe(store)
    assert store.record_error(job_key="J1", next_poll_at=1100.0, unreachable=False) == 1
    assert (
        store.record_error(
            job_key="J1", next_poll_at=1200.0, unreachable=True, outbox=[row("down")]
        )
        == 2
    )
    job = store.get_job("J1")
    assert job is not None and (job.unreachable, job.next_poll_at, job.version) == (True, 1200, 0)
    assert store.get_outbox_row(2) is not None
    poll(store)
    job = store.get_job("J1")
    assert job is not None and (job.consecutive_errors, job.unreachable) == (0, False)
    assert store.record_error(job_key="nope", next_poll_at=0.0, unreachable=True) == 0


def test_history_filters(store: Store) -> None:
    subscribe(store)
    points = [
        HistoryPoint("A", 10.0, 0.1),
        HistoryPoint("B", 20.0, 0.2),
        HistoryPoint("A", 30.0, 0.3),
    ]
    poll(store, history=points)
    assert store.history("J1") == points
    assert store.history("J1", algorithm="A") == [points[0], points[2]]
    assert store.history("J1", since=20.0) == points[1:]
    assert store.history("J1", algorithm="A", since=20.0) == [points[2]]
    assert store.history("J2") == []


# -- outbox -------------------------------------------------------------------------------


def test_dedupe_keys_are_unique(store: Store) -> None:
    subscribe(store)
    assert store.enqueue([row("a"), row("b"), row("a")]) == 2
    assert store.enqueue([row("a"), row("c")]) == 1
    poll(store, outbox=[row("b"), row("d")])
    keys = [r.dedupe_key for r in store.rows_in_state("pending")]
    assert keys == ["watch:C1:J1:0", "a", "b", "c", "d"]
    assert store.enqueue([]) == 0


def test_due_outbox_keeps_channel_order_behind_a_retrying_head(
    store: Store, clock: ManualClock
) -> None:
    store.enqueue([row("a", "C1"), row("b", "C1"), row("c", "C2")])
    a, b, c = store.rows_in_state("pending")
    assert [r.id for r in store.due_outbox()] == [a.id, c.id]
    store.mark_sending(a.id)
    assert [r.id for r in store.due_outbox()] == [c.id]  # C1's head is in flight
    store.mark_retry(a.id, next_attempt_at=1030.0, error="ratelimited")
    assert [r.id for r in store.due_outbox()] == [c.id]  # b must wait for a
    retried = store.get_outbox_row(a.id)
    assert retried is not None and (retried.state, retried.attempts) == ("pending", 1)
    assert retried.last_error == "ratelimited"
    clock.now = 1030.0
    assert [r.id for r in store.due_outbox()] == [a.id, c.id]
    assert [r.id for r in store.due_outbox(limit=1)] == [a.id]
    store.mark_sending(a.id)
    store.mark_sent(a.id, ts="123.456")
    store.mark_dead(c.id, error="msg_too_long")
    assert [r.id for r in store.due_outbox()] == [b.id]
    sent = store.get_outbox_row(a.id)
    assert sent is not None and (sent.state, sent.slack_ts, sent.attempts) == ("sent", "123.456", 2)
    assert store.due_outbox(now=0.0) == []


def test_dead_channel_rows_and_counts(store: Store) -> None:
    store.enqueue([row("a", "C1"), row("b", "C1"), row("c", "C2"), row("d", "C1")])
    a = store.rows_in_state("pending")[0]
    store.mark_sending(a.id)
    store.mark_sent(a.id, ts="1.0")
    b = store.rows_in_state("pending")[0]
    store.mark_sending(b.id)
    assert store.dead_channel_rows(channel_id="C1", error="channel_not_found") == 2
    assert store.outbox_counts() == {"pending": 1, "sending": 0, "sent": 1, "dead": 2}
    assert {r.last_error for r in store.rows_in_state("dead")} == {"channel_not_found"}
    assert [r.channel_id for r in store.due_outbox()] == ["C2"]
    assert store.get_outbox_row(999) is None


# -- cards --------------------------------------------------------------------------------


def test_card_versions_guard_against_lost_updates(store: Store) -> None:
    subscribe(store)
    assert store.get_card(channel_id="C1", job_key="J1") is None
    store.save_card(channel_id="C1", job_key="J1", ts="111.1")
    card = store.get_card(channel_id="C1", job_key="J1")
    assert card is not None and (card.ts, card.dirty, card.card_version) == ("111.1", False, 0)
    poll(store)
    (stale,) = store.dirty_cards()
    assert stale.card_version == 1
    store.mark_card_dirty(channel_id="C1", job_key="J1")  # changed again while rendering v1
    assert not store.mark_card_clean(channel_id="C1", job_key="J1", card_version=1)
    assert [c.card_version for c in store.dirty_cards()] == [2]
    assert store.mark_card_clean(channel_id="C1", job_key="J1", card_version=2)
    assert store.dirty_cards() == []
    store.save_card(channel_id="C1", job_key="J1", ts="222.2")
    card = store.get_card(channel_id="C1", job_key="J1")
    assert card is not None and (card.ts, card.dirty, card.card_version) == ("222.2", False, 2)


# -- failures -----------------------------------------------------------------------------


def test_locked_database_raises_store_unavailable(db_path: Path, clock: ManualClock) -> None:
    locked = Store(db_path, clock=clock, busy_timeout_ms=50)
    holder = sqlite3.connect(db_path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable, match=r"^database is locked$"):
            subscribe(locked)
        assert not locked.ping()
        assert locked.get_job("J1") is None  # WAL readers still read
        holder.execute("ROLLBACK")
        assert locked.ping()
        subscribe(locked)
    finally:
        holder.close()
        locked.close()


def test_read_only_database_raises_store_unavailable(db_path: Path, clock: ManualClock) -> None:
    Store(db_path, clock=clock).close()
    read_only = Store(f"file:{db_path}?mode=ro", clock=clock)
    try:
        assert read_only.list_subscriptions(channel_id="C1") == []
        with pytest.raises(StoreUnavailable, match=r"^attempt to write a readonly database$"):
            subscribe(read_only)
        with pytest.raises(StoreUnavailable, match="readonly"):
            read_only.enqueue([row("a")])
        assert not read_only.ping()
    finally:
        read_only.close()


def test_closed_store_raises_store_unavailable(store: Store) -> None:
    assert store.ping()
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.count_all_active()
    assert not store.ping()


def test_open_on_a_locked_new_database_raises_store_unavailable(
    db_path: Path, clock: ManualClock
) -> None:
    db_path.parent.mkdir(parents=True)
    holder = sqlite3.connect(db_path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable, match="locked"):
            Store(db_path, clock=clock, busy_timeout_ms=50)
    finally:
        holder.close()
    Store(db_path, clock=clock).close()  # the failed open left nothing half-applied


def test_resubscribing_a_disabled_subscription_starts_afresh_with_a_card(store: Store) -> None:
    subscribe(store, n=1)
    store.mark_sent(store.rows_in_state("pending")[0].id, ts="1.0")
    store.disable_channel(channel_id="C1", reason="the bot is not in this channel")
    again, created = store.subscribe(
        team_id="T1",
        channel_id="C1",
        job_key="J1",
        user_id="U2",
        min_improvement=0.005,
        mention=None,
        events="all",
        snapshot_json="{}",
        snapshot_hash="h",
        status="RUNNING",
        best_performance=None,
        best_algorithm=None,
        terminal=False,
        next_poll_at=0.0,
        watch_row=NewOutboxRow(
            dedupe_key="watch-again",
            channel_id="C1",
            job_key="J1",
            kind="watch_started",
            payload="{}",
        ),
    )
    assert created and again.delivering
    assert [r.dedupe_key for r in store.rows_in_state("pending")] == ["watch-again"]


# -- options kept, limits -----------------------------------------------------------------


def test_resubscribing_changes_only_the_options_given(store: Store) -> None:
    subscribe(store, min_improvement=0.02, mention="<@U9>", events="failures")
    again = subscribe(store, min_improvement=None, mention=None, events=None)
    assert (again.min_improvement, again.mention, again.events) == (0.02, "<@U9>", "failures")
    changed = subscribe(store, min_improvement=None, mention=None, events="status")
    assert (changed.min_improvement, changed.mention, changed.events) == (0.02, "<@U9>", "status")
    store.disable_channel(channel_id="C1", reason="not_in_channel")
    back = subscribe(store, n=1, min_improvement=None, mention=None, events=None)
    assert back.delivering and (back.min_improvement, back.mention) == (0.02, "<@U9>")
    assert store.unsubscribe(channel_id="C1", job_key="J1")
    fresh = subscribe(store, n=2, min_improvement=None, mention=None, events=None)
    assert (fresh.min_improvement, fresh.mention, fresh.events) == (0.005, None, "all")


def test_subscription_limits_refuse_before_writing_anything(store: Store) -> None:
    subscribe(store, "C1", "J1", channel_limit=2)
    subscribe(store, "C1", "J2", channel_limit=2)
    with pytest.raises(SubscriptionLimitReached) as refused:
        subscribe(store, "C1", "J3", channel_limit=2)
    assert (refused.value.scope, refused.value.limit) == ("channel", 2)
    assert store.get_job("J3") is None
    assert [r.job_key for r in store.rows_in_state("pending")] == ["J1", "J2"]
    subscribe(store, "C1", "J2", channel_limit=2, n=1)  # already active: not one more
    subscribe(store, "C2", "J3", channel_limit=2)
    with pytest.raises(SubscriptionLimitReached) as refused:
        subscribe(store, "C3", "J3", channel_limit=2, global_limit=3)
    assert (refused.value.scope, refused.value.limit) == ("global", 3)
    store.unsubscribe(channel_id="C1", job_key="J1")
    subscribe(store, "C3", "J3", channel_limit=2, global_limit=3)
    assert store.count_all_active() == 3


@pytest.mark.parametrize(
    ("channels", "limits", "scope"),
    [
        (["C1"] * 10, {"channel_limit": 3}, "channel"),
        ([f"C{n}" for n in range(10)], {"channel_limit": 3, "global_limit": 3}, "global"),
    ],
)
def test_concurrent_subscribes_cannot_pass_a_limit(
    db_path: Path, clock: ManualClock, channels: list[str], limits: dict[str, int], scope: str
) -> None:
    """Ten connections (as ten processes would) subscribe at once: three get in."""
    Store(db_path, clock=clock).close()
    start = threading.Barrier(len(channels))
    outcomes: list[str] = []

    def one(n: int, channel: str) -> None:
        racer = Store(db_path, clock=clock, busy_timeout_ms=10_000)
        try:
            start.wait()
            subscribe(racer, channel, f"J{n}", **limits)
            outcomes.append("created")
        except SubscriptionLimitReached as err:
            outcomes.append(err.scope)
        finally:
            racer.close()

    threads = [threading.Thread(target=one, args=(n, c)) for n, c in enumerate(channels)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == sorted(["created"] * 3 + [scope] * 7)
    check = Store(db_path, clock=clock)
    assert check.count_all_active() == 3
    check.close()
