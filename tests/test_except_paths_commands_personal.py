"""The `except` branches of personal subscriptions, the App Home, the on-call Acknowledge
and `status` that no other test runs (issue #20): MathFi or Slack failing a `--dm`
subscribe or a Notify me, the database refusing (a real `AsyncStore`, closed) or holding a
row this version cannot read, Slack refusing a Home publish, a bot built without them.

Commands and clicks are signed and posted to a bolt app: the service's own, or one with the
commands registered on a context of the test's (the closed store; a sleep between the
store's tries that waits nothing, so giving up takes no 30 s). Each test checks what the
person reads or sees in their Home, and what was (not) stored.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import commands
from bot.slack.oncall_render import ACTION_ACK
from bot.slack.permissions import PermissionCheck
from bot.slack.personal_render import (
    ACTION_HOME_MUTE,
    ACTION_NOTIFY_ME,
    MAX_HOME_ITEMS,
    render_home,
)
from simulator.faults import Fault
from simulator.slack import SlackFault
from simulator.slack_directory import SinkUser
from store import AsyncStore, HomeItem, Subscription
from tests.conftest import BOT_TOKEN, SIGNING_SECRET, TEAM, Env, wait_for
from tests.scripts import LIFECYCLE
from tests.test_actions_slack import service_with
from tests.test_failure_paths_commands import Commands
from tests.test_personal import ALICE, DM_ALICE, KEY, answer, click, home_text, open_home

UNAVAILABLE = "⚠️ The bot's database is unavailable right now."
NOT_SET_UP = "⚠️ Personal subscriptions are not available on this bot."


async def no_wait(seconds: float) -> None:
    """The context's sleep between the store's tries."""


class Bolt(Commands):
    """The commands and buttons registered on a context of the test's."""

    def __init__(self, env: Env, store: AsyncStore) -> None:
        self.env = env
        self.app = AsyncApp(
            client=AsyncWebClient(token=BOT_TOKEN, base_url=env.sink.api_url),
            signing_secret=SIGNING_SECRET,
            process_before_response=False,
        )
        service = env.service
        commands.register(
            self.app,
            commands.CommandContext(
                store=store,
                mathfi=service.mathfi,
                metrics=service.metrics,
                watch=service.poller.watch,
                clock=env.clock,
                sleep=no_wait,
                personal=service.home,
                permissions=PermissionCheck(service.settings.actions_policy, service.slack),
            ),
        )


@pytest.fixture
async def refusing(env: Env, tmp_path: Path) -> AsyncIterator[Bolt]:
    """The commands on a store that refuses every call ("the store is closed")."""
    closed = await AsyncStore.open(tmp_path / "closed.db")
    await closed.close()
    env.sink.add_user(SinkUser(ALICE, "member", name="alice"))
    yield Bolt(env, closed)


def unreadable(env: Env, key: str) -> None:
    """The job's stored snapshot made one this version cannot read (a hand edit, a bug)."""
    raw = sqlite3.connect(env.service.settings.database_path)
    with raw:
        raw.execute("UPDATE jobs SET snapshot_json = '{\"no\": 1}' WHERE job_key = ?", (key,))
    raw.close()


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info]


# --------------------------------------------------------------------- Notify me, subscribe --dm
async def test_notify_me_the_database_refuses_says_so(
    refusing: Bolt, caplog: pytest.LogCaptureFixture
) -> None:
    env = refusing.env
    with caplog.at_level(logging.ERROR):
        reply = await env.reply(await refusing.button(ACTION_NOTIFY_ME, KEY))
    assert reply["text"] == UNAVAILABLE
    assert "database unavailable during Notify me: the store is closed" in caplog.messages
    assert not tracebacks(caplog)
    assert await env.service.store.count_all_active() == 0


async def test_notify_me_on_a_row_this_version_cannot_read_answers_with_a_reference(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.sink.add_user(SinkUser(ALICE, "member", name="alice"))
    key = env.sim.script_job(LIFECYCLE)
    await answer(env, f"subscribe {key}")
    unreadable(env, key)
    url = env.sink.new_response_url()
    with caplog.at_level(logging.ERROR):
        await env.button(ACTION_NOTIFY_ME, key, response_url=url)
        reply = await env.reply(url)
    assert reply["text"] == "⚠️ Something went wrong on our side; nothing was changed."
    (logged,) = tracebacks(caplog)
    reference = logged.removeprefix("Notify me failed (reference ").removesuffix(")")
    assert len(reference) == 8
    assert f"Reference: `{reference}`" in json.dumps(reply["blocks"])  # the person can quote it
    assert await env.service.store.get_subscription(channel_id=DM_ALICE, job_key=key) is None


async def test_notify_me_when_mathfi_or_slack_fails_is_told(env: Env) -> None:
    key = env.sim.script_job(LIFECYCLE)  # never subscribed: MathFi is asked for it
    stranger = await click(env, ACTION_NOTIFY_ME, key, user=ALICE)  # not in the directory
    assert stranger == "⚠️ Slack would not open your DM with the bot (user_not_found)."
    env.sink.add_user(SinkUser(ALICE, "member", name="alice"))
    env.sim.add_fault(Fault(kind="status", status=503, method="GET", path_prefix="/api/v1"))
    down = await click(env, ACTION_NOTIFY_ME, key, user=ALICE)
    assert down == (
        "⚠️ MathFi cannot be reached right now, so nothing was done. Try again in a minute."
    )
    env.sim.clear_faults()
    unknown = await click(env, ACTION_NOTIFY_ME, KEY, user=ALICE)
    assert unknown == (
        f"⚠️ MathFi has no training job `{KEY}`. Check the key on the MathFi dashboard."
    )
    assert await env.service.store.count_all_active() == 0


async def test_subscribe_dm_to_a_job_mathfi_does_not_know_is_refused(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.sink.add_user(SinkUser(ALICE, "member", name="alice"))
    with caplog.at_level(logging.INFO, logger="bot.audit"):
        reply = await answer(env, f"subscribe {KEY} --dm")
    assert reply == f"⚠️ MathFi has no training job `{KEY}`. Check the key on the MathFi dashboard."
    assert any("refused: MathFi (TrainingJobNotFound)" in m for m in caplog.messages)
    assert await env.service.store.count_all_active() == 0


async def test_a_personal_subscription_over_the_limit_names_the_dm(
    env: Env, tmp_path: Path
) -> None:
    env.sink.add_user(SinkUser(ALICE, "member", name="alice"))
    first, second = env.sim.script_job(LIFECYCLE), env.sim.script_job(LIFECYCLE)
    async with service_with(env, tmp_path, subscription_limit=1) as limited:
        assert "You now follow" in await answer(limited, f"subscribe {first} --dm")
        refused = await answer(limited, f"subscribe {second} --dm")
        assert refused.startswith(
            "⚠️ This DM already watches 1 jobs, the most allowed (SUBSCRIPTION_LIMIT)"
        )
        store = limited.service.store
        assert await store.get_subscription(channel_id=DM_ALICE, job_key=second) is None


async def test_a_bot_built_without_personal_subscriptions_says_so(env: Env) -> None:
    bolt = Commands(env)  # its context has no `personal`
    _, url = await bolt.command(f"subscribe {KEY} --dm")
    assert (await env.reply(url))["text"] == NOT_SET_UP
    assert (await env.reply(await bolt.button(ACTION_NOTIFY_ME, KEY)))["text"] == NOT_SET_UP
    assert await env.service.store.count_all_active() == 0


# --------------------------------------------------------------------- the Home tab
async def test_a_home_button_naming_no_subscription_only_redraws(env: Env) -> None:
    env.sink.add_user(SinkUser(ALICE, "member", name="alice"))
    await click(env, ACTION_HOME_MUTE, "not-a-number", user=ALICE, channel=None)
    await wait_for(lambda: ALICE in env.sink.views)
    assert "You follow no MathFi job yet" in home_text(env, ALICE)


async def test_a_home_button_the_database_refuses_is_logged_and_draws_nothing(
    refusing: Bolt, caplog: pytest.LogCaptureFixture
) -> None:
    env = refusing.env
    payload: dict[str, Any] = {
        "type": "block_actions",
        "team": {"id": TEAM},
        "user": {"id": ALICE, "team_id": TEAM},
        "container": {"type": "view", "view_id": "V1"},
        "actions": [{"action_id": ACTION_HOME_MUTE, "value": "1", "type": "button"}],
    }
    with caplog.at_level(logging.ERROR):
        status, _ = await refusing.dispatch({"payload": json.dumps(payload)})
        assert status == 200
        await wait_for(lambda: tracebacks(caplog))
    assert tracebacks(caplog)[0].startswith("Home button failed (reference ")
    assert ALICE not in env.sink.views  # nothing drawn on a guess


async def test_a_home_publish_slack_rate_limits_waits_and_one_it_refuses_is_dropped(
    env: Env,
) -> None:
    env.sink.add_user(SinkUser(ALICE, "member", name="alice"))
    home = env.service.home
    limited = SlackFault(kind="ratelimit", method="views.publish", retry_after=30, count=1)
    env.sink.add_fault(limited)
    await open_home(env, ALICE)
    await wait_for(lambda: any(m == "views.publish" for m, _ in env.sink.calls))
    assert ALICE not in env.sink.views
    env.clock.advance(29.0)
    assert await home.tick() == 0  # paused for Retry-After: Slack is not asked
    assert [m for m, _ in env.sink.calls].count("views.publish") == 1
    env.clock.advance(31.0)
    assert await home.tick() == 1  # the view stayed stale: published now
    assert "You follow no MathFi job yet" in home_text(env, ALICE)

    env.sink.add_fault(SlackFault(kind="error", method="views.publish", error="account_inactive"))
    await answer(env, f"subscribe {env.sim.script_job(LIFECYCLE)} --dm")  # a change of hers
    env.clock.advance(60.0)
    assert await home.tick() == 0  # refused for good…
    env.clock.advance(60.0)
    assert await home.tick() == 0  # …and not asked again until her next change
    assert [m for m, _ in env.sink.calls].count("views.publish") == 3


async def test_a_home_line_whose_row_cannot_be_read_still_shows_the_job(env: Env) -> None:
    env.sink.add_user(SinkUser(ALICE, "member", name="alice"))
    key = env.sim.script_job(LIFECYCLE[1:])
    await answer(env, f"subscribe {key} --dm")
    unreadable(env, key)
    await open_home(env, ALICE)
    await wait_for(lambda: ALICE in env.sink.views)
    text = home_text(env, ALICE)
    assert key in text and "best *0.6200* (BSEV02)" in text
    assert "target" not in text  # the snapshot's facts are left out, not guessed


def test_home_lists_thirty_jobs_and_says_how_many_more() -> None:
    now = 1_800_000_000.0

    def item(i: int) -> HomeItem:
        sub = Subscription(i, TEAM, DM_ALICE, f"job-{i:02d}", ALICE, now, 0.005, None, "status",
                           None, True, None, None)  # fmt: skip
        return HomeItem(sub, True, None, None, None, None, None)  # no job row yet

    items = [item(i) for i in range(MAX_HOME_ITEMS + 2)]
    view = json.dumps(render_home(items, now=now, command="/mathfi"), ensure_ascii=False)
    assert "job-29" in view and "job-30" not in view
    assert "… and 2 older ones (`/mathfi list` where they are)." in view
    assert "no performance yet" in view and "UNKNOWN" in view  # a job with no row yet


# --------------------------------------------------------------------- on-call Acknowledge
async def test_an_acknowledge_the_database_refuses_says_so(refusing: Bolt) -> None:
    reply = await refusing.env.reply(await refusing.button(ACTION_ACK, "7"))
    assert reply["text"] == UNAVAILABLE


async def test_an_acknowledge_of_no_alert_and_one_nobody_may_make(env: Env) -> None:
    env.sink.add_user(SinkUser(ALICE, "member", name="alice"))
    missing = await click(env, ACTION_ACK, "not-an-alert", user=ALICE)
    assert missing == "This alert is not known to the bot (it may have been cleaned up long ago)."
    bolt = Commands(env)  # a context without the ACTIONS check: nobody may acknowledge
    off = await env.reply(await bolt.button(ACTION_ACK, "7"))
    assert off["text"] == (
        "Acknowledging alerts from Slack is turned off for this bot (ACTIONS=off)."
    )


# --------------------------------------------------------------------- status
async def test_status_when_the_database_refuses_is_answered_without_a_forecast(
    refusing: Bolt,
) -> None:
    env = refusing.env
    key = env.sim.script_job(LIFECYCLE[1:])
    _, url = await refusing.command(f"status {key}")
    reply = await env.reply(url)
    assert key in str(reply) and "RUNNING" in str(reply) and "0.6200" in str(reply)
    assert "🔮" not in str(reply) and "unavailable" not in str(reply)


async def test_status_of_a_watched_job_that_is_not_running_has_no_forecast_line(
    env: Env,
) -> None:
    key = env.sim.script_job(LIFECYCLE)  # PENDING
    await answer(env, f"subscribe {key}")
    _, _, url = await env.command(f"status {key}")
    reply = await env.reply(url)
    assert "PENDING" in str(reply) and "🔮" not in str(reply)
