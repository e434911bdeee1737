"""The failure branches of the messages that are neither a job's card nor its replies
(issue #20): the line that says who changed a subscription, the daily digest, and the
on-call re-page, acknowledgement line and alert edit. Driven through the Slack sink's
faults and a deleted card or alert; each test checks what a channel sees (every message
once, in the right place) and what the row says (sent, retried, dead and why)."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections.abc import Awaitable, Callable

import pytest

from bot.core.oncall import REPAGE_KIND
from bot.slack.api import CARD_EVENT
from simulator.slack import SlackFault
from store import NewOutboxRow
from tests.conftest import Env
from tests.scripts import LIFECYCLE
from tests.test_digest import utc, watch_to_the_end
from tests.test_oncall import (
    CHANNEL,
    button_values,
    click,
    failed_alert,
    people,
    repage_every,
    send,
    thread,
)
from tests.test_sender import calls, drain, outbox, tick, watch

# A row of one kind, queued in CHANNEL: (its outbox id, the lookup method it is found by).
Maker = Callable[[Env], Awaitable[tuple[int, str]]]
WEEK = 7 * 86400.0


async def pending_of(env: Env, kind: str) -> int:
    pending = await env.service.store.rows_in_state("pending")
    (row,) = [r for r in pending if r.kind == kind and not r.dedupe_key.startswith("test:")]
    return row.id


def edits_of(env: Env, ts: str) -> list[str]:
    """The `chat.update` calls made of the message `ts` (failed ones included)."""
    return [p["ts"] for p in calls(env, "chat.update", CHANNEL) if p.get("ts") == ts]


async def change_line(env: Env) -> tuple[int, str]:
    """CHANNEL watches a job (its card posted); `mute` queues the line saying who muted it,
    a reply in the card's thread."""
    key = await watch(env, CHANNEL)
    await tick(env)
    env.clock.advance(1.0)
    status, _, _ = await env.command(f"mute {key} 2h", channel=CHANNEL)
    assert status == 200
    return await pending_of(env, "subscription_changed"), "conversations.replies"


async def digest(env: Env) -> tuple[int, str]:
    """CHANNEL's daily digest is due (a job ran there): a message in the channel itself."""
    env.clock.now = utc("2027-01-15 07:00:00")
    await watch_to_the_end(env, LIFECYCLE[1:3], CHANNEL)
    status, _, _ = await env.command("digest daily 09:00", channel=CHANNEL)
    assert status == 200
    env.clock.now = utc("2027-01-15 09:00:00")
    assert await env.service.digests.round() == [CHANNEL]
    return await pending_of(env, "digest"), "conversations.history"


async def repage(env: Env) -> tuple[int, str]:
    """An alert nobody acknowledged for ONCALL_REPAGE: its re-page, in the card's thread."""
    oncall = repage_every(env, 60.0)
    await failed_alert(env)
    env.clock.advance(61.0)
    assert await oncall.tick() == 1
    return await pending_of(env, REPAGE_KIND), "conversations.replies"


MAKERS = [change_line, digest, repage]
KINDS = ["change-line", "digest", "repage"]


def posted(env: Env, row_id: int) -> list[str]:
    """The ts of every message in CHANNEL that names outbox row `row_id`."""
    return [
        m.ts
        for m in env.sink.channels.get(CHANNEL, [])
        if (m.metadata or {}).get("event_payload", {}).get("outbox_id") == row_id
    ]


# ----------------------------------------------------------------------------- lookups
@pytest.mark.parametrize("make", MAKERS, ids=KINDS)
async def test_a_post_slack_took_but_answered_500_is_found_not_posted_again(
    env: Env, make: Maker
) -> None:
    row_id, lookup = await make(env)
    env.clock.advance(1.0)
    before = len(calls(env, "chat.postMessage", CHANNEL))
    env.sink.add_fault(
        SlackFault(kind="fail_after_commit", method="chat.postMessage", channel=CHANNEL, count=1)
    )
    await drain(env)
    (ts,) = posted(env, row_id)  # in Slack once
    row = await outbox(env, row_id)
    assert (row.state, row.slack_ts) == ("sent", ts)  # found by its lookup
    assert len(calls(env, lookup, CHANNEL)) == 1
    assert len(calls(env, "chat.postMessage", CHANNEL)) == before + 1


@pytest.mark.parametrize("make", MAKERS, ids=KINDS)
@pytest.mark.parametrize(
    ("fault", "lookups", "warned"),
    [
        (SlackFault(kind="status", status=503, count=1), 2, None),
        (SlackFault(kind="error", error="missing_scope", count=1), 1, "missing_scope"),
    ],
    ids=["5xx-looks-again", "refused-posts"],
)
async def test_a_failing_lookup_never_doubles_nor_blocks_the_row(
    env: Env,
    caplog: pytest.LogCaptureFixture,
    make: Maker,
    fault: SlackFault,
    lookups: int,
    warned: str | None,
) -> None:
    row_id, lookup = await make(env)
    env.clock.advance(1.0)
    env.sink.add_fault(
        SlackFault(kind="status", status=500, method="chat.postMessage", channel=CHANNEL, count=1)
    )
    await tick(env)  # a 500: the message may or may not be in Slack (here: it is not)
    row = await outbox(env, row_id)
    assert (row.state, row.last_error) == ("pending", "fatal_error")  # unknown: look first
    env.sink.add_fault(dataclasses.replace(fault, method=lookup, channel=CHANNEL))
    with caplog.at_level(logging.WARNING, logger="bot.slack.sender"):
        await drain(env)
    assert len(posted(env, row_id)) == 1
    assert (await outbox(env, row_id)).state == "sent"
    assert len(calls(env, lookup, CHANNEL)) == lookups
    expected = f"cannot check whether outbox row {row_id} reached Slack ({warned}); posting it"
    assert (expected in caplog.messages) is (warned is not None)


# ----------------------------------------------------------------------------- posts
@pytest.mark.parametrize("make", [change_line, repage], ids=["change-line", "repage"])
async def test_a_line_for_a_deleted_card_goes_to_the_channel_once(env: Env, make: Maker) -> None:
    row_id, _ = await make(env)
    (job_card,) = [
        m for m in env.sink.top_level(CHANNEL) if (m.metadata or {}).get("event_type") == CARD_EVENT
    ]
    key = job_card.metadata["event_payload"]["job_key"] if job_card.metadata else ""
    # somebody deleted the card and what its thread held (the alert, for a re-page)
    for message in [job_card, *env.sink.replies(CHANNEL, job_card.ts)]:
        await env.service.slack.chat_delete(channel=CHANNEL, ts=message.ts)
    assert not env.sink.channels[CHANNEL]
    env.clock.advance(1.0)
    made = await tick(env)
    assert [p.get("thread_ts") for m, p in made if m == "chat.postMessage"] == [job_card.ts]
    row = await outbox(env, row_id)
    assert (row.state, row.last_error) == ("pending", "not_posted: thread_not_found")
    assert await env.service.store.get_card(channel_id=CHANNEL, job_key=key) is None
    await drain(env)
    (ts,) = posted(env, row_id)
    (line,) = [m for m in env.sink.top_level(CHANNEL) if m.ts == ts]
    assert line.thread_ts is None  # in the channel, not in a thread that is gone
    assert (await outbox(env, row_id)).state == "sent"


@pytest.mark.parametrize(
    ("kind", "payload"),
    [("subscription_changed", '{"events": []}'), (REPAGE_KIND, '{"note": "repage"}')],
    ids=["change-line", "repage"],
)
async def test_an_unreadable_row_is_dropped_and_the_next_goes(
    env: Env, caplog: pytest.LogCaptureFixture, kind: str, payload: str
) -> None:
    """A row this version cannot read (a hand edit, a version's row it does not know)."""
    key = await watch(env, CHANNEL)
    await tick(env)
    env.clock.advance(1.0)
    broken = NewOutboxRow(
        dedupe_key="test:broken", channel_id=CHANNEL, job_key=key, kind=kind, payload=payload
    )
    await env.service.store.enqueue([broken])
    status, _, _ = await env.command(f"mute {key} 2h", channel=CHANNEL)
    assert status == 200
    after = await pending_of(env, "subscription_changed")
    with caplog.at_level(logging.ERROR, logger="bot.slack.sender"):
        await drain(env)
    (dead,) = await env.service.store.rows_in_state("dead")
    assert dead.dedupe_key == "test:broken"
    assert (dead.last_error or "").startswith("unrenderable: outbox payload ")
    assert f"outbox row {dead.id} cannot be rendered, dropping it" in caplog.text
    assert not posted(env, dead.id) and len(posted(env, after)) == 1


# ----------------------------------------------------------------------------- the alert edit
async def acknowledged(env: Env) -> tuple[str, int]:
    """A FAILED alert acknowledged by Alice: the thread line and the edit are queued."""
    people(env)
    key, alert = await failed_alert(env)
    await click(env, button_values(alert)[0], user="U0ALICE")
    return key, await pending_of(env, "oncall_edit")


async def test_an_alert_deleted_in_slack_is_not_edited_and_the_ack_line_still_goes(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    key, edit = await acknowledged(env)
    alert = thread(env, key)[0]
    await env.service.slack.chat_delete(channel=CHANNEL, ts=alert.ts)
    with caplog.at_level(logging.WARNING, logger="bot.slack.sender"):
        await send(env)
    row = await outbox(env, edit)
    assert (row.state, row.last_error) == ("dead", "message_not_found")
    assert f"cannot edit alert {alert.ts} (message_not_found); leaving it" in caplog.messages
    assert edits_of(env, alert.ts) == [alert.ts]  # not tried again
    (line,) = thread(env, key)
    assert line.text.startswith("✅ Acknowledged by <@U0ALICE> after")


async def test_an_alert_edit_slack_fails_for_a_passing_reason_is_made_later_once(
    env: Env,
) -> None:
    key, edit = await acknowledged(env)
    env.sink.add_fault(SlackFault(kind="status", status=503, method="chat.update", count=1))
    alert = thread(env, key)[0]
    for _ in range(5):  # the ack line first (same lane), then the edit
        env.clock.advance(1.0)
        await tick(env)
        if edits_of(env, alert.ts):
            break
    row = await outbox(env, edit)
    # a 503 on an edit: repeating it is harmless, so no lookup before the retry
    assert (row.state, row.last_error) == ("pending", "not_posted: fatal_error")
    await drain(env)
    assert len(edits_of(env, alert.ts)) == 2
    assert (alert.edits, button_values(alert)) == (1, [])
    assert (await outbox(env, edit)).state == "sent"
    assert not calls(env, "conversations.history", CHANNEL)


def alert_row(env: Env, key: str) -> int:
    """The outbox id of the alert message (its metadata names it)."""
    meta = thread(env, key)[0].metadata
    assert meta is not None
    return int(meta["event_payload"]["outbox_id"])


async def test_an_ack_after_retention_forgot_the_alerts_row_drops_only_the_edit(
    env: Env,
) -> None:
    """The alert waited unacknowledged longer than the outbox retention: its sent row was
    pruned; the acknowledgement is still told in the thread, the edit has nothing to edit."""
    people(env)
    key, alert = await failed_alert(env)
    env.clock.advance(WEEK + 60.0)
    await env.service.store.prune_outbox(retention=WEEK)
    assert await env.service.store.get_outbox_row(alert_row(env, key)) is None
    await click(env, button_values(alert)[0], user="U0ALICE")
    edit = await pending_of(env, "oncall_edit")
    await send(env)
    row = await outbox(env, edit)
    assert (row.state, row.last_error) == ("dead", "the alert message is gone")
    assert not edits_of(env, thread(env, key)[0].ts)
    assert thread(env, key)[-1].text.startswith("✅ Acknowledged by <@U0ALICE> after")
    assert button_values(thread(env, key)[0])  # the alert itself is left as it was


async def test_an_alert_whose_row_cannot_be_read_any_more_drops_only_the_edit(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    key, edit = await acknowledged(env)
    raw = sqlite3.connect(env.service.settings.database_path)
    with raw:  # what this version cannot draw (a hand edit, another version's row)
        raw.execute("UPDATE outbox SET payload = ? WHERE id = ?", ("[]", alert_row(env, key)))
    raw.close()
    with caplog.at_level(logging.ERROR, logger="bot.slack.sender"):
        await send(env)
    dead = await outbox(env, edit)
    why = "outbox payload is not a JSON object"
    assert (dead.state, dead.last_error) == ("dead", f"unrenderable: {why}")
    assert f"outbox row {edit} cannot be rendered, dropping it: {why}" in caplog.messages
    assert not edits_of(env, thread(env, key)[0].ts)
    assert thread(env, key)[-1].text.startswith("✅ Acknowledged by <@U0ALICE>")
