"""Priorities in the outbox (issue #18): a channel's queued alert goes before its queued
progress, and a job's final reply carries the progress of that job still queued before it,
marked sent with it (exactly once, across a lost answer and a restart too)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.core.diff import headline_kind
from bot.core.events import Event, EventKind
from bot.core.notification import Notification
from bot.core.priority import Priority, is_final, priority_of
from simulator.slack import SlackFault
from store import NewOutboxRow, Store
from tests.conftest import Env, ManualClock
from tests.test_sender import (
    algorithm_failed,
    best,
    drain,
    enqueue,
    fresh_sender,
    job_status,
    note_ids,
    outbox,
    tick,
    watch,
)


def note(*events: Event) -> Notification:
    return Notification(
        channel_id="C1",
        job_key="J1",
        subscription_id=None,
        events=events,
        snapshot=None,
        headline=headline_kind(events),
        mention=None,
        dedupe_key="k",
    )


@pytest.mark.parametrize(
    ("events", "priority", "final"),
    [
        ((job_status("J1", "FAILED"),), Priority.ALERT, True),
        ((job_status("J1", "TIMED_OUT"), best("J1", 0.8)), Priority.ALERT, True),
        ((job_status("J1", "NOT_COMPLETED"),), Priority.ALERT, True),
        ((Event(kind=EventKind.UNREACHABLE, job_key="J1", reason="404"),), Priority.ALERT, False),
        ((job_status("J1", "COMPLETED"),), Priority.NORMAL, True),
        ((job_status("J1", "CANCELLED"),), Priority.NORMAL, True),
        ((Event(kind=EventKind.WATCH_STARTED, job_key="J1"),), Priority.NORMAL, False),
        ((Event(kind=EventKind.RECOVERED, job_key="J1"),), Priority.NORMAL, False),
        ((best("J1", 0.8),), Priority.PROGRESS, False),
        ((best("J1", 0.8), algorithm_failed("J1")), Priority.PROGRESS, False),
        ((job_status("J1", "RUNNING", old="PENDING"),), Priority.PROGRESS, False),
    ],
)
def test_priority_and_final_of_a_notification(
    events: tuple[Event, ...], priority: Priority, final: bool
) -> None:
    assert (priority_of(note(*events)), is_final(note(*events))) == (priority, final)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "bot.db", clock=ManualClock())
    yield opened
    opened.close()


def row(key: str, channel: str, priority: Priority, job: str = "J1") -> NewOutboxRow:
    return NewOutboxRow(key, channel, job, "k", "{}", priority=int(priority))


def test_each_channel_yields_its_most_urgent_row_alerts_first(store: Store) -> None:
    store.enqueue(
        [
            row("a", "C1", Priority.PROGRESS, job="J1"),
            row("b", "C1", Priority.NORMAL, job="J2"),
            row("c", "C1", Priority.ALERT, job="J3"),
            row("d", "C2", Priority.PROGRESS),
            row("e", "C3", Priority.ALERT),
            row("f", "C3", Priority.ALERT),
            # the same job: its card (normal) stays before its alert, its progress does not
            row("card", "C4", Priority.NORMAL),
            row("best", "C4", Priority.PROGRESS),
            row("failed", "C4", Priority.ALERT),
        ],
        now=1000.0,
    )
    due = store.due_outbox(now=1000.0)
    assert [(r.channel_id, r.dedupe_key) for r in due] == [
        ("C1", "c"),
        ("C3", "e"),
        ("C4", "card"),
        ("C2", "d"),
    ]
    store.mark_sent(due[2].id, ts="1.1")
    assert ("C4", "failed") in [(r.channel_id, r.dedupe_key) for r in store.due_outbox(now=1000.0)]
    # an alert waiting on a retry holds its channel: nothing overtakes it
    store.mark_retry(due[0].id, next_attempt_at=1010.0, error="ratelimited")
    assert "C1" not in {r.channel_id for r in store.due_outbox(now=1001.0)}
    # a row being sent holds its channel too
    store.mark_sending(due[1].id)
    assert "C3" not in {r.channel_id for r in store.due_outbox(now=1001.0)}
    counts, oldest = store.queued_by_priority()
    assert counts == {0: 4, 1: 1, 2: 3} and oldest == 1000.0


def test_a_dead_carrier_gives_its_rows_back(store: Store) -> None:
    store.enqueue(
        [
            row("p1", "C1", Priority.PROGRESS),
            row("other-job", "C1", Priority.PROGRESS, job="J2"),
            row("p2", "C1", Priority.PROGRESS),
            row("end", "C1", Priority.ALERT),
            row("later", "C1", Priority.PROGRESS),
        ],
        now=1000.0,
    )
    ids = {r.dedupe_key: r.id for r in store.rows_in_state("pending")}
    carried = store.claim_carried(ids["end"], now=1001.0)
    assert [r.dedupe_key for r in carried] == ["p1", "p2"]  # its job's, queued before it
    assert store.get_outbox_row(ids["end"]).state == "sending"  # type: ignore[union-attr]
    store.mark_dead(ids["end"], error="invalid_blocks")
    assert [r.dedupe_key for r in store.due_outbox(now=1002.0)] == ["p1"]
    assert store.carried(ids["end"]) == []


async def test_a_queued_alert_goes_before_queued_progress(env: Env) -> None:
    quiet, failing = await watch(env, "C1"), await watch(env, "C1")
    await drain(env)
    env.clock.advance(1.0)
    progress = [await enqueue(env, "C1", best(quiet, 0.70 + i / 100)) for i in range(3)]
    alert = await enqueue(env, "C1", job_status(failing, "FAILED"))
    await tick(env)
    assert note_ids(env, "C1") == [alert]
    await drain(env)
    assert note_ids(env, "C1") == [alert, *progress]  # then the progress, in order


async def test_a_final_reply_carries_its_jobs_queued_progress(env: Env) -> None:
    key, other = await watch(env, "C1"), await watch(env, "C1")
    await drain(env)
    env.clock.advance(1.0)
    first = await enqueue(env, "C1", best(key, 0.70))
    theirs = await enqueue(env, "C1", best(other, 0.65))
    second = await enqueue(env, "C1", best(key, 0.71), algorithm_failed(key))
    final = await enqueue(env, "C1", job_status(key, "FAILED"))
    await drain(env)
    assert note_ids(env, "C1") == [final, theirs]  # the other job's progress is its own
    (card,) = [c for c in env.sink.top_level("C1") if c.ts == await card_ts(env, key)]
    (reply,) = env.sink.replies("C1", card.ts)
    assert "also: new best 0.7000, new best 0.7100, BSEV01 FAILED (while queued)" in reply.text
    assert "while queued" in str(reply.blocks[-1])
    for row_id in (first, second):
        carried = await outbox(env, row_id)
        assert (carried.state, carried.carried_by, carried.slack_ts) == ("sent", final, reply.ts)
        assert carried.attempts == 0  # never posted on its own
    assert (await outbox(env, theirs)).carried_by is None


async def card_ts(env: Env, key: str) -> str | None:
    card = await env.service.store.get_card(channel_id="C1", job_key=key)
    return None if card is None else card.ts


async def test_carried_rows_are_sent_once_when_the_carriers_answer_is_lost(env: Env) -> None:
    """Slack stores the final reply, its answer is lost, the process restarts: the reply is
    found (not posted again) and its carried rows are marked sent with it, never posted."""
    key = await watch(env, "C1")
    await drain(env)
    env.clock.advance(1.0)
    progress = [await enqueue(env, "C1", best(key, 0.70 + i / 100)) for i in range(2)]
    final = await enqueue(env, "C1", job_status(key, "TIMED_OUT"))
    env.sink.add_fault(SlackFault(kind="fail_after_commit", method="chat.postMessage", count=1))
    await tick(env)
    assert [(await outbox(env, i)).state for i in progress] == ["pending", "pending"]
    restarted = fresh_sender(env)
    await restarted.reconcile()
    await drain(env, restarted)
    assert note_ids(env, "C1") == [final]  # one reply, the carrier's
    carrier = await outbox(env, final)
    for row_id in progress:
        carried = await outbox(env, row_id)
        assert (carried.state, carried.carried_by) == ("sent", final)
        assert carried.slack_ts == carrier.slack_ts
    assert (
        "new best 0.7000, new best 0.7100"
        in env.sink.replies("C1", await card_ts(env, key) or "")[0].text
    )


async def test_queue_metrics_and_healthz_degrade_when_an_alert_waits(env: Env) -> None:
    key = await watch(env, "C1")
    await drain(env)
    env.clock.advance(1.0)
    env.sink.add_fault(SlackFault(kind="status", method="chat.postMessage", status=503, count=1000))
    await enqueue(env, "C1", best(key, 0.70))
    await enqueue(env, "C1", Event(kind=EventKind.UNREACHABLE, job_key=key, reason="gone"))
    await env.cycle()
    async with env.http.get(f"{env.base_url}/metrics") as response:
        text = await response.text()
    assert 'mathfi_outbox_queued{priority="alert"} 1.0' in text
    assert 'mathfi_outbox_queued{priority="progress"} 1.0' in text
    wait = env.service.settings.alert_max_wait
    env.clock.advance(wait + 1)
    await env.cycle()
    async with env.http.get(f"{env.base_url}/healthz") as response:
        body = await response.json()
    assert body["status"] == "degraded" and body["oldest_alert_age_seconds"] >= wait + 1
    async with env.http.get(f"{env.base_url}/metrics") as response:
        text = await response.text()
    (age,) = [line for line in text.splitlines() if line.startswith("mathfi_oldest_alert_age")]
    assert float(age.split()[1]) == body["oldest_alert_age_seconds"]
