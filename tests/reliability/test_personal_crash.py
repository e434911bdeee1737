"""Exactly-once delivery to a person's DM (issue #15), with the service as a real process.

A personal subscription's card and thread go to an IM channel (D…): the crash
reconciliation must find its own messages there (conversations.history / replies on the
IM) as it does in a channel, whatever moment the process dies at, and a post whose answer
was lost must not be posted twice.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from simulator.slack import SlackFault, SlackSink
from simulator.slack_directory import SinkUser
from tests.reliability.harness import BOT_TOKEN, CHANNEL, TEAM, Harness, running
from tests.reliability.test_crash import all_sent, kill_cycles
from tests.reliability.timeline import climb

pytestmark = pytest.mark.reliability

SEED = 20250115
STEPS = 8
USER, DM = "U0ALICE", "D0ALICE"  # the sink's IM of U0ALICE with the bot


def sink_with_people() -> SlackSink:
    sink = SlackSink(token=BOT_TOKEN, team_id=TEAM)
    sink.add_user(SinkUser(USER, "member", name="alice"))
    return sink


async def follow(h: Harness, key: str) -> None:
    """`/mathfi subscribe <key> --dm --events all` typed in the channel."""
    answer = await h.command(f"subscribe {key} --dm --events all", user=USER)
    assert answer.status == 200, answer
    text = str((await h.reply(answer.response_url))["text"])
    assert "You now follow" in text, text


def looked_up_in(h: Harness, channel: str) -> int:
    return sum(
        1
        for method, params in h.sink.calls
        if method in ("conversations.history", "conversations.replies")
        and params.get("channel") == channel
    )


async def test_sigkill_during_delivery_to_a_dm_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """Slack answers every post after 0.3 s, so kills land in the middle of a call to the
    DM or to the channel; both end up with every event exactly once, in order."""
    timeline = climb(STEPS)
    channels = [DM, CHANNEL]
    async with running(tmp_path, sink=sink_with_people(), SLACK_TIMEOUT="1") as h:
        key = h.sim.script_job(timeline.payloads, training=timeline.training)
        await follow(h, key)
        await h.subscribe(key)
        h.sink.add_fault(SlackFault(kind="hang", method="chat.postMessage", seconds=0.3))
        landed = await kill_cycles(
            h,
            key,
            steps=timeline.steps,
            rng=random.Random(SEED),
            max_delay=0.4,
            channels=channels,
            during_delivery=True,
        )
        await all_sent(h, channels, rows=timeline.steps + 1, timeout=40)
        for channel in channels:
            h.assert_exactly_once(channel, timeline.expected)
        owners = h.rows("SELECT channel_id, owner_user_id FROM subscriptions ORDER BY id")
        assert owners == [
            {"channel_id": DM, "owner_user_id": USER},
            {"channel_id": CHANNEL, "owner_user_id": None},
        ]
    print("\nkills landed:", dict(landed))
    assert landed["during a Slack call (row in 'sending')"] >= 1, landed
    assert looked_up_in(h, DM) >= 1, "the DM was never searched after a kill"


async def test_a_lost_answer_from_a_dm_is_found_not_posted_twice(tmp_path: Path) -> None:
    """Slack posts to the DM and the answer is lost (500): the row is looked up in the IM
    and adopted, never posted again."""
    timeline = climb(3, retire_at=())
    async with running(tmp_path, sink=sink_with_people()) as h:
        key = h.sim.script_job(timeline.payloads, training=timeline.training)
        await follow(h, key)
        await all_sent(h, [DM], rows=1, timeout=10)
        h.sink.add_fault(
            SlackFault(kind="fail_after_commit", method="chat.postMessage", channel=DM, count=1)
        )
        h.sim.advance(key)  # a new best: its reply's answer is lost
        await all_sent(h, [DM], rows=2, timeout=20)
        assert h.sink.fault_count == 0  # the fault was hit
        assert looked_up_in(h, DM) >= 1, "the lost post was not looked up in the DM"
        h.assert_exactly_once(DM, timeline.expected[:1])
