"""The sender against the Slack sink over real HTTP: nothing lost, nothing doubled.

Each test drives `Sender.tick()` on the manual clock; outbox rows are enqueued the way the
poller enqueues them (a `Notification` as an outbox row), so what is under test is delivery
alone.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import time
import uuid
from typing import Any

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.diff import headline_kind
from bot.core.events import Event, EventKind
from bot.core.models import Snapshot
from bot.core.notification import Notification, read_notification
from bot.engine.jobs import outbox_row
from bot.metrics import Metrics
from bot.slack.sender import Sender, SenderConfig
from simulator.slack import SinkMessage, SlackFault
from store import NewOutboxRow, OutboxRow
from tests.conftest import Env, wait_for
from tests.scripts import CHAMPION_TRAINING, LIFECYCLE

ONCALL = "<!subteam^S0ONCALL|@oncall>"
SEED = 20
Call = tuple[str, dict[str, Any]]


# ----------------------------------------------------------------------------- helpers
async def watch(env: Env, *channels: str, mention: str | None = None) -> str:
    """A scripted job subscribed (by slash command) in each channel; returns its key."""
    key = env.sim.script_job(LIFECYCLE, training=CHAMPION_TRAINING)
    for channel in channels:
        text = f"subscribe {key}" + (f" --mention {mention}" if mention else "")
        status, _, url = await env.command(text, channel=channel)
        assert status == 200
        await env.reply(url)
    return key


def best(key: str, value: float) -> Event:
    return Event(
        kind=EventKind.NEW_BEST,
        job_key=key,
        algorithm="BSEV02",
        performance=value,
        previous_performance=round(value - 0.01, 4),
    )


def job_status(key: str, new: str, old: str = "RUNNING") -> Event:
    return Event(kind=EventKind.JOB_STATUS, job_key=key, old_status=old, new_status=new)


def algorithm_failed(key: str) -> Event:
    return Event(
        kind=EventKind.ALGORITHM_STATUS,
        job_key=key,
        algorithm="BSEV01",
        old_status="RUNNING",
        new_status="FAILED",
    )


async def enqueue(env: Env, channel: str, *events: Event, mention: str | None = None) -> int:
    """One notification row, as the poller writes it; returns its outbox id."""
    notification = Notification(
        channel_id=channel,
        job_key=events[0].job_key,
        subscription_id=None,
        events=events,
        snapshot=None,
        headline=headline_kind(events),
        mention=mention,
        dedupe_key=f"test:{uuid.uuid4()}",
    )
    return await enqueue_row(env, outbox_row(notification))


async def enqueue_row(env: Env, row: NewOutboxRow) -> int:
    assert (await env.service.store.enqueue([row])) == 1
    pending = await env.service.store.rows_in_state("pending")
    return next(r.id for r in pending if r.dedupe_key == row.dedupe_key)


async def outbox(env: Env, row_id: int) -> OutboxRow:
    row = await env.service.store.get_outbox_row(row_id)
    assert row is not None
    return row


async def tick(env: Env, sender: Sender | None = None) -> list[Call]:
    """One sender tick; returns the Slack calls it made."""
    before = len(env.sink.calls)
    await (sender or env.service.sender).tick()
    return env.sink.calls[before:]


def note_ids(env: Env, channel: str) -> list[int]:
    """Outbox ids named by the thread replies in the channel, in the channel's order."""
    return [
        m.metadata["event_payload"]["outbox_id"]
        for m in env.sink.channels.get(channel, [])
        if m.metadata and m.metadata["event_type"] == "mathfi_notification"
    ]


def calls(env: Env, method: str, channel: str) -> list[dict[str, Any]]:
    return [p for m, p in env.sink.calls if m == method and p.get("channel") == channel]


async def settled(env: Env) -> bool:
    counts = await env.service.store.outbox_counts()
    return counts["pending"] + counts["sending"] == 0 and not (
        await env.service.store.dirty_cards()
    )


async def drain(env: Env, sender: Sender | None = None, *, step: float = 1.0) -> None:
    for _ in range(60):
        if await settled(env):
            return
        env.clock.advance(step)
        await tick(env, sender)
    raise AssertionError(f"outbox not drained: {(await env.service.store.outbox_counts())}")


def fresh_sender(
    env: Env, client: AsyncWebClient | None = None, *, rng: random.Random | None = None
) -> Sender:
    """A second Sender on the same store, as after a restart of the process."""
    return Sender(
        env.service.store,
        client or env.service.slack,
        metrics=Metrics(),
        config=SenderConfig(pace=1.0, backoff_base=1.0, backoff_max=30.0),
        clock=env.clock,
        rng=rng,
    )


async def settle_after_restart(env: Env, sender: Sender) -> None:
    """Tick through the wait after a restart: a row interrupted mid-call is neither looked up
    nor posted before its call's start + the client timeout + a margin (one more timeout)."""
    settle = 2 * env.service.settings.slack_timeout
    before = len(env.sink.calls)
    for _ in range(int(settle) - 1):
        env.clock.advance(1.0)
        await tick(env, sender)
    assert [m for m, _ in env.sink.calls[before:] if m != "chat.update"] == []
    env.clock.advance(1.0)


# ----------------------------------------------------------------------------- 429 and 5xx
async def test_429_storm_waits_retry_after_and_loses_nothing(env: Env) -> None:
    key = await watch(env, "C1", "C2")
    assert [p["channel"] for _, p in await tick(env)] == ["C1", "C2"]  # both cards, one tick
    env.clock.advance(1.0)
    ids: dict[str, list[int]] = {"C1": [], "C2": []}
    for i in range(3):
        for channel in ("C1", "C2"):
            ids[channel].append(await enqueue(env, channel, best(key, 0.70 + i / 100)))
    for retry_after in (1, 2, 4):  # a storm with growing Retry-After values
        env.sink.add_fault(
            SlackFault(
                kind="ratelimit",
                method="chat.postMessage",
                channel="C1",
                count=1,
                retry_after=retry_after,
            )
        )
    posted: dict[str, list[float]] = {"C1": [], "C2": []}
    limited: list[float] = []
    for _ in range(80):
        for method, params in await tick(env):
            if method == "chat.postMessage":
                posted[params["channel"]].append(env.clock())
        head = await outbox(env, ids["C1"][0])
        if head.state == "pending" and head.attempts > len(limited):
            limited.append(head.next_attempt_at - env.clock())
        if await settled(env):
            break
        env.clock.advance(0.25)
    assert limited == [1.0, 2.0, 4.0]  # next_attempt_at = now + Retry-After, each time
    t = posted["C1"]
    assert [b - a for a, b in itertools.pairwise(t)] == [1.0, 2.0, 4.0, 1.0, 1.0]
    assert posted["C2"] == [t[0], t[0] + 1.0, t[0] + 2.0]  # C2 was never held back
    assert note_ids(env, "C1") == ids["C1"] and note_ids(env, "C2") == ids["C2"]
    assert all([(await outbox(env, i)).state == "sent" for i in ids["C1"] + ids["C2"]])
    assert not calls(env, "conversations.replies", "C1")  # a 429 certainly did not post


async def test_5xx_burst_retries_with_backoff_and_loses_nothing(env: Env) -> None:
    key = await watch(env, "C1")
    await tick(env)
    env.clock.advance(1.0)
    ids = [(await enqueue(env, "C1", best(key, 0.70 + i / 100))) for i in range(3)]
    for status in (500, 503):
        env.sink.add_fault(
            SlackFault(kind="status", status=status, method="chat.postMessage", count=2)
        )
    sender = fresh_sender(env, rng=random.Random(SEED))
    jitter = random.Random(SEED)  # the same draws, to compute what the delays must be
    gate = 0.0
    delays: list[float] = []
    for _ in range(200):
        made = await tick(env, sender)
        assert not made or env.clock() >= gate, "retried before its backoff ended"
        head = await outbox(env, ids[0])
        if head.state == "pending" and any(m == "chat.postMessage" for m, _ in made):
            delays.append(head.next_attempt_at - env.clock())
            gate = head.next_attempt_at
        if await settled(env):
            break
        env.clock.advance(0.5)
    # full-jitter exponential backoff: uniform(0, base * 2**attempts), the cap doubling
    assert delays == pytest.approx([jitter.uniform(0, 1.0 * 2**n) for n in (1, 2, 3, 4)])
    assert (await outbox(env, ids[0])).attempts == 5  # 4 failures, then the post
    assert note_ids(env, "C1") == ids  # each exactly once, in order
    assert len(calls(env, "conversations.replies", "C1")) == 4  # each unknown outcome looked up


@pytest.mark.parametrize("shared_session", [False, True], ids=["own-session", "shared-session"])
async def test_hang_past_timeout_is_looked_up_not_doubled(env: Env, shared_session: bool) -> None:
    key = await watch(env, "C1")
    await tick(env)
    env.clock.advance(1.0)
    row_id = await enqueue(env, "C1", best(key, 0.75))
    env.sink.add_fault(SlackFault(kind="hang", seconds=0.8, method="chat.postMessage", count=1))
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(
            token=env.sink.token,
            base_url=env.sink.api_url,
            timeout=0.3,  # type: ignore[arg-type]
            session=session if shared_session else None,
            retry_handlers=[],
        )
        sender = fresh_sender(env, client)
        started = time.monotonic()
        await tick(env, sender)
        assert time.monotonic() - started < 0.7, "the client timeout was not honoured"
        row = await outbox(env, row_id)
        assert row.state == "pending" and "Timeout" in (row.last_error or "")
        # Slack did post it, late: the retry must find it rather than post again.
        await wait_for(lambda: note_ids(env, "C1") == [row_id], timeout=3.0)
        await drain(env, sender)
    assert note_ids(env, "C1") == [row_id]
    assert len(calls(env, "chat.postMessage", "C1")) == 2  # the card and the hung reply
    assert calls(env, "conversations.replies", "C1")
    assert (await outbox(env, row_id)).slack_ts == env.sink.channels["C1"][-1].ts


# ----------------------------------------------------------------------------- crashes
@pytest.mark.parametrize("target", ["card", "reply"])
async def test_answer_lost_after_commit_is_found_not_reposted(env: Env, target: str) -> None:
    key = await watch(env, "C1")
    fault = SlackFault(kind="fail_after_commit", method="chat.postMessage", count=1)
    if target == "reply":
        await tick(env)
        env.clock.advance(1.0)
        row_id = await enqueue(env, "C1", best(key, 0.75))
    else:
        row_id = (await env.service.store.rows_in_state("pending"))[0].id
    env.sink.add_fault(fault)
    await tick(env)
    assert (await outbox(env, row_id)).state == "pending"  # Slack stored it, we heard a 500
    await drain(env)
    row = await outbox(env, row_id)
    assert row.state == "sent"
    card = env.sink.top_level("C1")
    assert len(card) == 1
    assert (await env.service.store.get_card(channel_id="C1", job_key=key)).ts == card[0].ts  # type: ignore[union-attr]
    if target == "reply":
        assert note_ids(env, "C1") == [row_id]
        assert row.slack_ts == env.sink.replies("C1", card[0].ts)[0].ts
        assert len(calls(env, "conversations.replies", "C1")) == 1
    else:
        assert row.slack_ts == card[0].ts
        assert len(calls(env, "conversations.history", "C1")) == 1
    assert len(calls(env, "chat.postMessage", "C1")) == (2 if target == "reply" else 1)


@pytest.mark.parametrize("reached_slack", [True, False], ids=["posted", "never-posted"])
async def test_restart_reconciles_a_card_left_sending(env: Env, reached_slack: bool) -> None:
    key = await watch(env, "C1")
    (row,) = await env.service.store.rows_in_state("pending")
    await env.service.store.mark_sending(row.id)
    if reached_slack:  # the process died after Slack stored the card, before save_card
        metadata = {
            "event_type": "mathfi_card",
            "event_payload": {"outbox_id": row.id, "job_key": key, "kind": row.kind},
        }
        await env.service.slack.chat_postMessage(channel="C1", text="card", metadata=metadata)
    sender = fresh_sender(env)
    assert (await sender.reconcile()) == 1
    await settle_after_restart(env, sender)
    await tick(env, sender)
    (card,) = env.sink.top_level("C1")
    assert (await outbox(env, row.id)).state == "sent" and (
        await outbox(env, row.id)
    ).slack_ts == card.ts
    assert (await env.service.store.get_card(channel_id="C1", job_key=key)).ts == card.ts  # type: ignore[union-attr]
    assert len(calls(env, "chat.postMessage", "C1")) == 1
    assert len(calls(env, "conversations.history", "C1")) == 1


@pytest.mark.parametrize("reached_slack", [True, False], ids=["posted", "never-posted"])
async def test_restart_reconciles_a_reply_left_sending(env: Env, reached_slack: bool) -> None:
    key = await watch(env, "C1")
    await tick(env)
    env.clock.advance(1.0)
    row_id = await enqueue(env, "C1", best(key, 0.75))
    await env.service.store.mark_sending(row_id)
    if reached_slack:  # the post went out; the process died before mark_sent
        row = await outbox(env, row_id)
        notification = read_notification(
            row.payload,
            channel_id=row.channel_id,
            job_key=row.job_key,
            kind=row.kind,
            dedupe_key=row.dedupe_key,
        )
        await env.service.sender._rows._post_row(row, notification)
    assert note_ids(env, "C1") == ([row_id] if reached_slack else [])
    sender = fresh_sender(env)
    assert (await sender.reconcile()) == 1
    await settle_after_restart(env, sender)
    await drain(env, sender)
    assert note_ids(env, "C1") == [row_id]
    assert (await outbox(env, row_id)).state == "sent"
    assert (await outbox(env, row_id)).slack_ts == env.sink.channels["C1"][-1].ts
    assert len(calls(env, "chat.postMessage", "C1")) == 2  # card + the one reply
    assert len(calls(env, "conversations.replies", "C1")) == 1


# ----------------------------------------------------------------------------- permanent errors
@pytest.mark.parametrize(
    ("error", "hint"),
    [
        ("channel_not_found", "cannot find"),
        ("not_in_channel", "/invite"),
        ("is_archived", "archived"),
    ],
)
async def test_permanent_error_disables_channel_and_others_go_on(
    env: Env, error: str, hint: str
) -> None:
    key = await watch(env, "CBAD", "COK")
    await tick(env)
    env.clock.advance(1.0)
    bad = [(await enqueue(env, "CBAD", best(key, 0.70 + i / 100))) for i in range(2)]
    ok = await enqueue(env, "COK", best(key, 0.70))
    if error == "is_archived":
        env.sink.archive("CBAD")
    else:
        env.sink.add_fault(SlackFault(kind="error", error=error, channel="CBAD"))
    await tick(env)
    (view,) = await env.service.store.list_subscriptions(channel_id="CBAD")
    assert view.subscription.disabled_reason and hint in view.subscription.disabled_reason
    assert [((await outbox(env, i)).state, (await outbox(env, i)).last_error) for i in bad] == [
        ("dead", error)
    ] * 2
    assert (await outbox(env, ok)).state == "sent"
    bad_calls = len(env.sink.calls)
    # The job moves on: the poller marks every card of the job stale, COK gets a reply.
    env.sim.advance(key)
    env.clock.advance(20.0)
    await env.service.poller.tick()
    await drain(env)
    for _ in range(5):
        env.clock.advance(1.0)
        await tick(env)
    assert not [p for _, p in env.sink.calls[bad_calls:] if p.get("channel") == "CBAD"]
    assert len(note_ids(env, "COK")) == 2
    (cok,) = await env.service.store.list_subscriptions(channel_id="COK")
    assert cok.subscription.delivering


async def test_unrenderable_row_is_dropped_and_does_not_block_its_channel(env: Env) -> None:
    key = await watch(env, "C1")
    await tick(env)
    env.clock.advance(1.0)
    broken = NewOutboxRow(
        dedupe_key="test:broken", channel_id="C1", job_key=key, kind="new_best", payload="{}"
    )
    await env.service.store.enqueue([broken])
    after = await enqueue(env, "C1", best(key, 0.75))
    await drain(env)
    (dead,) = await env.service.store.rows_in_state("dead")
    assert dead.dedupe_key == "test:broken" and (dead.last_error or "").startswith("unrenderable")
    assert note_ids(env, "C1") == [after]


def legacy_payload(
    events: list[Event], *, version: int, mention: str | None, snapshot: Snapshot | None
) -> str:
    """An outbox payload as the poller wrote it before the outbox held versioned
    notifications (`notification_payload`); a running deployment may still hold some."""
    return json.dumps(
        {
            "version": version,
            "mention": mention,
            "events": [e.model_dump(mode="json", exclude_none=True) for e in events],
            "snapshot": snapshot.model_dump(mode="json") if snapshot is not None else None,
        },
        sort_keys=True,
    )


async def test_rows_queued_before_the_upgrade_are_still_delivered(env: Env) -> None:
    key = await watch(env, "C1")
    await tick(env)
    env.clock.advance(1.0)
    seen = Snapshot(job_key=key, status="FAILED", target_performance=0.777)
    reply = await enqueue_row(
        env,
        NewOutboxRow(
            dedupe_key=f"{key}:v7:C1",
            channel_id="C1",
            job_key=key,
            kind="job_status",
            payload=legacy_payload(
                [job_status(key, "FAILED")], version=7, mention=ONCALL, snapshot=seen
            ),
        ),
    )
    card = await enqueue_row(  # the old subscribe command's first card, for another channel
        env,
        NewOutboxRow(
            dedupe_key=f"{key}:watch:C2:1.000000:abcd",
            channel_id="C2",
            job_key=key,
            kind="watch_started",
            payload='{"events": []}',
        ),
    )
    await drain(env)
    assert (await outbox(env, reply)).state == "sent" and (await outbox(env, card)).state == "sent"
    (posted,) = env.sink.replies("C1", env.sink.top_level("C1")[0].ts)
    assert posted.text.startswith(f"{ONCALL} ") and posted.reply_broadcast
    assert "target 0.777" in str(posted.blocks)  # drawn from the snapshot the row carries
    (c2_card,) = env.sink.top_level("C2")
    assert (await outbox(env, card)).slack_ts == c2_card.ts


# ----------------------------------------------------------------------------- pacing and edits
async def test_pacing_per_channel_not_across_channels(env: Env) -> None:
    key = await watch(env, "C1", "C2")
    await tick(env)
    env.clock.advance(1.0)
    first, second = (
        (await enqueue(env, "C1", best(key, 0.7))),
        (await enqueue(env, "C1", best(key, 0.71))),
    )
    other = await enqueue(env, "C2", best(key, 0.7))
    at: dict[int, float] = {}

    def record(kind: str, message: SinkMessage) -> None:
        if kind == "post" and message.metadata:
            at.setdefault(message.metadata["event_payload"]["outbox_id"], env.clock())

    env.sink.subscribe(record)
    start = env.clock()
    made = await tick(env)
    assert sorted(p["channel"] for _, p in made) == ["C1", "C2"]  # one tick, both channels
    for _ in range(3):  # 0.75 s later: C1 is still paced (card edits have a pace of their own)
        env.clock.advance(0.25)
        assert not [call for call in await tick(env) if call[0] == "chat.postMessage"]
    env.clock.advance(0.25)
    await tick(env)
    assert at == {first: start, other: start, second: start + 1.0}


async def test_several_card_edits_due_at_once_are_one_update(env: Env) -> None:
    key = await watch(env, "C1", "C2")
    await tick(env)
    env.clock.advance(1.0)
    for _ in range(3):  # three polls changed the job before the sender came round
        for channel in ("C1", "C2"):
            await env.service.store.mark_card_dirty(channel_id=channel, job_key=key)
    made = await tick(env)
    env.clock.advance(1.2)  # the workspace's chat.update budget: 50 a minute
    made += await tick(env)
    assert sorted((m, p["channel"]) for m, p in made) == [
        ("chat.update", "C1"),
        ("chat.update", "C2"),
    ]
    env.clock.advance(1.2)
    assert not await tick(env)
    # Two replies in a row make the card stale twice: it is edited once, after both.
    ids = [(await enqueue(env, "C1", best(key, 0.7))), (await enqueue(env, "C1", best(key, 0.71)))]
    before = len(env.sink.calls)
    await drain(env)
    methods = [m for m, p in env.sink.calls[before:] if p.get("channel") == "C1"]
    assert methods == ["chat.postMessage", "chat.postMessage", "chat.update"]
    assert note_ids(env, "C1") == ids
    assert env.sink.top_level("C1")[0].edits == 2


# ----------------------------------------------------------------------------- what is posted
async def test_metadata_broadcast_and_on_call_mention(env: Env) -> None:
    key = await watch(env, "C1", mention=ONCALL)
    (watch_row,) = await env.service.store.rows_in_state("pending")
    await tick(env)
    (card,) = env.sink.top_level("C1")
    assert card.metadata == {
        "event_type": "mathfi_card",
        "event_payload": {"outbox_id": watch_row.id, "job_key": key, "kind": "watch_started"},
    }
    sub = await env.service.store.get_subscription(channel_id="C1", job_key=key)
    assert sub is not None and sub.mention == ONCALL
    cases = [  # (events, broadcast, mention)
        ([best(key, 0.75)], False, False),
        ([job_status(key, "FAILED")], True, True),
        ([job_status(key, "TIMED_OUT")], True, True),
        ([job_status(key, "NOT_COMPLETED")], True, True),
        ([job_status(key, "COMPLETED"), best(key, 0.86)], True, False),
        ([job_status(key, "CANCELLED")], True, False),
        ([job_status(key, "RUNNING", old="PENDING")], False, False),
        ([algorithm_failed(key)], False, False),  # one algorithm failing is no alert
    ]
    expected: dict[int, tuple[bool, bool]] = {}
    for events, broadcast, mention in cases:
        # each on its own: a final reply would carry the progress queued before it
        expected[await enqueue(env, "C1", *events, mention=sub.mention)] = (broadcast, mention)
        await drain(env)
    replies = env.sink.replies("C1", card.ts)
    assert [r.metadata["event_payload"]["outbox_id"] for r in replies if r.metadata] == list(
        expected
    )
    for reply in replies:
        assert reply.metadata is not None
        row = await outbox(env, reply.metadata["event_payload"]["outbox_id"])
        assert reply.metadata == {
            "event_type": "mathfi_notification",
            "event_payload": {"outbox_id": row.id, "job_key": key, "kind": row.kind},
        }
        broadcast, mention = expected[row.id]
        assert (reply.reply_broadcast, reply.text.startswith(ONCALL)) == (broadcast, mention)
        assert row.slack_ts == reply.ts


async def test_a_deleted_card_is_posted_again_with_the_reply(env: Env) -> None:
    key = await watch(env, "C1")
    await tick(env)
    old = await env.service.store.get_card(channel_id="C1", job_key=key)
    assert old is not None and old.ts is not None
    # Somebody deleted the card in Slack: its thread no longer exists.
    await env.service.store.save_card(channel_id="C1", job_key=key, ts="1000000000.000001")
    env.clock.advance(1.0)
    row = await enqueue(env, "C1", best(key, 0.7))
    await tick(env)  # thread_not_found: the card is forgotten, the row retried at once
    assert (await outbox(env, row)).state == "pending"
    assert (await env.service.store.get_card(channel_id="C1", job_key=key)) is None
    env.clock.advance(1.0)
    await tick(env)
    env.clock.advance(1.0)
    await tick(env)
    assert (await outbox(env, row)).state == "sent"
    cards = [m for m in env.sink.top_level("C1")]
    assert len(cards) == 2  # the original (now "deleted" for us) and the new one
    assert note_ids(env, "C1") == [row]
    assert env.sink.replies("C1", cards[-1].ts)[0].metadata["event_payload"]["outbox_id"] == row


async def test_a_busy_thread_does_not_starve_its_card(env: Env) -> None:
    key = await watch(env, "C1")
    await tick(env)
    updates_before = len(calls(env, "chat.update", "C1"))
    other = env.sim.script_job(LIFECYCLE, training=CHAMPION_TRAINING)
    _, _, url = await env.command(f"subscribe {other}", channel="C1")
    await env.reply(url)
    for value in (0.70, 0.71, 0.72, 0.73):  # a long queue in C1 for the other job
        await enqueue(env, "C1", best(other, value))
    await env.service.store.mark_card_dirty(channel_id="C1", job_key=key)
    for _ in range(3):
        env.clock.advance(1.0)
        await tick(env)
    # The first job's card was edited while the other job's replies were still queued.
    assert len(calls(env, "chat.update", "C1")) > updates_before
    assert (await env.service.store.outbox_counts())["pending"] > 0


# ----------------------------------------------------------------------------- late completion
def short_timeout_sender(env: Env, session: aiohttp.ClientSession) -> Sender:
    """A sender whose Slack client gives up after 0.3 s (so its calls settle after 0.6 s)."""
    client = AsyncWebClient(
        token=env.sink.token,
        base_url=env.sink.api_url,
        timeout=0.3,  # type: ignore[arg-type]
        session=session,
        retry_handlers=[],
    )
    return fresh_sender(env, client)


@pytest.mark.parametrize("target", ["card", "reply"])
async def test_a_copy_that_lands_after_the_re_post_is_deleted(env: Env, target: str) -> None:
    """Slack completes a call later than the lookup can see it: the row is posted again,
    then the late copy is found and deleted; the store's message (and card) stay."""
    key = await watch(env, "C1")
    async with aiohttp.ClientSession() as session:
        sender = short_timeout_sender(env, session)
        if target == "reply":
            await tick(env, sender)
            env.clock.advance(1.0)
            row_id = await enqueue(env, "C1", best(key, 0.75))
        else:
            row_id = (await env.service.store.rows_in_state("pending"))[0].id
        env.sink.add_fault(SlackFault(kind="hang", seconds=1.5, method="chat.postMessage", count=1))
        await tick(env, sender)  # times out after 0.3 s; Slack is still working on it
        assert (await outbox(env, row_id)).state == "pending"
        env.clock.advance(2.0)
        await tick(env, sender)  # looked up: nothing yet; posted again
        row = await outbox(env, row_id)
        assert row.state == "sent" and row.verify_at is not None
        await env.sink.settle()  # the held call lands now: two copies
        mine = env.sink.top_level("C1") if target == "card" else env.sink.channels["C1"][1:]
        assert len(mine) == 2
        env.clock.advance(1.0)
        await tick(env, sender)
    deleted = [p["ts"] for p in calls(env, "chat.delete", "C1")]
    assert len(deleted) == 1 and deleted[0] != row.slack_ts
    (card,) = env.sink.top_level("C1")
    stored = await env.service.store.get_card(channel_id="C1", job_key=key)
    assert stored is not None and stored.ts == card.ts
    if target == "card":
        assert row.slack_ts == card.ts
    else:
        assert note_ids(env, "C1") == [row_id]
        assert env.sink.replies("C1", card.ts)[0].ts == row.slack_ts
    await env.service.store.mark_card_dirty(channel_id="C1", job_key=key)
    env.clock.advance(5.0)
    await tick(env)
    assert calls(env, "chat.update", "C1")[-1]["ts"] == card.ts  # edits go to the kept card


async def test_late_copy_looks_stop_after_four(env: Env) -> None:
    key = await watch(env, "C1")
    async with aiohttp.ClientSession() as session:
        sender = short_timeout_sender(env, session)
        await tick(env, sender)
        env.clock.advance(1.0)
        row_id = await enqueue(env, "C1", best(key, 0.75))
        env.sink.add_fault(
            SlackFault(kind="status", status=500, method="chat.postMessage", count=1)
        )
        await tick(env, sender)
        env.clock.advance(2.0)
        await tick(env, sender)  # looked up (nothing), posted: looks at 0.6, 1.2, 2.4, 4.8 s
        row = await outbox(env, row_id)
        assert row.call_started_at is not None
        looks = []
        for _ in range(60):
            before = len(calls(env, "conversations.replies", "C1"))
            env.clock.advance(0.1)
            await tick(env, sender)
            if len(calls(env, "conversations.replies", "C1")) > before:
                looks.append(round(env.clock() - row.call_started_at, 1))
    planned = [0.6, 1.2, 2.4, 4.8]  # each at its time, or when the channel's pace allows
    assert len(looks) == 4 and all(0 <= at - p <= 0.6 for at, p in zip(looks, planned, strict=True))
    assert (await outbox(env, row_id)).verify_at is None
    assert not calls(env, "chat.delete", "C1")


# ----------------------------------------------------------------------------- only our messages
LOOK_ALIKE = {"user": "U0OTHERAPP", "bot_id": "B0OTHERAPP"}


@pytest.mark.parametrize("target", ["card", "reply"])
async def test_reconciliation_ignores_a_look_alike_from_another_app(
    env: Env, target: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11 hole 8: another app's message with the row's metadata is not adopted."""
    key = await watch(env, "C1")
    if target == "reply":
        await tick(env)
        env.clock.advance(1.0)
        row_id = await enqueue(env, "C1", best(key, 0.75))
        thread: str | None = env.sink.top_level("C1")[0].ts
        event = "mathfi_notification"
    else:
        row_id = (await env.service.store.rows_in_state("pending"))[0].id
        thread, event = None, "mathfi_card"
    row = await outbox(env, row_id)
    metadata = {
        "event_type": event,
        "event_payload": {"outbox_id": row_id, "job_key": key, "kind": row.kind},
    }
    fake = env.sink.plant("C1", "look-alike", metadata=metadata, thread_ts=thread, **LOOK_ALIKE)
    await env.service.store.mark_sending(row_id)  # the process dies mid-call
    sender = fresh_sender(env)
    assert (await sender.reconcile()) == 1
    with caplog.at_level(logging.WARNING, logger="bot.slack.api"):
        await settle_after_restart(env, sender)
        await drain(env, sender)
    row = await outbox(env, row_id)
    assert row.state == "sent" and row.slack_ts != fake.ts
    ours = env.sink.top_level("C1") if target == "card" else env.sink.replies("C1", thread or "")
    assert [m.ts for m in ours if m.bot_id == env.sink.bot_id] == [row.slack_ts]
    assert fake in env.sink.channels["C1"]  # another app's message is left alone
    warned = [r for r in caplog.records if fake.ts in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING


async def test_a_look_alike_is_warned_about_once(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    key = await watch(env, "C1")
    await tick(env)
    card = env.sink.top_level("C1")[0]
    env.clock.advance(1.0)
    row_id = await enqueue(env, "C1", best(key, 0.75))
    metadata = {
        "event_type": "mathfi_notification",
        "event_payload": {"outbox_id": row_id, "job_key": key, "kind": "new_best"},
    }
    env.sink.plant("C1", "look-alike", metadata=metadata, thread_ts=card.ts, **LOOK_ALIKE)
    env.sink.add_fault(SlackFault(kind="status", status=500, method="chat.postMessage", count=2))
    with caplog.at_level(logging.WARNING, logger="bot.slack.api"):
        await drain(env)  # two failed posts: two lookups see the look-alike
    assert len(calls(env, "conversations.replies", "C1")) == 2
    assert len([r for r in caplog.records if "not by this bot" in r.getMessage()]) == 1
    assert note_ids(env, "C1") == [row_id, row_id]  # the look-alike and ours
    assert (await outbox(env, row_id)).slack_ts == env.sink.replies("C1", card.ts)[-1].ts
