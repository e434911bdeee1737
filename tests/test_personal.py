"""Personal subscriptions and the App Home (issue #15), through the real signed paths:
slash commands, card and Home buttons, and `app_home_opened` event callbacks posted to
the service's `POST /slack/events`, the MathFi simulator and the Slack sink answering."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.core.forecast import Verdict
from bot.core.forecast_state import ForecastState, ForecastSummary
from bot.slack.command_text import CommandError, Subscribe, parse_command
from bot.slack.personal_render import (
    ACTION_HOME_MUTE,
    ACTION_HOME_UNMUTE,
    ACTION_HOME_UNSUBSCRIBE,
    ACTION_NOTIFY_ME,
    render_home,
)
from bot.slack.render import ACTION_REFRESH, ACTION_UNSUBSCRIBE
from simulator.slack_directory import SinkUser
from store import HomeItem, Subscription
from tests.conftest import TEAM, Env, sign, wait_for
from tests.scripts import CHAMPION_TRAINING, LIFECYCLE

ALICE, BOB = "U0ALICE", "U0BOB"
DM_ALICE, DM_BOB = "D0ALICE", "D0BOB"  # the sink's IM of each with the bot
KEY = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


# --------------------------------------------------------------------- helpers
@pytest.fixture
def people(env: Env) -> Env:
    env.sink.add_user(SinkUser(ALICE, "member", name="alice"))
    env.sink.add_user(SinkUser(BOB, "member", name="bob"))
    return env


async def answer(env: Env, text: str, *, user: str = ALICE, channel: str = "C0TEST") -> str:
    """The command's visible answer (the ack, or the slow commands' response_url post)."""
    status, ack, url = await env.command(text, user=user, channel=channel)
    assert status == 200, (status, ack)
    if "Asking MathFi" not in str(ack.get("text")):
        return str(ack.get("text"))
    return str((await env.reply(url))["text"])


async def click(
    env: Env, action_id: str, value: str, *, user: str, channel: str | None = "C0TEST"
) -> str | None:
    """A signed block_actions click on a card (`channel`) or on the Home tab (None); the
    ephemeral answer on its response_url, if any."""
    response_url = env.sink.new_response_url()
    payload: dict[str, Any] = {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "demo"},
        "user": {"id": user, "team_id": TEAM},
        "api_app_id": "A0TEST",
        "trigger_id": "1.2.3",
        "actions": [{"action_id": action_id, "block_id": "b", "value": value, "type": "button"}],
    }
    if channel is not None:
        payload |= {
            "channel": {"id": channel, "name": "test"},
            "response_url": response_url,
            "container": {"type": "message", "message_ts": "1.0", "channel_id": channel},
            "message": {"ts": "1.0", "text": "card"},
        }
    else:
        payload |= {"container": {"type": "view", "view_id": "V1"}, "view": {"id": "V1"}}
    body = urlencode({"payload": json.dumps(payload)})
    async with env.http.post(
        f"{env.base_url}/slack/events", data=body.encode(), headers=sign(body)
    ) as response:
        assert response.status == 200
    if channel is None:
        return None
    found = await wait_for(lambda: env.responses(response_url))
    return str(found[0]["text"])


async def open_home(env: Env, user: str, *, tab: str = "home") -> None:
    """A signed `event_callback` of `app_home_opened`."""
    body = json.dumps(
        {
            "token": "unused",
            "team_id": TEAM,
            "api_app_id": "A0TEST",
            "type": "event_callback",
            "event_id": f"Ev{time.monotonic_ns()}",
            "event_time": int(time.time()),
            "event": {
                "type": "app_home_opened",
                "user": user,
                "channel": "D" + user[1:],
                "tab": tab,
                "event_ts": f"{time.time():.6f}",
            },
        }
    )
    headers = sign(body) | {"Content-Type": "application/json"}
    async with env.http.post(
        f"{env.base_url}/slack/events", data=body.encode(), headers=headers
    ) as response:
        assert response.status == 200


def home_text(env: Env, user: str) -> str:
    return json.dumps(env.sink.views[user]["blocks"])


def home_buttons(env: Env, user: str) -> dict[str, str]:
    """(action id, value) of every Home button, by the job each line names."""
    found = {}
    for block in env.sink.views[user]["blocks"]:
        for element in block.get("elements", []):
            if element.get("type") == "button":
                found[f"{element['action_id']}:{element['value']}"] = element["value"]
    return found


def card_of(env: Env, channel: str) -> Any:
    (card,) = env.sink.top_level(channel)
    return card


def thread(env: Env, channel: str) -> list[str]:
    card = card_of(env, channel)
    return [m.metadata["event_payload"]["kind"] for m in env.sink.replies(channel, card.ts)]


def buttons(message: Any) -> list[str]:
    return [e["action_id"] for b in message.blocks if b["type"] == "actions" for e in b["elements"]]


# --------------------------------------------------------------------- the parser
def test_dm_is_a_flag_of_subscribe() -> None:
    assert parse_command(f"subscribe --dm {KEY}") == Subscribe(KEY, None, None, None, dm=True)
    assert parse_command(f"subscribe {KEY} --events failures --dm").dm is True  # type: ignore[union-attr]
    assert parse_command(f"subscribe {KEY}").dm is False  # type: ignore[union-attr]
    for text, message in [
        (f"subscribe {KEY} --dm=yes", "`--dm` takes no value."),
        (f"subscribe {KEY} --dm --dm", "`--dm` is given more than once."),
        (f"status {KEY} --dm", "`status` takes no options: `--dm`."),
    ]:
        with pytest.raises(CommandError) as caught:
            parse_command(text)
        assert message in caught.value.message


# --------------------------------------------------------------------- subscribe --dm
async def test_subscribe_dm_from_a_channel_follows_the_job_in_the_persons_dm(
    people: Env,
) -> None:
    env = people
    key = env.sim.script_job(LIFECYCLE, training=CHAMPION_TRAINING)
    reply = await answer(env, f"subscribe {key} --dm")
    assert "You now follow" in reply and "your DM" in reply and "status events" in reply
    sub = await env.service.store.get_subscription(channel_id=DM_ALICE, job_key=key)
    assert sub is not None and sub.events == "status" and sub.mention is None
    assert await env.service.store.subscription_owner(channel_id=DM_ALICE, job_key=key) == ALICE
    assert await env.service.store.get_subscription(channel_id="C0TEST", job_key=key) is None

    await env.cycle()
    card = card_of(env, DM_ALICE)
    assert "PENDING" in card.text
    assert ACTION_NOTIFY_ME not in buttons(card)  # it is Alice's own already
    assert "you follow this job personally" in json.dumps(card.blocks)
    assert "C0TEST" not in env.sink.channels  # nothing in the channel it was typed in

    env.sim.advance(key)  # RUNNING: a status change
    await env.cycle(20.0)
    await env.cycle(1.0)
    env.sim.advance(key)  # a new best: progress, not for `status`
    await env.cycle(20.0)
    await env.cycle(1.0)
    env.sim.advance(key, 2)  # COMPLETED, the champion
    await env.cycle(20.0)
    await env.cycle(1.0)
    assert thread(env, DM_ALICE) == ["job_status", "champion"]
    assert "COMPLETED" in card_of(env, DM_ALICE).text  # the same card, edited in place


async def test_subscribe_typed_in_the_bots_dm_is_personal_and_dm_commands_act_on_it(
    people: Env,
) -> None:
    env = people
    key = env.sim.script_job(LIFECYCLE, training=CHAMPION_TRAINING)
    env.sink.open_im(ALICE)
    reply = await answer(env, f"subscribe {key} --events all", channel=DM_ALICE)
    assert "You now follow" in reply
    sub = await env.service.store.get_subscription(channel_id=DM_ALICE, job_key=key)
    assert sub is not None and sub.events == "all"  # the option given wins
    assert await env.service.store.subscription_owner(channel_id=DM_ALICE, job_key=key) == ALICE

    again = await answer(env, f"subscribe {key} --min-improvement 0.02", channel=DM_ALICE)
    assert "already follow" in again and "min +0.02" in again and "events: all" in again

    listed = await answer(env, "list", channel=DM_ALICE)
    assert key in listed or key in str(listed)
    assert "muted for 2h" in await answer(env, f"mute {key} 2h", channel=DM_ALICE)
    stopped = await answer(env, f"unsubscribe {key}", channel=DM_ALICE)
    assert "Stopped watching" in stopped
    sub = await env.service.store.get_subscription(channel_id=DM_ALICE, job_key=key)
    assert sub is not None and not sub.active


@pytest.mark.parametrize(
    ("channel", "place"),
    [(DM_ALICE, "this DM"), ("D0OTHER", "this DM"), ("C0TEST", "this channel")],
)
async def test_replies_name_a_dm_as_a_dm_and_a_channel_as_a_channel(
    people: Env, channel: str, place: str
) -> None:
    """In the bot's DM (personal subscriptions), in another DM and in a channel."""
    env = people
    key = env.sim.script_job(LIFECYCLE)
    env.sink.open_im(ALICE)
    capital = place[0].upper() + place[1:]
    empty = await answer(env, "list", channel=channel)
    assert empty.startswith(
        f"{capital} watches no training job. Start with `/mathfi subscribe <key>`.\n"
    )
    assert f"{capital} is not watching `{key}`." in await answer(
        env, f"mute {key} 1h", channel=channel
    )
    assert await answer(env, "unsubscribe all", channel=channel) == (
        f"{capital} was not watching any job."
    )
    await answer(env, f"subscribe {key}", channel=channel)
    listed = await answer(env, "list", channel=channel)
    assert listed.startswith(f"{capital} watches 1 training job(s):"), listed
    assert f"{capital} is not watching `{KEY}`." in await answer(
        env, f"unsubscribe {KEY}", channel=channel
    )
    assert await answer(env, f"unsubscribe {key}", channel=channel) == (
        f"Stopped watching `{key}` in {place}."
    )
    await answer(env, f"subscribe {key}", channel=channel)
    assert await answer(env, "unsubscribe all", channel=channel) == (
        f"Stopped watching 1 job(s) in {place}."
    )
    refreshed = await click(env, ACTION_REFRESH, key, user=ALICE, channel=channel)
    assert refreshed is not None and f"{capital} is not watching `{key}`." in refreshed


async def test_mention_is_refused_on_a_personal_subscription(people: Env) -> None:
    env = people
    key = env.sim.script_job(LIFECYCLE)
    env.sink.open_im(ALICE)
    for text, channel in [
        (f"subscribe {key} --dm --mention <@U0BOB|bob>", "C0TEST"),
        (f"subscribe {key} --mention <@U0BOB|bob>", DM_ALICE),
    ]:
        reply = await answer(env, text, channel=channel)
        assert "`--mention` is for channels" in reply, reply
    assert await env.service.store.get_subscription(channel_id=DM_ALICE, job_key=key) is None


async def test_a_subscribe_in_another_dm_stays_a_channel_subscription(people: Env) -> None:
    """A DM between two people is not the bot's DM: `subscribe` there is as before."""
    env = people
    key = env.sim.script_job(LIFECYCLE)
    reply = await answer(env, f"subscribe {key}", channel="D0OTHER")
    assert f"Now watching `{key}` in this DM" in reply and "card is posted in this DM" in reply
    assert await env.service.store.subscription_owner(channel_id="D0OTHER", job_key=key) is None


async def test_a_person_slack_cannot_open_a_dm_with_is_told(env: Env) -> None:
    key = env.sim.script_job(LIFECYCLE)  # U0ALICE is not in the sink's directory
    reply = await answer(env, f"subscribe {key} --dm")
    assert "would not open your DM" in reply and "user_not_found" in reply
    assert await env.service.store.count_all_active() == 0


# --------------------------------------------------------------------- Notify me
async def test_notify_me_follows_the_channels_job_and_the_card_counts_followers(
    people: Env,
) -> None:
    env = people
    key = env.sim.script_job(LIFECYCLE, training=CHAMPION_TRAINING)
    assert "Now watching" in await answer(env, f"subscribe {key}")
    await env.cycle()
    channel_card = card_of(env, "C0TEST")
    assert buttons(channel_card)[-1] == ACTION_NOTIFY_ME
    assert "follow" not in json.dumps(channel_card.blocks)

    confirmed = await click(env, ACTION_NOTIFY_ME, key, user=BOB)
    assert confirmed is not None and "You now follow" in confirmed and "your DM" in confirmed
    assert await click(env, ACTION_NOTIFY_ME, key, user=BOB) == (
        f"You already follow `{key}` in your DM with the bot."
    )
    await click(env, ACTION_NOTIFY_ME, key, user=ALICE)
    await env.cycle(1.0)
    await env.cycle(1.0)
    for dm in (DM_BOB, DM_ALICE):
        assert key in card_of(env, dm).text
    blocks = json.dumps(card_of(env, "C0TEST").blocks)
    assert "2 people follow this job" in blocks
    assert "<@U0BOB>" not in blocks  # counted, never pinged
    assert card_of(env, "C0TEST").thread_ts is None and not thread(env, "C0TEST")

    assert "Stopped watching" in await answer(env, f"unsubscribe {key}", user=BOB, channel=DM_BOB)
    await env.cycle(1.0)
    await env.cycle(1.0)
    assert "1 person follows this job" in json.dumps(card_of(env, "C0TEST").blocks)


async def test_two_people_each_hear_only_their_own_dm(people: Env) -> None:
    env = people
    key = env.sim.script_job(LIFECYCLE, training=CHAMPION_TRAINING)
    other = env.sim.script_job(LIFECYCLE, training=CHAMPION_TRAINING)
    await answer(env, f"subscribe {key} --dm --events all", user=ALICE)
    await answer(env, f"subscribe {key} --dm", user=BOB)
    await answer(env, f"subscribe {other} --dm", user=BOB)
    await env.cycle()
    await env.cycle(1.0)
    for _ in range(4):
        env.sim.advance(key)
        env.sim.advance(other)
        await env.cycle(20.0)
        await env.cycle(1.0)
    alice = env.sink.channels[DM_ALICE]
    bob = env.sink.channels[DM_BOB]
    assert {m.metadata["event_payload"]["job_key"] for m in alice} == {key}
    assert {m.metadata["event_payload"]["job_key"] for m in bob} == {key, other}
    assert "new_best" in thread(env, DM_ALICE)  # Alice asked for everything
    bob_threads = [m.metadata["event_payload"]["kind"] for m in bob if m.thread_ts is not None]
    assert "new_best" not in bob_threads  # Bob's default is status
    # Bob's Unsubscribe button on Alice's card does nothing to Alice's subscription: a
    # button acts on the channel it is clicked in, and Bob's click comes from his DM.
    await click(env, ACTION_UNSUBSCRIBE, key, user=BOB, channel=DM_BOB)
    alice_sub = await env.service.store.get_subscription(channel_id=DM_ALICE, job_key=key)
    assert alice_sub is not None and alice_sub.active


# --------------------------------------------------------------------- App Home
async def test_app_home_lists_the_persons_subscriptions_newest_first(people: Env) -> None:
    env = people
    await open_home(env, BOB)
    await wait_for(lambda: BOB in env.sink.views)
    empty = home_text(env, BOB)
    assert "You follow no MathFi job yet" in empty and "--dm" in empty and "Notify me" in empty

    first = env.sim.script_job(LIFECYCLE[1:], training=CHAMPION_TRAINING)
    second = env.sim.script_job(LIFECYCLE)
    theirs = env.sim.script_job(LIFECYCLE)
    await answer(env, f"subscribe {first}", user=ALICE)  # a channel subscription she made
    env.clock.advance(5)
    await answer(env, f"subscribe {second} --dm", user=ALICE)
    await answer(env, f"subscribe {theirs} --dm", user=BOB)
    await open_home(env, ALICE)
    await wait_for(lambda: ALICE in env.sink.views)
    text = home_text(env, ALICE)
    assert text.index(second) < text.index(first)  # newest first
    assert theirs not in text  # Bob's
    assert "in your DM" in text and "in <#C0TEST>" in text
    assert "best *0.6200* (BSEV02)" in text and "target 0.85" in text
    assert theirs not in home_text(env, BOB)  # published before: stale for up to a minute
    env.clock.advance(60.0)
    await env.service.home.tick()  # Bob's subscribe marked his view stale
    assert theirs in home_text(env, BOB) and first not in home_text(env, BOB)

    await open_home(env, ALICE, tab="messages")  # the Messages tab publishes nothing
    published = env.service.home.published
    await open_home(env, ALICE, tab="messages")
    assert env.service.home.published == published


async def test_home_buttons_act_at_once_and_only_on_the_clickers_own(people: Env) -> None:
    env = people
    key = env.sim.script_job(LIFECYCLE)
    await answer(env, f"subscribe {key} --dm", user=ALICE)
    await answer(env, f"subscribe {key}", user=ALICE)
    sub = await env.service.store.get_subscription(channel_id=DM_ALICE, job_key=key)
    channel_sub = await env.service.store.get_subscription(channel_id="C0TEST", job_key=key)
    assert sub is not None and channel_sub is not None
    await open_home(env, ALICE)
    await wait_for(lambda: ALICE in env.sink.views)
    assert f"{ACTION_HOME_MUTE}:{sub.id}" in home_buttons(env, ALICE)

    # Bob forges clicks on Alice's lines: nothing changes, Bob's view is redrawn
    for action in (ACTION_HOME_UNSUBSCRIBE, ACTION_HOME_MUTE):
        for target in (sub, channel_sub):
            await click(env, action, str(target.id), user=BOB, channel=None)
    await wait_for(lambda: BOB in env.sink.views)
    for target in (sub, channel_sub):
        now = await env.service.store.get_subscription(channel_id=target.channel_id, job_key=key)
        assert now is not None and now.active and now.muted_until is None

    before = env.sink.views[ALICE]["hash"]
    await click(env, ACTION_HOME_MUTE, str(sub.id), user=ALICE, channel=None)
    await wait_for(lambda: env.sink.views[ALICE]["hash"] != before)
    muted = await env.service.store.get_subscription(channel_id=DM_ALICE, job_key=key)
    assert muted is not None and muted.muted_until == env.clock() + 3600
    assert f"{ACTION_HOME_UNMUTE}:{sub.id}" in home_buttons(env, ALICE)

    before = env.sink.views[ALICE]["hash"]
    await click(env, ACTION_HOME_UNSUBSCRIBE, str(channel_sub.id), user=ALICE, channel=None)
    await wait_for(lambda: env.sink.views[ALICE]["hash"] != before)
    gone = await env.service.store.get_subscription(channel_id="C0TEST", job_key=key)
    assert gone is not None and not gone.active
    assert "in <#C0TEST>" not in home_text(env, ALICE)
    await env.cycle(1.0)
    lines = [m.text for m in env.sink.channels["C0TEST"]]  # the card never got out
    assert any("<@U0ALICE> stopped watching this job" in line for line in lines)  # audited


async def test_home_is_republished_when_a_job_changes_at_most_once_a_minute(
    people: Env,
) -> None:
    env = people
    key = env.sim.script_job(LIFECYCLE, training=CHAMPION_TRAINING)
    await answer(env, f"subscribe {key} --dm", user=ALICE)
    await answer(env, f"subscribe {key} --dm", user=BOB)  # Bob never opens his Home
    await open_home(env, ALICE)
    await wait_for(lambda: ALICE in env.sink.views)
    home = env.service.home
    published = home.published
    assert await home.tick() == 0  # nothing changed

    env.sim.advance(key)  # RUNNING
    await env.cycle(20.0)
    assert "PENDING" in home_text(env, ALICE)  # off the poll: the loop publishes it
    env.clock.advance(60.0)
    assert await home.tick() == 1
    assert "RUNNING" in home_text(env, ALICE) and "0.6200" in home_text(env, ALICE)
    assert BOB not in env.sink.views  # only a Home someone opened is kept current

    env.sim.advance(key)  # a new best, 10 s later: waits for the minute
    await env.cycle(10.0)
    assert await home.tick() == 0
    env.clock.advance(40.0)
    assert await home.tick() == 0
    env.clock.advance(10.0)
    assert await home.tick() == 1
    assert "0.7400" in home_text(env, ALICE)
    assert await home.tick() == 0  # clean again
    assert home.published == published + 2


def test_home_line_shows_the_stored_forecasts_eta_and_a_mute() -> None:
    """The Home reads the forecast summary the engine stores on the job (forecast_json)."""
    now = 1_800_000_000.0
    snapshot = json.dumps({"job_key": KEY, "status": "RUNNING", "target_performance": 0.9})
    state = ForecastState(
        last=ForecastSummary(at=now - 60, verdict=Verdict.ON_TRACK, target=0.9, eta=1260.0)
    )
    sub = Subscription(7, TEAM, DM_ALICE, KEY, ALICE, now, 0.005, None, "status", now + 600,
                       True, None, 0.7)  # fmt: skip
    item = HomeItem(sub, True, "RUNNING", 0.7, "BSEV01", snapshot, state.to_json())
    text = json.dumps(render_home([item], now=now, command="/mathfi"), ensure_ascii=False)
    assert "🎯 ETA ≈ 20 min" in text and "target 0.9" in text and "best *0.7000*" in text
    assert "muted until" in text and ACTION_HOME_UNMUTE in text and ACTION_HOME_MUTE not in text
    no_forecast = HomeItem(sub, True, "RUNNING", 0.7, "BSEV01", snapshot, None)
    assert "ETA" not in json.dumps(render_home([no_forecast], now=now, command="/m"))
