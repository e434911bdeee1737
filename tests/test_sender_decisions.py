"""The sender's decisions that no end-to-end test pins down exactly (issue #20, mutation
testing): when a row interrupted mid-call is looked up again (`bot.slack.reconcile`), and a
channel's pace below one second."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from bot.metrics import Metrics
from bot.slack.api import SlackCaller
from bot.slack.budget import Budget, BudgetConfig
from bot.slack.delivery import disable_channel
from bot.slack.live_cards import LiveCards
from bot.slack.reconcile import reconciling, requeue, settle
from bot.slack.sender import Sender, SenderConfig
from simulator.slack import SlackFault
from store import NewOutboxRow, Store
from tests.conftest import Env
from tests.test_sender import best, drain, enqueue, outbox, tick, watch

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "bot.db", clock=Clock())
    yield opened
    opened.close()


def sending(store: Store, key: str, *, started: float) -> int:
    store.enqueue([NewOutboxRow(dedupe_key=key, channel_id="C1", job_key="J1", kind="k",
                                payload="{}")])  # fmt: skip
    (row,) = [r for r in store.rows_in_state("pending") if r.dedupe_key == key]
    store.mark_sending(row.id, now=started)
    return row.id


def test_settle_is_two_client_timeouts() -> None:
    assert settle(10.0) == 20.0
    assert settle(0.3) == 0.6


def test_an_interrupted_row_is_looked_up_once_its_call_has_settled(
    store: Store, tmp_path: Path
) -> None:
    late = sending(store, "late", started=T0 - 5.0)  # its call may still land for 15 s
    old = sending(store, "old", started=T0 - 60.0)  # settled: due now
    with sqlite3.connect(tmp_path / "bot.db") as conn:  # touched since: the call start counts
        conn.execute("UPDATE outbox SET updated_at = ?", (T0 - 1.0,))
    waits = requeue(store, now=T0, settle_for=20.0)
    assert waits == [15.0, 0.0]
    rows = {r.id: r for r in store.rows_in_state("pending")}
    assert (rows[late].next_attempt_at, rows[old].next_attempt_at) == (T0 + 15.0, T0)
    assert rows[late].last_error == rows[old].last_error == "interrupted: outcome unknown"
    assert not store.rows_in_state("sending")


def test_a_row_without_a_call_start_counts_from_its_last_update(
    store: Store, tmp_path: Path
) -> None:
    row_id = sending(store, "legacy", started=T0 - 60.0)
    with sqlite3.connect(tmp_path / "bot.db") as conn:  # a row written before the column
        conn.execute(
            "UPDATE outbox SET call_started_at = NULL, updated_at = ? WHERE id = ?",
            (T0 - 8.0, row_id),
        )
    assert requeue(store, now=T0, settle_for=20.0) == [12.0]


def test_reconciling_logs_how_many_and_the_longest_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="bot.slack.sender"):
        assert reconciling([]) == 0
        assert reconciling([3.0, 12.25, 0.0]) == 3
    assert [r.getMessage() for r in caplog.records] == [
        "reconciling 3 message(s) interrupted by a restart (looked up in 12.2 s at most, "
        "once Slack cannot still be finishing the interrupted call)"
    ]


async def test_a_pace_under_a_second_is_kept(env: Env) -> None:
    """Posts in one channel are `pace` apart, whatever the pace (here 0.25 s)."""
    key = await watch(env, "C1")
    sender = Sender(
        env.service.store,
        env.service.slack,
        metrics=Metrics(),
        config=SenderConfig(pace=0.25),
        clock=env.clock,
    )
    await tick(env, sender)  # the card
    for value in (0.70, 0.71):
        await enqueue(env, "C1", best(key, value))
    posted: list[float] = []
    start = env.clock()
    for _ in range(6):
        env.clock.advance(0.125)
        made = await tick(env, sender)
        posted += [env.clock() - start for m, _ in made if m == "chat.postMessage"]
    assert posted == [0.25, 0.5]


async def test_a_failed_post_pauses_its_channel_for_the_retry_delay(env: Env) -> None:
    """A post refused with Retry-After 5 s holds its channel for those 5 s, not the 1 s
    pace: a late-copy look of another sent row of that channel falling due inside the
    delay (at 3 s) waits for its end (the failed row itself waits anyway, by its next
    attempt; `Delivery._failed`'s pause only shows on such a look)."""
    key = await watch(env, "C1")
    await drain(env)
    env.clock.advance(1.0)
    sent = await enqueue(env, "C1", best(key, 0.70))
    await drain(env)
    env.clock.advance(1.0)
    failed_at = env.clock()
    await env.service.store.set_verify_at(sent, at=failed_at + 3.0)
    env.sink.add_fault(
        SlackFault(kind="ratelimit", method="chat.postMessage", count=1, retry_after=5)
    )
    refused = await enqueue(env, "C1", best(key, 0.71))
    assert [m for m, _ in await tick(env) if m != "chat.update"] == ["chat.postMessage"]
    assert (await outbox(env, refused)).last_error == "not_posted: ratelimited"
    made: list[tuple[float, str]] = []
    for _ in range(14):
        env.clock.advance(0.5)
        made += [(env.clock() - failed_at, m) for m, _ in await tick(env) if m != "chat.update"]
    # the delay's end: the refused row goes again, then the look, a pace later
    assert made == [(5.0, "chat.postMessage"), (6.0, "conversations.replies")]


def live_cards(env: Env, budget: Budget, *, pace: float = 1.0) -> LiveCards:
    return LiveCards(
        env.service.store,
        SlackCaller(env.service.slack, metrics=Metrics(), budget=budget),
        metrics=Metrics(),
        pace=pace,
        clock=env.clock,
        disable=partial(disable_channel, env.service.store),
    )


async def test_an_edited_card_waits_its_channels_edit_pace(env: Env) -> None:
    """An edit pace (5 s) longer than the `chat.update` budget's spacing (0.1 s): after an
    edit the channel's card is not edited again before the pace has passed."""
    key = await watch(env, "C1")
    await drain(env)
    store = env.service.store
    budget = Budget(BudgetConfig(update_per_minute=600.0), clock=env.clock)
    cards = live_cards(env, budget, pace=5.0)
    before = await store.get_card(channel_id="C1", job_key=key)
    assert before is not None
    await cards.refresh(before)
    assert cards.edits == 1
    await store.mark_card_dirty(channel_id="C1", job_key=key)
    dirty = await store.dirty_cards()
    assert [c.job_key for c in dirty] == [key]
    env.clock.advance(4.9)
    assert budget.available("chat.update") == 1
    assert cards.due(env.clock(), dirty, posting=(), editing=()) == []
    env.clock.advance(0.1)
    assert cards.due(env.clock(), dirty, posting=(), editing=()) == dirty
