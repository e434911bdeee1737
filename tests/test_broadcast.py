"""`--broadcast final|failures|none` (issue #14 point 2): parsed, stored, kept on a
re-subscribe, audited, listed, and obeyed by the sender (`reply_broadcast`)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bot.core.broadcast import BroadcastMode, broadcasts
from bot.core.events import Event, EventKind
from bot.core.notification import read_notification
from bot.slack.command_text import CommandError, Subscribe, parse_command
from store import Store
from tests.conftest import Env
from tests.scripts import CHAMPION_TRAINING, LIFECYCLE

KEY = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


# ---- parsing --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"subscribe {KEY}", None),
        (f"subscribe {KEY} --broadcast final", "final"),
        (f"subscribe {KEY} --broadcast failures", "failures"),
        (f"subscribe {KEY} --broadcast none", "none"),
        (f"subscribe {KEY} --broadcast=NONE", "none"),
        (f"subscribe {KEY} --events status --broadcast Failures", "failures"),
        (f"subscribe {KEY} \u2014broadcast none", "none"),  # a dash macOS made of "--"
    ],
)
def test_broadcast_option_parses(text: str, expected: str | None) -> None:
    command = parse_command(text)
    assert isinstance(command, Subscribe) and command.broadcast == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"subscribe {KEY} --broadcast loud", "`--broadcast` must be final, failures or none"),
        (f"subscribe {KEY} --broadcast", "`--broadcast` needs a value."),
        (f"subscribe {KEY} --broadcast none --broadcast final", "given more than once"),
        (f"subscribe {KEY} --brodcast none", "Did you mean `--broadcast`?"),
        (f"mute {KEY} 1h --broadcast none", "`mute` takes no options"),
    ],
)
def test_bad_broadcast_options_are_explained(text: str, message: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(text)
    assert message in caught.value.message


# ---- which replies reach the channel ---------------------------------------------------
def status(new: str, old: str = "RUNNING") -> Event:
    return Event(kind=EventKind.JOB_STATUS, job_key=KEY, old_status=old, new_status=new)


BEST = Event(kind=EventKind.NEW_BEST, job_key=KEY, algorithm="A", performance=0.8)


@pytest.mark.parametrize(
    ("events", "final", "failures", "none"),
    [
        ([status("COMPLETED")], True, False, False),
        ([status("CANCELLED")], True, False, False),
        ([status("FAILED")], True, True, False),
        ([status("TIMED_OUT")], True, True, False),
        ([BEST, status("NOT_COMPLETED")], True, True, False),
        ([status("RUNNING", "PENDING")], False, False, False),
        ([BEST], False, False, False),
        ([Event(kind=EventKind.UNREACHABLE, job_key=KEY, reason="x")], False, False, False),
    ],
)
def test_broadcast_table(events: list[Event], final: bool, failures: bool, none: bool) -> None:
    assert broadcasts(BroadcastMode.FINAL, events) is final
    assert broadcasts(BroadcastMode.FAILURES, events) is failures
    assert broadcasts(BroadcastMode.NONE, events) is none


def test_a_row_queued_before_the_option_broadcasts_final_statuses() -> None:
    payload = {
        "schema_version": 1,
        "channel_id": "C1",
        "job_key": KEY,
        "subscription_id": 1,
        "events": [{"kind": "job_status", "job_key": KEY, "new_status": "COMPLETED"}],
        "snapshot": None,
        "headline": "job_status",
        "mention": None,
        "dedupe_key": "k",
    }
    row = {"channel_id": "C1", "job_key": KEY, "kind": "job_status", "dedupe_key": "k"}
    assert read_notification(json.dumps(payload), **row).broadcast is BroadcastMode.FINAL


# ---- through the service ---------------------------------------------------------------
FAILED = [LIFECYCLE[1], {**LIFECYCLE[2], "status": "FAILED"}]
FAILED_TRAINING = {"status": "FAILED", "targetPerformance": 0.85}


async def final_reply(env: Env, script: list[dict[str, object]], options: str) -> tuple[int, bool]:
    """Run a job to its end in a channel subscribed with `options`: (channel-level
    messages, whether the final reply went to the channel too)."""
    training = CHAMPION_TRAINING if script[-1]["status"] == "COMPLETED" else FAILED_TRAINING
    key = env.sim.script_job(script, training=training)
    _, _, url = await env.command(f"subscribe {key} {options}".strip())
    await env.reply(url)
    await env.cycle()
    for _ in range(1, len(script)):
        env.sim.advance(key)
        await env.cycle(10.0)
        await env.cycle(1.0)
    posts = [p for m, p in env.sink.calls if m == "chat.postMessage"]
    card_ts = env.sink.channels["C0TEST"][0].ts
    final = env.sink.replies("C0TEST", card_ts)[-1]
    assert final.metadata and final.metadata["event_payload"]["kind"] in {"job_status", "champion"}
    channel_level = sum(
        1
        for p in posts
        if not p.get("thread_ts") or str(p.get("reply_broadcast")).lower() in {"true", "1"}
    )
    return channel_level, final.reply_broadcast


@pytest.mark.parametrize(
    ("options", "script", "channel_level", "broadcast"),
    [
        ("", LIFECYCLE[1:], 2, True),  # default: final, as before
        ("--broadcast final", FAILED, 2, True),
        ("--broadcast failures", LIFECYCLE[1:], 1, False),  # a good ending: the card only
        ("--broadcast failures", FAILED, 2, True),
        ("--broadcast none", LIFECYCLE[1:], 1, False),
        ("--broadcast none", FAILED, 1, False),
    ],
)
async def test_the_final_reply_reaches_the_channel_as_the_subscription_says(
    env: Env, options: str, script: list[dict[str, object]], channel_level: int, broadcast: bool
) -> None:
    assert await final_reply(env, script, options) == (channel_level, broadcast)


async def test_a_resubscribe_keeps_the_broadcast_unless_given_and_audits_a_change(
    env: Env,
) -> None:
    key = env.sim.script_job(LIFECYCLE[1:], training=CHAMPION_TRAINING)
    _, _, url = await env.command(f"subscribe {key} --broadcast failures")
    assert "broadcast: failures" in (await env.reply(url))["text"]
    _, _, url = await env.command(f"subscribe {key} --min-improvement 0.02")
    assert "broadcast: failures" in (await env.reply(url))["text"]
    sub = await env.service.store.get_subscription(channel_id="C0TEST", job_key=key)
    assert sub is not None and (sub.broadcast, sub.min_improvement) == ("failures", 0.02)
    _, _, url = await env.command(f"subscribe {key} --broadcast none")
    await env.reply(url)
    _, listing, _ = await env.command("list")
    assert "broadcast: none" in listing["text"]
    for _ in range(4):
        await env.cycle(1.0)
    lines = [m.text for m in env.sink.replies("C0TEST", env.sink.channels["C0TEST"][0].ts)]
    assert any("broadcast `failures` → `none`" in line for line in lines), lines


async def test_an_unsubscribed_channel_comes_back_with_the_default(env: Env) -> None:
    key = env.sim.script_job(LIFECYCLE[1:], training=CHAMPION_TRAINING)
    _, _, url = await env.command(f"subscribe {key} --broadcast none")
    await env.reply(url)
    await env.command(f"unsubscribe {key}")
    _, _, url = await env.command(f"subscribe {key}")
    assert "broadcast: final" in (await env.reply(url))["text"]


def test_the_store_refuses_an_unknown_broadcast_mode(tmp_path: Path) -> None:
    store = Store(tmp_path / "bot.db", clock=lambda: 1000.0)
    store.close()
    conn = sqlite3.connect(tmp_path / "bot.db")
    conn.execute("INSERT INTO jobs (job_key, snapshot_json, snapshot_hash, status, "
                 "next_poll_at, updated_at) VALUES ('k', '{}', 'h', 'RUNNING', 0, 0)")  # fmt: skip
    with pytest.raises(sqlite3.IntegrityError, match="broadcast mode is unknown"):
        conn.execute(
            "INSERT INTO subscriptions (channel_id, job_key, created_at, broadcast) "
            "VALUES ('C1', 'k', 0, 'loud')"
        )
    conn.close()
