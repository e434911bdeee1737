"""The sender's and the card's branches that no other test runs (issue #20): a bug of our
own in a delivery or in the sender's cycle (met through a row this version cannot read),
a card whose origin or forecast was written by another version, a channel that comes back
to a job it had stopped watching, a final reply that carries a row it cannot read. Each
test checks what the branch is for: the loop goes on, the card is drawn, one line says
why, nothing is posted twice."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from typing import Any

import pytest

from bot.metrics import Metrics
from bot.slack.api import CARD_EVENT
from bot.slack.sender import Sender, SenderConfig
from store import NewOutboxRow
from tests.conftest import Env
from tests.test_except_paths_loops import Rounds
from tests.test_sender import (
    best,
    drain,
    enqueue,
    job_status,
    note_ids,
    outbox,
    tick,
    watch,
)


def write(env: Env, sql: str, *params: Any) -> None:
    """What another version (or a hand edit) left in the database."""
    raw = sqlite3.connect(env.service.settings.database_path)
    with raw:
        raw.execute(sql, params)
    raw.close()


def cards(env: Env, channel: str) -> list[Any]:
    return [
        m for m in env.sink.top_level(channel) if (m.metadata or {}).get("event_type") == CARD_EVENT
    ]


# ----------------------------------------------------------------------------- sender
async def test_a_card_edit_that_breaks_is_logged_and_the_other_channels_go_on(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    broken, fine = await watch(env, "C1"), await watch(env, "C2")
    await drain(env)
    write(env, "UPDATE jobs SET snapshot_json = '{\"no\": 1}' WHERE job_key = ?", broken)
    await env.service.store.mark_card_dirty(channel_id="C1", job_key=broken)
    env.clock.advance(1.5)
    row = await enqueue(env, "C2", best(fine, 0.75))
    with caplog.at_level(logging.ERROR, logger="bot.slack.sender"):
        await tick(env)
    (failed,) = [r for r in caplog.records if r.name == "bot.slack.sender"]
    assert failed.getMessage() == "delivery to C1 failed unexpectedly"
    assert failed.exc_info is not None  # the traceback is in the log
    assert note_ids(env, "C2") == [row]  # the same tick's post elsewhere went
    assert [c.edits for c in cards(env, "C1")] == [0]
    env.clock.advance(1.5)  # and the sender goes on
    after = await enqueue(env, "C2", best(fine, 0.76))
    await tick(env)
    assert note_ids(env, "C2") == [row, after]


async def test_the_sender_loop_logs_a_bug_of_its_own_and_goes_on(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """A row left `sending` whose call start another version wrote as text: looking it up
    after a restart fails in every cycle; the loop says so each time and keeps going."""
    key = await watch(env, "C1")
    await drain(env)
    row_id = await enqueue(env, "C1", best(key, 0.75))
    write(
        env,
        "UPDATE outbox SET state = 'sending', call_started_at = 'soon' WHERE id = ?",
        row_id,
    )
    rounds = Rounds(2)
    sender = Sender(
        env.service.store,
        env.service.slack,
        metrics=Metrics(),
        config=SenderConfig(),
        clock=env.clock,
        sleep=rounds,
    )
    rounds.loop = sender
    with caplog.at_level(logging.ERROR, logger="bot.slack.sender"):
        await asyncio.wait_for(sender.run(), timeout=5)
    failed = [r for r in caplog.records if r.name == "bot.slack.sender"]
    assert [r.getMessage() for r in failed] == ["sender cycle failed; continuing"] * 2
    assert failed[0].exc_info is not None and failed[0].exc_info[0] is TypeError
    assert rounds.waits == [0.2, 0.2]  # an idle turn after each failed cycle
    assert (await outbox(env, row_id)).state == "sending"


# ----------------------------------------------------------------------------- the card
async def test_a_job_started_from_slack_by_another_version_still_says_who(env: Env) -> None:
    key = env.sim.script_job([{"status": "RUNNING"}])
    store = env.service.store
    action, _ = await store.begin_action(
        idempotency_key="k1",
        kind="start",
        team_id="T1",
        channel_id="C1",
        user_id="U0ALICE",
        subject_key="dataset-1",
        parameters=json.dumps({"version": 2, "dataset": "dataset-1"}),  # not ours to read
    )
    await store.finish_action(action.id, state="done", answer="started", result_job_key=key)
    status, _, url = await env.command(f"subscribe {key}", channel="C1")
    assert status == 200
    await env.reply(url)
    await drain(env)
    (card,) = cards(env, "C1")
    drawn = json.dumps(card.blocks, ensure_ascii=False)
    assert "▶️ started by <@U0ALICE>" in drawn and "retrain of" not in drawn


async def test_a_forecast_state_another_version_wrote_is_started_afresh(env: Env) -> None:
    key = await watch(env, "C1")
    await drain(env)
    write(env, 'UPDATE jobs SET forecast_json = \'{"told": "maybe"}\' WHERE job_key = ?', key)
    await env.service.store.mark_card_dirty(channel_id="C1", job_key=key)
    env.clock.advance(1.5)
    await tick(env)
    assert [c.edits for c in cards(env, "C1")] == [1]  # drawn, without that forecast
    env.sim.advance(key)
    await env.cycle(10.0)  # the next poll writes a state of its own
    record = await env.service.store.get_job(key)
    assert record is not None and record.forecast_json is not None
    assert "maybe" not in record.forecast_json


async def test_a_channel_that_comes_back_gets_its_old_card_live_again(env: Env) -> None:
    key = await watch(env, "C1")
    await drain(env)
    (card,) = cards(env, "C1")
    status, _, _ = await env.command(f"unsubscribe {key}", channel="C1")
    assert status == 200
    await drain(env)
    assert "No longer watched in this channel" in card.text
    key_again = await watch(env, "C1")
    assert key_again != key  # `watch` scripts a new job: subscribe the first one again
    status, _, url = await env.command(f"subscribe {key}", channel="C1")
    assert status == 200
    await env.reply(url)
    await drain(env)
    again = [
        c for c in cards(env, "C1") if c.metadata and c.metadata["event_payload"]["job_key"] == key
    ]
    assert again == [card]  # no second card for the job
    assert "No longer watched" not in card.text
    watches = [
        r
        for r in await env.service.store.rows_in_state("sent")
        if r.kind == "watch_started" and r.job_key == key
    ]
    assert [r.slack_ts for r in watches] == [card.ts, card.ts]


# ----------------------------------------------------------------------------- carried rows
async def test_a_final_reply_carries_a_row_it_cannot_read_and_says_the_rest(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    key = await watch(env, "C1")
    await drain(env)
    env.clock.advance(1.0)
    running = await enqueue(env, "C1", job_status(key, "RUNNING", old="PENDING"))
    unreadable = NewOutboxRow(
        dedupe_key="test:unreadable",
        channel_id="C1",
        job_key=key,
        kind="new_best",
        payload='{"events": []}',
        priority=2,  # progress: carried by the job's final reply
    )
    await env.service.store.enqueue([unreadable])
    final = await enqueue(env, "C1", job_status(key, "COMPLETED"))
    with caplog.at_level(logging.WARNING, logger="bot.slack.sender"):
        await drain(env)
    assert note_ids(env, "C1") == [final]
    (reply,) = [m for m in env.sink.channels["C1"] if m.thread_ts is not None]
    assert "also: RUNNING (while queued)" in reply.text
    (bad,) = [
        r
        for r in await env.service.store.rows_in_state("sent")
        if r.dedupe_key == "test:unreadable"
    ]
    assert (bad.carried_by, bad.slack_ts) == (final, reply.ts)  # sent with it, not posted
    assert (await outbox(env, running)).carried_by == final
    assert f"outbox row {bad.id} carried by a final reply cannot be read" in caplog.text
