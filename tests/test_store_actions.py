"""store: the `actions` table (migration 3) and its typed methods, on a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from store import ActionRecord, AsyncStore, Store, StoreUnavailable
from store.migrations import MIGRATIONS, apply_migrations


class ManualClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(tmp_path: Path, clock: ManualClock) -> Iterator[Store]:
    opened = Store(tmp_path / "bot.db", clock=clock)
    yield opened
    opened.close()


def begin(store: Store, key: str = "T1:U1:1.1", **overrides: Any) -> tuple[ActionRecord, bool]:
    values: dict[str, Any] = {
        "idempotency_key": key,
        "kind": "start",
        "team_id": "T1",
        "channel_id": "C1",
        "user_id": "U1",
        "subject_key": "DS1",
        "parameters": '{"target": 0.85}',
    }
    values.update(overrides)
    return store.begin_action(**values)


def test_migration_3_is_listed_after_1_and_the_runner_applies_the_gap(store: Store) -> None:
    assert [number for number, _ in MIGRATIONS][:1] == [1]
    assert 3 in dict(MIGRATIONS)
    applied = {row[0] for row in store.db.execute("SELECT number FROM migrations")}
    assert applied == {number for number, _ in MIGRATIONS}
    assert apply_migrations(store.db, now=2000.0) == []  # nothing pending: nothing written


def test_begin_writes_a_requested_row_and_a_second_begin_returns_it(
    store: Store, clock: ManualClock
) -> None:
    first, created = begin(store)
    assert created
    assert (first.state, first.kind, first.user_id, first.subject_key) == (
        "requested", "start", "U1", "DS1",
    )  # fmt: skip
    assert (first.created_at, first.updated_at, first.answer, first.result_job_key) == (
        1000.0, 1000.0, None, None,
    )  # fmt: skip
    clock.now = 1001.0
    again, created_again = begin(store, parameters='{"target": 0.5}', user_id="U2")
    assert not created_again and again == first  # the first row, untouched
    assert store.recent_actions() == [first]


def test_finish_moves_requested_once_and_keeps_the_final_state(
    store: Store, clock: ManualClock
) -> None:
    row, _ = begin(store)
    clock.now = 1005.0
    done = store.finish_action(row.id, state="done", answer="PENDING", result_job_key="J9")
    assert done is not None
    assert (done.state, done.answer, done.result_job_key, done.updated_at) == (
        "done", "PENDING", "J9", 1005.0,
    )  # fmt: skip
    later = store.finish_action(row.id, state="failed", answer="late")
    assert later == done  # a finished action is not finished again
    assert store.finish_action(999, state="done", answer="x") is None
    with pytest.raises(ValueError, match="finishes as one of"):
        store.finish_action(row.id, state="requested", answer="x")
    assert begin(store) == (done, False)


def test_once_per_subject_holds_a_job_while_requested_done_or_unknown(store: Store) -> None:
    retrain = {"kind": "retrain", "subject_key": "J1", "once_per_subject": True}
    first, created = begin(store, "k1", **retrain)
    assert created
    assert begin(store, "k2", user_id="U2", **retrain) == (first, False)
    store.finish_action(first.id, state="unknown", answer="lost")
    held, created = begin(store, "k3", **retrain)
    assert not created and held.id == first.id and held.state == "unknown"
    # another kind, another subject, or without the flag: not held
    assert begin(store, "k4", kind="cancel", subject_key="J1", once_per_subject=True)[1]
    assert begin(store, "k5", kind="retrain", subject_key="J2", once_per_subject=True)[1]
    assert begin(store, "k6", kind="retrain", subject_key="J1")[1]


def test_a_cancel_of_unknown_outcome_does_not_hold_the_job_a_done_one_does(store: Store) -> None:
    cancel = {"kind": "cancel", "subject_key": "J1", "once_per_subject": True}
    first, _ = begin(store, "k1", **cancel)
    assert begin(store, "k2", user_id="U2", **cancel) == (first, False)  # requested: held
    store.finish_action(first.id, state="unknown", answer="lost")
    again, created = begin(store, "k3", user_id="U2", **cancel)  # asked again, knowingly
    assert created and again.id != first.id and again.state == "requested"
    store.finish_action(again.id, state="done", answer="CANCELLED")
    assert begin(store, "k4", **cancel) == (store.get_action(again.id), False)


def test_expire_requested_ends_only_rows_requested_since_before_the_cutoff(
    store: Store, clock: ManualClock
) -> None:
    old, _ = begin(store, "k-old", now=900.0)
    edge, _ = begin(store, "k-edge", now=950.0)
    young, _ = begin(store, "k-young", now=990.0)
    done, _ = begin(store, "k-done", now=900.0)
    store.finish_action(done.id, state="done", answer="ok", now=901.0)
    expired = store.expire_requested(before=950.0, answer="outcome unknown: stopped")
    assert [(row.id, row.state, row.answer, row.updated_at) for row in expired] == [
        (old.id, "unknown", "outcome unknown: stopped", clock.now)
    ]
    states = {row.id: row.state for row in store.recent_actions()}
    assert states == {old.id: "unknown", edge.id: "requested", young.id: "requested",
                      done.id: "done"}  # fmt: skip
    assert store.expire_requested(before=950.0, answer="again") == []  # once


def test_a_failed_action_holds_nothing(store: Store) -> None:
    cancel = {"kind": "cancel", "subject_key": "J1", "once_per_subject": True}
    first, _ = begin(store, "k1", **cancel)
    store.finish_action(first.id, state="failed", answer="MathFi unreachable")
    second, created = begin(store, "k2", **cancel)
    assert created and second.id != first.id
    assert begin(store, "k1", **cancel)[0].state == "failed"  # its own key still finds it


def test_refusals_are_recorded_once_per_key_and_never_finish(store: Store) -> None:
    values = {
        "kind": "cancel", "team_id": "T1", "channel_id": "C1", "user_id": "UGUEST",
        "subject_key": "J1", "reason": "guests may not act",
    }  # fmt: skip
    refused = store.refuse_action(idempotency_key="refused:k1", **values)
    assert (refused.state, refused.answer) == ("refused", "guests may not act")
    assert store.refuse_action(idempotency_key="refused:k1", **values) == refused
    assert store.finish_action(refused.id, state="done", answer="x") == refused
    # a refusal does not hold the job for someone who may act
    assert begin(store, "k1", kind="cancel", subject_key="J1", once_per_subject=True)[1]


def test_recent_actions_newest_first_filtered_by_channel_and_subject(store: Store) -> None:
    for n, (channel, subject) in enumerate([("C1", "J1"), ("C2", "J1"), ("C1", "J2")]):
        begin(store, f"k{n}", channel_id=channel, subject_key=subject)
    keys = [row.idempotency_key for row in store.recent_actions()]
    assert keys == ["k2", "k1", "k0"]
    assert [r.idempotency_key for r in store.recent_actions(channel_id="C1")] == ["k2", "k0"]
    assert [r.idempotency_key for r in store.recent_actions(subject_key="J1", limit=1)] == ["k1"]
    only = store.recent_actions(channel_id="C1", subject_key="J1")
    assert [r.idempotency_key for r in only] == ["k0"]
    assert store.get_action(only[0].id) == only[0] and store.get_action(999) is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"parameters": "not json"}, "action row refused"),
        ({"kind": "delete"}, "unknown action kind"),
    ],
)
def test_bad_rows_are_refused(store: Store, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises((StoreUnavailable, ValueError), match=message):
        begin(store, **overrides)
    assert store.recent_actions() == []


def test_the_database_refuses_what_no_method_writes(store: Store) -> None:
    row, _ = begin(store)
    store.finish_action(row.id, state="done", answer="ok")
    conn = store.db.conn
    with pytest.raises(sqlite3.IntegrityError, match="state change refused"), conn:
        conn.execute("UPDATE actions SET state = 'requested' WHERE id = ?", (row.id,))
    with pytest.raises(sqlite3.IntegrityError, match="action row refused"), conn:
        conn.execute(
            "INSERT INTO actions (idempotency_key, kind, channel_id, user_id, subject_key, "
            "parameters, state, created_at, updated_at) "
            "VALUES ('x', 'start', 'C', 'U', 'S', '{}', 'maybe', 0, 0)"
        )
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"), conn:
        conn.execute(
            "INSERT INTO actions (idempotency_key, kind, channel_id, user_id, subject_key, "
            "parameters, state, created_at, updated_at) "
            "VALUES (?, 'start', 'C', 'U', 'S', '{}', 'requested', 0, 0)",
            (row.idempotency_key,),
        )


async def test_concurrent_begins_through_the_async_store_record_one_action(
    tmp_path: Path,
) -> None:
    store = await AsyncStore.open(tmp_path / "bot.db", clock=lambda: 1000.0)
    try:
        results = await asyncio.gather(
            *(
                store.begin_action(
                    idempotency_key=f"k{n}", kind="cancel", team_id="T1", channel_id="C1",
                    user_id=f"U{n}", subject_key="J1", once_per_subject=True,
                )
                for n in range(10)
            )
        )  # fmt: skip
        assert [created for _, created in results].count(True) == 1
        assert len({row.id for row, _ in results}) == 1
        assert len(await store.recent_actions(subject_key="J1")) == 1
    finally:
        await store.close()
