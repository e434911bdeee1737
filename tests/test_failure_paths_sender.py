"""The sender's failure branches that no other test reaches (issue #20), driven through the
Slack sink's faults and a database another connection holds: a message Slack keeps
refusing, card edits that fail, a duplicate lookup that fails, and Slack taking a post the
database then refuses to mark sent."""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from bot.metrics import Metrics
from bot.slack.sender import Sender, SenderConfig
from simulator.slack import SinkMessage, SlackFault
from store import AsyncStore
from tests.conftest import Env, wait_for
from tests.test_sender import (
    best,
    calls,
    drain,
    enqueue,
    note_ids,
    outbox,
    short_timeout_sender,
    tick,
    watch,
)


@contextmanager
def database_held(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holds the database's write lock: every write of the service
    waits out its busy timeout and is refused; reads go on (WAL)."""
    holder = sqlite3.connect(path, timeout=0, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield holder
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def db_path(env: Env) -> Path:
    return Path(env.service.settings.database_path)


# ----------------------------------------------------------------------------- give up
async def test_a_message_slack_keeps_refusing_is_given_up_and_the_next_goes(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    key = await watch(env, "C1")
    await tick(env)
    env.clock.advance(1.0)
    refused = await enqueue(env, "C1", best(key, 0.70))
    after = await enqueue(env, "C1", best(key, 0.71))
    env.sink.add_fault(
        SlackFault(kind="error", error="invalid_blocks", method="chat.postMessage", count=3)
    )
    with caplog.at_level(logging.ERROR, logger="bot.slack.sender"):
        await drain(env)
    row = await outbox(env, refused)
    assert (row.state, row.last_error, row.attempts) == ("dead", "invalid_blocks", 3)
    assert env.sink.fault_count == 0  # exactly max_attempts (3) tries, no more
    assert note_ids(env, "C1") == [after]
    assert (await outbox(env, after)).state == "sent"
    (view,) = await env.service.store.list_subscriptions(channel_id="C1")
    assert view.subscription.disabled_reason is None and view.subscription.delivering
    (line,) = [r.getMessage() for r in caplog.records if "giving up" in r.getMessage()]
    assert line == f"giving up on outbox row {refused} for C1 after 3 attempts: invalid_blocks"


# ----------------------------------------------------------------------------- card edits
async def test_an_edit_of_a_deleted_card_leaves_it_and_the_next_reply_posts_a_new_one(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    key = await watch(env, "C1")
    await tick(env)
    (card,) = env.sink.top_level("C1")
    await env.service.slack.chat_delete(channel="C1", ts=card.ts)  # somebody deleted it
    env.clock.advance(1.0)
    await env.service.store.mark_card_dirty(channel_id="C1", job_key=key)
    with caplog.at_level(logging.WARNING, logger="bot.slack.sender"):
        made = await tick(env)
    assert [m for m, _ in made] == ["chat.update"]  # message_not_found
    assert f"card of {key} in C1 was deleted; leaving it" in caplog.messages
    assert not await env.service.store.dirty_cards()  # left, not retried on every tick
    env.clock.advance(10.0)
    assert not await tick(env)
    row = await enqueue(env, "C1", best(key, 0.7))
    await drain(env)
    (new_card,) = env.sink.top_level("C1")
    assert new_card.ts != card.ts
    assert note_ids(env, "C1") == [row]
    stored = await env.service.store.get_card(channel_id="C1", job_key=key)
    assert stored is not None and stored.ts == new_card.ts


async def test_an_edit_in_an_archived_channel_disables_it_and_stops(env: Env) -> None:
    key = await watch(env, "C1", "C2")
    await tick(env)
    env.sink.archive("C1")
    env.clock.advance(1.0)
    for channel in ("C1", "C2"):
        await env.service.store.mark_card_dirty(channel_id=channel, job_key=key)
    made = await tick(env)
    env.clock.advance(1.2)  # the workspace's chat.update budget: 50 a minute
    made += await tick(env)
    assert sorted((m, p["channel"]) for m, p in made) == [
        ("chat.update", "C1"),
        ("chat.update", "C2"),
    ]
    (view,) = await env.service.store.list_subscriptions(channel_id="C1")
    assert view.subscription.disabled_reason and "archived" in view.subscription.disabled_reason
    assert not await env.service.store.dirty_cards()
    assert env.sink.top_level("C2")[0].edits == 1
    # The job moves on: C2 hears of it, C1 is not called again.
    before = len(env.sink.calls)
    await env.service.store.mark_card_dirty(channel_id="C1", job_key=key)
    await enqueue(env, "C2", best(key, 0.7))
    await drain(env)
    assert not [p for _, p in env.sink.calls[before:] if p.get("channel") == "C1"]
    assert len(note_ids(env, "C2")) == 1


async def test_a_429_on_an_edit_pauses_every_edit_for_retry_after_then_converges(
    env: Env,
) -> None:
    key = await watch(env, "C1", "C2")
    await tick(env)
    env.clock.advance(1.0)
    env.sink.add_fault(
        SlackFault(kind="ratelimit", method="chat.update", channel="C1", count=1, retry_after=3)
    )
    await env.service.store.mark_card_dirty(channel_id="C1", job_key=key)
    limited_at = env.clock()
    assert [(m, p["channel"]) for m, p in await tick(env)] == [("chat.update", "C1")]
    await env.service.store.mark_card_dirty(channel_id="C2", job_key=key)
    edits: list[tuple[float, str]] = []
    for _ in range(20):
        env.clock.advance(0.25)
        edits += [(env.clock() - limited_at, p["channel"]) for m, p in await tick(env)]
    # app-wide: neither channel is edited before Retry-After has passed; then one
    # workspace budget (50 a minute: 1.2 s apart), the older change first
    assert sorted(edits) == [(3.0, "C1"), (4.25, "C2")]
    assert not await env.service.store.dirty_cards()
    assert [env.sink.top_level(c)[0].edits for c in ("C1", "C2")] == [1, 1]


async def test_an_edit_that_fails_for_a_passing_reason_is_tried_again_later(env: Env) -> None:
    key = await watch(env, "C1")
    await tick(env)
    env.clock.advance(1.0)
    env.sink.add_fault(SlackFault(kind="status", status=503, method="chat.update", count=1))
    await env.service.store.mark_card_dirty(channel_id="C1", job_key=key)
    failed_at = env.clock()
    edits: list[float] = []
    for _ in range(8):
        edits += [env.clock() - failed_at for m, _ in await tick(env) if m == "chat.update"]
        env.clock.advance(1.0)
    assert edits == [0.0, 5.0]  # EDIT_RETRY later, not on every tick
    assert env.sink.top_level("C1")[0].edits == 1 and not await env.service.store.dirty_cards()


async def test_a_successful_edit_is_counted_and_paces_the_channels_next_edit(env: Env) -> None:
    key = await watch(env, "C1")
    await tick(env)  # the card
    env.clock.advance(1.0)
    sent = env.service.metrics.messages_sent.labels(kind="card_update")
    before = (env.service.sender.edits, sent._value.get())
    await env.service.store.mark_card_dirty(channel_id="C1", job_key=key)
    edited_at = env.clock()
    edits: list[float] = []
    for _ in range(4):
        edits += [env.clock() - edited_at for m, _ in await tick(env) if m == "chat.update"]
        await env.service.store.mark_card_dirty(channel_id="C1", job_key=key)
        env.clock.advance(0.5)
    # not every tick: the next edit waits for the channel's edit pace (1 s) and the
    # workspace's chat.update budget (Tier 3, 50 a minute: 1.2 s), so the first tick after both
    spacing = max(1.0, 60.0 / 50.0)
    assert edits == [0.0, math.ceil(spacing / 0.5) * 0.5]
    assert (env.service.sender.edits, sent._value.get()) == (before[0] + 2, before[1] + 2)


# ------------------------------------------------------------------- late-copy look fails
async def posted_again(env: Env, sender: Sender) -> int:
    """A reply whose first post failed with a 5xx, posted again: a sent row to verify."""
    key = await watch(env, "C1")
    await tick(env, sender)
    env.clock.advance(1.0)
    row_id = await enqueue(env, "C1", best(key, 0.75))
    env.sink.add_fault(SlackFault(kind="status", status=500, method="chat.postMessage", count=1))
    await tick(env, sender)
    # may have been posted: no "not_posted: " mark, so it is looked up before the retry
    assert (await outbox(env, row_id)).last_error == "fatal_error"
    env.clock.advance(2.0)
    await tick(env, sender)  # looked up (nothing), posted again
    row = await outbox(env, row_id)
    assert row.state == "sent" and row.verify_at is not None
    await tick(env, sender)  # the card's edit
    env.clock.advance(1.0)  # the look is due and the channel's pace allows it
    assert row.verify_at <= env.clock()
    return row_id


@pytest.mark.parametrize(
    ("fault", "wait", "line"),
    [
        (  # Slack's trouble: look again once the call has surely settled (2 x 0.3 s)
            SlackFault(kind="status", status=503, method="conversations.replies", count=1),
            0.6,
            "(fatal_error); will look again",
        ),
        (  # rate limited: after Retry-After when it is longer
            SlackFault(kind="ratelimit", retry_after=2, method="conversations.replies", count=1),
            2.0,
            "(ratelimited); will look again",
        ),
        (  # refused: looking again cannot help
            SlackFault(kind="error", error="missing_scope", method="conversations.replies"),
            None,
            "(missing_scope)",
        ),
    ],
)
async def test_a_failed_look_for_a_late_copy_is_scheduled_again_or_dropped(
    env: Env,
    caplog: pytest.LogCaptureFixture,
    fault: SlackFault,
    wait: float | None,
    line: str,
) -> None:
    async with aiohttp.ClientSession() as session:
        sender = short_timeout_sender(env, session)
        row_id = await posted_again(env, sender)
        env.sink.add_fault(fault)
        looked_at = env.clock()
        with caplog.at_level(logging.WARNING, logger="bot.slack.sender"):
            made = await tick(env, sender)
    assert [m for m, _ in made if m != "chat.update"] == ["conversations.replies"]
    row = await outbox(env, row_id)
    assert row.state == "sent"
    assert row.verify_at == (None if wait is None else pytest.approx(looked_at + wait, abs=1e-6))
    warnings = [r.getMessage() for r in caplog.records if "late copy" in r.getMessage()]
    assert warnings == [f"cannot look for a late copy of outbox row {row_id} {line}"]


# ----------------------------------------------------------------------------- lookups
@pytest.mark.parametrize(
    ("lookup_fault", "lookups"),
    [
        (SlackFault(kind="status", status=503, method="conversations.replies", count=1), 2),
        (SlackFault(kind="error", error="thread_not_found", method="conversations.replies"), 1),
    ],
    ids=["5xx-looks-again", "refused-posts"],
)
async def test_a_failing_duplicate_lookup_never_doubles_nor_blocks(
    env: Env, lookup_fault: SlackFault, lookups: int
) -> None:
    key = await watch(env, "C1")
    await tick(env)
    env.clock.advance(1.0)
    row_id = await enqueue(env, "C1", best(key, 0.75))
    env.sink.add_fault(SlackFault(kind="status", status=500, method="chat.postMessage", count=1))
    await tick(env)  # a 500: the reply may or may not be in Slack (here: it is not)
    assert (await outbox(env, row_id)).state == "pending"
    env.sink.add_fault(lookup_fault)
    await drain(env)
    env.sink.clear_faults()
    assert (await outbox(env, row_id)).state == "sent"
    assert note_ids(env, "C1") == [row_id]
    assert len(calls(env, "conversations.replies", "C1")) == lookups
    assert len(calls(env, "chat.postMessage", "C1")) == 3  # card, the 500, the post


async def test_a_lookup_5xx_after_a_post_that_landed_still_finds_it(env: Env) -> None:
    key = await watch(env, "C1")
    await tick(env)
    env.clock.advance(1.0)
    row_id = await enqueue(env, "C1", best(key, 0.75))
    env.sink.add_fault(SlackFault(kind="fail_after_commit", method="chat.postMessage", count=1))
    env.sink.add_fault(
        SlackFault(kind="status", status=502, method="conversations.replies", count=2)
    )
    await drain(env)
    assert note_ids(env, "C1") == [row_id]  # posted once, found by the third lookup
    assert len(calls(env, "conversations.replies", "C1")) == 3
    assert len(calls(env, "chat.postMessage", "C1")) == 2


# ----------------------------------------------------------------------------- the database
async def test_slack_took_the_post_but_the_database_refused_sent_no_double_post(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    key = await watch(env, "C1")
    await tick(env)
    env.clock.advance(1.0)
    row_id = await enqueue(env, "C1", best(key, 0.75))
    held: list[sqlite3.Connection] = []

    def lock_when_posted(kind: str, message: SinkMessage) -> None:
        # The very moment Slack stores the reply, before the bot hears Slack's answer.
        if kind == "post" and message.thread_ts and not held:
            holder = sqlite3.connect(db_path(env), timeout=0, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
            held.append(holder)

    env.sink.subscribe(lock_when_posted)
    try:
        with caplog.at_level(logging.ERROR, logger="bot.slack.sender"):
            await tick(env)
    finally:
        for holder in held:
            holder.execute("ROLLBACK")
            holder.close()
    assert held and note_ids(env, "C1") == [row_id]
    assert (await outbox(env, row_id)).state == "sending"  # "sent" was refused
    assert [r for r in caplog.records if "database refused the sender's write" in r.getMessage()]
    await drain(env)  # the database is back: looked up, found, marked; not posted again
    row = await outbox(env, row_id)
    assert row.state == "sent" and row.slack_ts == env.sink.channels["C1"][-1].ts
    assert note_ids(env, "C1") == [row_id]
    assert len(calls(env, "chat.postMessage", "C1")) == 2  # the card and the one reply
    assert len(calls(env, "conversations.replies", "C1")) == 1


async def test_the_sender_loop_outlives_a_database_that_refuses(
    env: Env, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    store = await AsyncStore.open(tmp_path / "other.db")
    await store.close()  # every call now refused: StoreUnavailable
    sender = Sender(
        store, env.service.slack, metrics=Metrics(), config=SenderConfig(), clock=env.clock
    )
    with caplog.at_level(logging.ERROR, logger="bot.slack.sender"):
        running = asyncio.create_task(sender.run())
        await wait_for(lambda: sender.last_cycle_at is not None)
        await asyncio.sleep(0.5)  # a couple of 0.2 s idle turns, each refused again
        sender.stop()
        await asyncio.wait_for(running, timeout=2.0)
    lines = [r.getMessage() for r in caplog.records if "cannot read the outbox" in r.getMessage()]
    assert lines == ["sender cannot read the outbox (the store is closed); will retry"]


async def test_a_held_database_is_refused_by_the_delivery_not_the_loop(env: Env) -> None:
    key = await watch(env, "C1")
    await tick(env)
    env.clock.advance(1.0)
    row_id = await enqueue(env, "C1", best(key, 0.75))
    with database_held(db_path(env)):
        await tick(env)  # mark_sending refused: nothing posted
    assert note_ids(env, "C1") == []
    assert (await outbox(env, row_id)).state == "pending"
    await drain(env)
    assert note_ids(env, "C1") == [row_id]
