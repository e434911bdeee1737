"""What the bot posts names a DM as "this DM" and a channel as "this channel": the lines
of an unsubscribe (in the job's thread) and of an `unsubscribe all` (in the channel), the
card's "watched in" line and its Unsubscribe confirmation, the card once no longer
watched, and the digest's answers. Through the real signed paths, in a DM that is not the
person's own with the bot (a channel subscription there), in the bot's own DM with the
person (the digest), and in a channel."""

from __future__ import annotations

from typing import Any

import pytest

from bot.slack.render import ACTION_UNSUBSCRIBE
from simulator.slack_directory import SinkUser
from tests.conftest import Env
from tests.scripts import LIFECYCLE


def unsubscribe_confirmation(blocks: list[dict[str, Any]]) -> str:
    for block in blocks:
        for element in block.get("elements") or []:
            if element.get("action_id") == ACTION_UNSUBSCRIBE:
                return str(element["confirm"]["text"]["text"])
    raise AssertionError("no Unsubscribe button")


@pytest.mark.parametrize(("channel", "place"), [("D0OTHER", "this DM"), ("C0TEST", "this channel")])
async def test_a_cards_lines_and_buttons_name_where_it_is(
    env: Env, channel: str, place: str
) -> None:
    env.sink.add_user(SinkUser("U0ALICE", "member", name="alice"))
    env.sink.open_im("U0OTHER")  # D0OTHER: a DM the sink posts in, not Alice's with the bot
    key = env.sim.script_job(LIFECYCLE)
    status, _, url = await env.command(f"subscribe {key}", channel=channel)
    assert status == 200 and "watch" in (await env.reply(url))["text"]
    await env.cycle()
    await env.cycle(1.1)
    (card,) = env.sink.top_level(channel)
    assert unsubscribe_confirmation(card.blocks) == f"Stop watching `{key}` in {place}?"
    assert f"👀 watched in {place} by <@U0ALICE>" in str(card.blocks)
    _, ack, _ = await env.command(f"unsubscribe {key}", channel=channel)
    assert ack["text"] == f"Stopped watching `{key}` in {place}."
    for _ in range(3):
        await env.cycle(1.1)
    lines = [m.text for m in env.sink.replies(channel, card.ts)]
    assert f"🔕 <@U0ALICE> stopped watching this job in {place}" in lines
    (edited,) = env.sink.top_level(channel)
    assert str(edited.blocks).count(f"No longer watched in {place} since") == 1
    await env.command(f"subscribe {key}", channel=channel)
    await env.command("unsubscribe all", channel=channel)
    for _ in range(3):
        await env.cycle(1.1)
    said = [m.text for m in env.sink.top_level(channel)]
    assert f"🔕 <@U0ALICE> stopped watching 1 job in {place}" in said, said


@pytest.mark.parametrize(
    ("channel", "place"),
    [("D0ALICE", "This DM"), ("D0OTHER", "This DM"), ("C0TEST", "This channel")],
)
async def test_the_digests_answers_name_where_it_is(env: Env, channel: str, place: str) -> None:
    env.sink.add_user(SinkUser("U0ALICE", "member", name="alice"))
    env.sink.open_im("U0ALICE")
    _, ack, _ = await env.command("digest daily 09:00 --tz UTC", channel=channel)
    assert ack["text"].startswith(f"📰 {place} gets a daily digest at 09:00 (UTC), the first ")
    await env.command("digest off", channel=channel)
    _, ack, _ = await env.command("digest off", channel=channel)
    assert ack["text"] == f"{place} has no daily digest."
