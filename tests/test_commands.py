"""`/mathfi` slash commands and the card buttons, signed and posted over real HTTP.

Every test talks to the service's `POST /slack/events` with a signed form body, the
MathFi simulator and the Slack sink answering on 127.0.0.1; nothing of ours is mocked.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.slack.render import ACTION_MUTE, ACTION_REFRESH, ACTION_UNSUBSCRIBE
from simulator.faults import Fault
from tests.conftest import Env, make_settings, serve_service, sign, url_of, wait_for
from tests.scripts import CHAMPION_TRAINING, LIFECYCLE, payload

UNKNOWN_KEY = "0f0f0f0f-1111-4222-8333-444444444444"
RUNNING = LIFECYCLE[1:]  # starts RUNNING with best 0.62 by BSEV02


# --------------------------------------------------------------------- helpers
def text_of(body: Any) -> str:
    """Everything a user would read in a reply: the fallback text and the blocks."""
    return str(body.get("text", "")) + "\n" + str(body.get("blocks", "")) if body else ""


async def answer(env: Env, text: str, **kwargs: Any) -> dict[str, Any]:
    """The command's visible answer: the ack, or for slow commands the response_url post."""
    status, ack, url = await env.command(text, **kwargs)
    assert status == 200, (status, ack)
    assert isinstance(ack, dict) and ack.get("response_type") == "ephemeral", ack
    if not any(slow in str(ack.get("text")) for slow in ("Asking MathFi", "Working on it")):
        return ack
    reply = await env.reply(url)
    assert reply.get("response_type") == "ephemeral", reply
    return reply


async def subscribed(env: Env, text: str, *, channel: str = "C0TEST") -> dict[str, Any]:
    reply = await answer(env, text, channel=channel)
    assert "watch" in reply["text"], reply
    return reply


async def nothing_created(env: Env, key: str, *, channel: str = "C0TEST") -> None:
    store = env.service.store
    assert (await store.get_subscription(channel_id=channel, job_key=key)) is None
    assert (await store.get_job(key)) is None
    assert not any((await store.outbox_counts()).values())
    assert env.service.poller.watched == 0


def thread_kinds(env: Env, channel: str = "C0TEST") -> list[str]:
    card = env.sink.channels[channel][0]
    return [
        m.metadata["event_payload"]["kind"]
        for m in env.sink.replies(channel, card.ts)
        if m.metadata
    ]


def listeners_running() -> set[asyncio.Task[Any]]:
    """The listeners bolt runs after its ack (process_before_response=False): the work of
    the requests the service accepted, until it is done."""
    return {
        task
        for task in asyncio.all_tasks()
        if not task.done()
        and "slack_bolt" in getattr(getattr(task.get_coro(), "cr_code", None), "co_filename", "")
    }


async def no_listener_running() -> None:
    """Wait until no request's work is left: what a refused request did is all done (a
    listener started by mistake has posted its answer by then, or never ends: both fail)."""
    await wait_for(lambda: not listeners_running())


async def last_button_reply(env: Env) -> dict[str, Any]:
    """What the last button click answered on its response_url (the newest one)."""
    newest = max(env.sink.responses, key=int)
    found = await wait_for(lambda: env.sink.responses[newest])
    reply: dict[str, Any] = found[0]
    assert reply.get("response_type") == "ephemeral" and reply.get("replace_original") is False
    return reply


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@asynccontextmanager
async def other_service(env: Env, tmp_path: Path, **overrides: Any) -> AsyncIterator[Env]:
    """A second service (own settings and database) on the same simulator and sink."""
    values: dict[str, Any] = {
        "mathfi_base_url": env.sim_url,
        "slack_api_url": env.sink.api_url,
        "database_path": tmp_path / "other.db",
    }
    service, runner = await serve_service(make_settings(**(values | overrides)), env.clock)
    try:
        yield replace(env, service=service, base_url=url_of(runner), runners=[])
    finally:
        await service.stop(grace=3.0)
        await runner.cleanup()


# --------------------------------------------------------------------- subscribe
async def test_subscribe_with_options_stores_them_and_posts_the_card(env: Env) -> None:
    key = env.sim.script_job(RUNNING, training=CHAMPION_TRAINING)
    status, ack, url = await env.command(
        f"subscribe {key.upper()} --min-improvement 0.02 --mention <@U0BOB|bob> --events failures"
    )
    assert status == 200 and ack["response_type"] == "ephemeral"
    assert key in ack["text"]  # "Asking MathFi about <key>…"
    reply = await env.reply(url)
    assert reply["response_type"] == "ephemeral"
    assert "Now watching" in reply["text"] and key in reply["text"]
    assert "RUNNING" in reply["text"] and "0.6200" in reply["text"] and "BSEV02" in reply["text"]
    assert "min +0.02" in reply["text"] and "events: failures" in reply["text"]
    assert "<@U0BOB|bob>" in reply["text"]

    sub = await env.service.store.get_subscription(channel_id="C0TEST", job_key=key)
    assert sub is not None and sub.active
    assert (sub.min_improvement, sub.mention, sub.events) == (0.02, "<@U0BOB|bob>", "failures")
    assert sub.team_id == "T0DEMO" and sub.created_by == "U0ALICE"
    assert env.service.poller.watched == 1

    await env.cycle()
    card = env.sink.channels["C0TEST"][0]
    assert card.metadata and card.metadata["event_type"] == "mathfi_card"
    assert key in str(card.blocks)


async def test_subscribe_defaults(env: Env) -> None:
    key = env.sim.script_job(RUNNING)
    await subscribed(env, f"subscribe {key}")
    sub = await env.service.store.get_subscription(channel_id="C0TEST", job_key=key)
    assert sub is not None
    assert (sub.min_improvement, sub.mention, sub.events) == (0.005, None, "all")


async def test_subscribing_twice_is_one_subscription(env: Env) -> None:
    key = env.sim.script_job(RUNNING)
    first = await subscribed(env, f"subscribe {key}")
    assert "Now watching" in first["text"]
    second = await subscribed(env, f"subscribe {key} --events status")
    assert "already watches" in second["text"] and "Options updated" in second["text"]
    await env.cycle()
    await env.cycle(1.0)
    assert len(env.sink.top_level("C0TEST")) == 1  # one card
    listing = await answer(env, "list")
    assert "1 training job" in listing["text"] and listing["text"].count(key) == 1
    assert "events: status" in listing["text"]


async def test_unknown_key_names_it_and_creates_nothing(env: Env) -> None:
    reply = await answer(env, f"subscribe {UNKNOWN_KEY}")
    assert f"no training job `{UNKNOWN_KEY}`" in reply["text"]
    await nothing_created(env, UNKNOWN_KEY)
    await env.cycle()
    assert env.sink.channels.get("C0TEST", []) == []


async def test_mathfi_answering_503_says_so_and_creates_nothing(env: Env) -> None:
    key = env.sim.script_job(RUNNING)
    env.sim.add_fault(Fault(kind="status", status=503, path_prefix=f"/api/v1/training/{key}"))
    reply = await answer(env, f"subscribe {key}")
    assert "MathFi cannot be reached" in reply["text"] and "nothing was done" in reply["text"]
    await nothing_created(env, key)


async def test_mathfi_on_a_closed_port_says_so_and_creates_nothing(
    env: Env, tmp_path: Path
) -> None:
    async with other_service(env, tmp_path, mathfi_base_url=closed_port_url()) as down:
        reply = await answer(down, f"subscribe {UNKNOWN_KEY}")
        assert "MathFi cannot be reached" in reply["text"]
        await nothing_created(down, UNKNOWN_KEY)
        status_reply = await answer(down, f"status {UNKNOWN_KEY}")
        assert "MathFi cannot be reached" in status_reply["text"]


async def test_per_channel_limit(env: Env, tmp_path: Path) -> None:
    keys = [env.sim.script_job(RUNNING) for _ in range(3)]
    async with other_service(env, tmp_path, subscription_limit=2) as limited:
        await subscribed(limited, f"subscribe {keys[0]}")
        await subscribed(limited, f"subscribe {keys[1]}")
        refused = await answer(limited, f"subscribe {keys[2]}")
        assert "already watches 2 jobs" in refused["text"]
        store = limited.service.store
        assert (await store.get_subscription(channel_id="C0TEST", job_key=keys[2])) is None
        assert (await store.count_active(channel_id="C0TEST")) == 2
        # At the limit, changing an existing subscription still works ...
        again = await subscribed(limited, f"subscribe {keys[0]} --events failures")
        assert "already watches" in again["text"]
        # ... the limit is per channel ...
        await subscribed(limited, f"subscribe {keys[2]}", channel="C0OTHER")
        # ... and unsubscribing makes room.
        await answer(limited, f"unsubscribe {keys[1]}")
        await subscribed(limited, f"subscribe {keys[2]}")


async def test_resubscribing_without_options_keeps_the_stored_ones(env: Env) -> None:
    """Issue 11 item 3: a bare re-subscribe must not switch off the on-call mention."""
    key = env.sim.script_job(RUNNING)
    await subscribed(
        env, f"subscribe {key} --min-improvement 0.02 --mention <@U0BOB|bob> --events failures"
    )
    again = await subscribed(env, f"subscribe {key}")
    assert "already watches" in again["text"]
    sub = await env.service.store.get_subscription(channel_id="C0TEST", job_key=key)
    assert sub is not None
    assert (sub.min_improvement, sub.mention, sub.events) == (0.02, "<@U0BOB|bob>", "failures")
    await subscribed(env, f"subscribe {key} --events status")  # only what is given changes
    sub = await env.service.store.get_subscription(channel_id="C0TEST", job_key=key)
    assert sub is not None
    assert (sub.min_improvement, sub.mention, sub.events) == (0.02, "<@U0BOB|bob>", "status")


async def test_ten_concurrent_subscribes_with_a_limit_of_three_give_three(
    env: Env, tmp_path: Path
) -> None:
    """Issue 11 item 5: the limit is checked in the insert's transaction, not before the
    MathFi call (which let all ten through)."""
    keys = [env.sim.script_job(RUNNING) for _ in range(10)]
    async with other_service(env, tmp_path, subscription_limit=3) as limited:
        replies = await asyncio.gather(*(answer(limited, f"subscribe {k}") for k in keys))
        assert (await limited.service.store.count_active(channel_id="C0TEST")) == 3
        texts = [r["text"] for r in replies]
        assert sum("Now watching" in t for t in texts) == 3, texts
        refused = [t for t in texts if "Now watching" not in t]
        assert len(refused) == 7
        assert all("already watches 3 jobs" in t and "SUBSCRIPTION_LIMIT" in t for t in refused)


async def test_the_global_limit_names_max_subscriptions(env: Env, tmp_path: Path) -> None:
    keys = [env.sim.script_job(RUNNING) for _ in range(2)]
    async with other_service(env, tmp_path, max_subscriptions=2) as limited:
        await subscribed(limited, f"subscribe {keys[0]}", channel="C1")
        await subscribed(limited, f"subscribe {keys[1]}", channel="C2")
        refused = await answer(limited, f"subscribe {keys[0]}", channel="C3")
        assert "MAX_SUBSCRIPTIONS" in refused["text"] and "nothing was changed" in refused["text"]
        assert (await limited.service.store.count_all_active()) == 2
        # an existing subscription may still change its options at the limit
        again = await subscribed(limited, f"subscribe {keys[0]} --events status", channel="C1")
        assert "already watches" in again["text"]


async def test_a_broadcast_mention_is_refused_unless_the_operator_allows_it(
    env: Env, tmp_path: Path
) -> None:
    """Issue 11 hole 4: any member could make the bot ping the whole channel."""
    key = env.sim.script_job(RUNNING)
    refused = await answer(env, f"subscribe {key} --mention @channel")
    assert "would ping everyone" in refused["text"]
    await nothing_created(env, key)
    async with other_service(env, tmp_path, allow_broadcast_mentions=True) as allowed:
        await subscribed(allowed, f"subscribe {key} --mention @channel")
        sub = await allowed.service.store.get_subscription(channel_id="C0TEST", job_key=key)
        assert sub is not None and sub.mention == "<!channel>"


async def test_subscribe_to_a_finished_job_says_so(env: Env) -> None:
    key = env.sim.script_job([LIFECYCLE[-1]], training=CHAMPION_TRAINING)
    reply = await subscribed(env, f"subscribe {key} --mention <!subteam^S0ONCALL|oncall>")
    assert "COMPLETED" in reply["text"] and "no further updates" in reply["text"]
    sub = await env.service.store.get_subscription(channel_id="C0TEST", job_key=key)
    assert sub is not None and sub.mention == "<!subteam^S0ONCALL|oncall>"
    assert env.service.poller.watched == 0  # nothing left to poll


async def test_mathfi_refusing_the_credentials_says_so(env: Env, tmp_path: Path) -> None:
    key = env.sim.script_job(RUNNING)
    async with other_service(env, tmp_path, mathfi_password="wrong-password") as refused:
        reply = await answer(refused, f"subscribe {key}")
        assert "refused the bot's credentials" in reply["text"]
        assert "wrong-password" not in text_of(reply)
        await nothing_created(refused, key)


# --------------------------------------------------------------------- unsubscribe, list
async def test_unsubscribe_one_and_all_act_on_this_channel_only(env: Env) -> None:
    a = env.sim.script_job(RUNNING)
    b = env.sim.script_job(RUNNING)
    for channel in ("C1", "C2"):
        await subscribed(env, f"subscribe {a}", channel=channel)
        await subscribed(env, f"subscribe {b}", channel=channel)
    store = env.service.store

    reply = await answer(env, f"unsubscribe {a}", channel="C1")
    assert f"Stopped watching `{a}`" in reply["text"]
    assert (await store.count_active(channel_id="C1")) == 1
    assert (await store.count_active(channel_id="C2")) == 2

    again = await answer(env, f"unsubscribe {a}", channel="C1")
    assert "not watching" in again["text"] and "Usage" in str(again["blocks"])

    everything = await answer(env, "unsubscribe all", channel="C1")
    assert "Stopped watching 1 job" in everything["text"]
    assert (await store.count_active(channel_id="C1")) == 0
    assert (await store.count_active(channel_id="C2")) == 2
    empty = await answer(env, "unsubscribe ALL", channel="C1")
    assert "was not watching any job" in empty["text"]


async def test_list_shows_this_channels_jobs_with_status_and_best(env: Env) -> None:
    mine = env.sim.script_job(RUNNING)
    theirs = env.sim.script_job(LIFECYCLE)
    await subscribed(env, f"subscribe {mine}", channel="C1")
    await subscribed(env, f"subscribe {theirs}", channel="C2")

    listing = await answer(env, "list", channel="C1")
    text = listing["text"]
    assert mine in text and theirs not in text
    assert "RUNNING" in text and "best 0.6200 (BSEV02)" in text
    other = await answer(env, "list", channel="C2")
    assert theirs in other["text"] and mine not in other["text"] and "PENDING" in other["text"]
    empty = await answer(env, "list", channel="C3")
    assert "watches no training job" in empty["text"]


async def test_a_long_list_stays_within_slack_limits(env: Env) -> None:
    label = "on-call " + "x" * 70
    for _ in range(60):
        key = env.sim.script_job(RUNNING)
        await subscribed(env, f"subscribe {key} --mention <@U0BOB|{label}>")
    listing = await answer(env, "list")
    assert listing["text"].startswith("This channel watches 60 training job(s)")
    blocks = listing["blocks"]
    assert len(blocks) <= 50 and len(listing["text"]) <= 3000
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert all(len(text) <= 3000 for text in sections)
    assert sum(map(len, sections)) <= 12000
    shown = sum(text.count("• ") for text in sections)
    assert 0 < shown < 60 and f"and {60 - shown} more" in str(blocks)


async def test_list_shows_why_a_subscription_is_disabled(env: Env) -> None:
    key = env.sim.script_job(RUNNING)
    await subscribed(env, f"subscribe {key}")
    env.sink.archive("C0TEST")
    await env.cycle()  # the card: Slack answers is_archived, a permanent error
    sub = await env.service.store.get_subscription(channel_id="C0TEST", job_key=key)
    assert sub is not None and sub.disabled_reason
    listing = await answer(env, "list")
    assert key in listing["text"]
    assert "not posting" in listing["text"] and "archived" in listing["text"]
    assert f"subscribe {key}" in listing["text"]  # what to do about it


# --------------------------------------------------------------------- status
async def test_status_asks_mathfi_now_for_an_unwatched_job(env: Env) -> None:
    rising = payload("RUNNING", {"BSEV01": 0.8, "BSEV02": 0.7})
    rising["jobs"][0]["recentPerformances"] = [0.5, 0.6, 0.7, 0.8]
    key = env.sim.script_job([rising])
    before = env.sim.stats.progress_polls
    reply = await answer(env, f"status {key}")
    assert env.sim.stats.progress_polls == before + 1
    assert key in reply["text"] and "RUNNING" in reply["text"] and "0.8000" in reply["text"]
    blocks = str(reply["blocks"])
    assert "`▁▃▆█` `BSEV01` *0.8000*" in blocks  # per-algorithm line with its sparkline
    assert "`BSEV02` *0.7000*" in blocks
    assert "actions" not in blocks  # no buttons: this is not the card
    await nothing_created(env, key)


async def test_status_of_an_unknown_key_names_it(env: Env) -> None:
    reply = await answer(env, f"status {UNKNOWN_KEY}")
    assert f"no training job `{UNKNOWN_KEY}`" in reply["text"]


# --------------------------------------------------------------------- mute
async def test_mute_silences_progress_but_not_the_final_status(env: Env) -> None:
    key = env.sim.script_job(LIFECYCLE, training=CHAMPION_TRAINING)
    await subscribed(env, f"subscribe {key}")
    await env.cycle()  # the card
    muted = await answer(env, f"mute {key} 2h")
    assert "muted for 2h" in muted["text"]
    sub = await env.service.store.get_subscription(channel_id="C0TEST", job_key=key)
    assert sub is not None and sub.muted_until == env.clock() + 7200

    env.sim.advance(key)  # PENDING → RUNNING, first best: progress, so silent
    await env.cycle(20.0)
    await env.cycle(1.0)
    assert thread_kinds(env) == ["subscription_changed"]  # who muted it, and nothing else
    card = env.sink.channels["C0TEST"][0]
    assert "<@U0ALICE> muted this job for 2h" in env.sink.replies("C0TEST", card.ts)[0].text
    assert "RUNNING" in card.text  # the card keeps updating
    assert "muted" in str(card.blocks)

    unmuted = await answer(env, f"unmute {key}")
    assert "on again" in unmuted["text"]
    env.sim.advance(key)  # new best 0.74
    await env.cycle(20.0)
    await env.cycle(1.0)
    changed = "subscription_changed"
    assert thread_kinds(env) == [changed, changed, "new_best"]  # muted, unmuted, news

    await answer(env, f"mute {key} 1d")
    env.sim.advance(key, 2)  # COMPLETED: terminal, gets through
    await env.cycle(20.0)
    await env.cycle(1.0)
    assert thread_kinds(env) == [changed, changed, "new_best", changed, "champion"]


async def test_mute_ends_by_itself(env: Env) -> None:
    key = env.sim.script_job(RUNNING)
    await subscribed(env, f"subscribe {key}")
    await env.cycle()
    await answer(env, f"mute {key} 30m")
    listing = await answer(env, "list")
    assert "muted for 30m" in listing["text"]
    env.clock.advance(31 * 60)
    env.sim.advance(key)  # new best 0.74
    await env.cycle(20.0)
    await env.cycle(1.0)
    assert thread_kinds(env) == ["subscription_changed", "new_best"]


async def test_mute_and_unmute_need_a_subscription_here(env: Env) -> None:
    key = env.sim.script_job(RUNNING)
    await subscribed(env, f"subscribe {key}", channel="C1")
    for text in (f"mute {key} 2h", f"unmute {key}"):
        reply = await answer(env, text, channel="C2")
        assert "not watching" in reply["text"]
    sub = await env.service.store.get_subscription(channel_id="C1", job_key=key)
    assert sub is not None and sub.muted_until is None


# --------------------------------------------------------------------- help, errors
async def test_help_and_empty_text(env: Env) -> None:
    for text in ("help", "", "  HELP "):
        reply = await answer(env, text)
        for word in ("subscribe", "unsubscribe", "list", "status", "mute", "unmute"):
            assert f"/mathfi {word}" in reply["text"]


async def test_unknown_command_gets_a_short_explanation_and_usage(env: Env) -> None:
    for text, expected in [
        ("frobnicate", "Unknown command `frobnicate`"),
        ("subscrbe", "Did you mean `subscribe`?"),
        (f"{UNKNOWN_KEY}", "Start with a command"),
        ("subscribe not-a-key", "is not a training job key"),
        ("mute", "Missing the training job key"),
        ("x" * 3000, "too long"),
    ]:
        reply = await answer(env, text)
        assert expected in reply["text"], (text, reply)
        assert len(reply["text"]) < 300
        assert "*Usage:*" in str(reply["blocks"]), (text, reply)
        assert "Traceback" not in text_of(reply) and "Error" not in text_of(reply)


async def test_user_input_in_errors_is_escaped_once(env: Env) -> None:
    # Slack sends a typed "<!channel>" as "&lt;!channel&gt;" (and "&" as "&amp;").
    reply = await answer(env, "status &lt;!channel&gt;&amp;")
    assert "`&lt;!channel&gt;&amp;` is not a training job key" in reply["text"]
    assert "&amp;lt;" not in text_of(reply) and "<!channel>" not in text_of(reply)


async def test_usage_names_the_configured_command(env: Env, tmp_path: Path) -> None:
    async with other_service(env, tmp_path, slack_command="/ml") as custom:
        reply = await answer(custom, "status nope", command="/ml")
        usage = str(reply["blocks"])
        assert "/ml status" in usage and "/mathfi" not in usage


# --------------------------------------------------------------------- request checks
def command_form(env: Env, text: str) -> tuple[str, str]:
    """A slash command's form body, and its response_url."""
    url = env.sink.new_response_url()
    body = urlencode(
        {
            "command": "/mathfi",
            "text": text,
            "team_id": "T0DEMO",
            "channel_id": "C0TEST",
            "user_id": "U0ALICE",
            "response_url": url,
        }
    )
    return body, url


async def post_form(env: Env, body: str, headers: dict[str, str]) -> int:
    async with env.http.post(
        f"{env.base_url}/slack/events", data=body.encode(), headers=headers
    ) as response:
        return response.status


async def test_bad_signature_is_401_and_does_nothing(env: Env) -> None:
    key = env.sim.script_job(RUNNING)
    body, url = command_form(env, f"subscribe {key}")
    assert await post_form(env, body, sign(body, secret="not-the-secret")) == 401
    tampered = body.replace("C0TEST", "C0EVIL")
    assert await post_form(env, tampered, sign(body)) == 401
    assert await post_form(env, body, {"Content-Type": "application/x-www-form-urlencoded"}) == 401
    await no_listener_running()
    assert env.responses(url) == []
    await nothing_created(env, key)


async def test_stale_timestamp_is_401(env: Env) -> None:
    key = env.sim.script_job(RUNNING)
    now = int(time.time())
    body, url = command_form(env, f"subscribe {key}")
    assert await post_form(env, body, sign(body, timestamp=now - 301)) == 401
    assert await post_form(env, body, sign(body, timestamp=now + 301)) == 401
    await no_listener_running()
    assert env.responses(url) == []
    await nothing_created(env, key)
    # The same helper with a recent timestamp is accepted: only the age was wrong.
    listing, _ = command_form(env, "list")
    assert await post_form(env, listing, sign(listing, timestamp=now - 240)) == 200


async def test_another_team_is_refused_and_nothing_is_created(env: Env) -> None:
    key = env.sim.script_job(RUNNING)
    polls = env.sim.stats.progress_polls
    status, ack, url = await env.command(f"subscribe {key}", team="T0OTHER")
    assert status == 200  # Slack shows the body of a 200 only
    assert "another Slack workspace" in str(ack)
    assert "Asking MathFi" not in str(ack)
    await no_listener_running()
    assert env.responses(url) == []
    assert env.sim.stats.progress_polls == polls
    await nothing_created(env, key)


# --------------------------------------------------------------------- buttons
async def test_mute_button_mutes_for_an_hour(env: Env) -> None:
    key = env.sim.script_job(RUNNING)
    await subscribed(env, f"subscribe {key}")
    assert await env.button(ACTION_MUTE, key) == 200
    reply = await last_button_reply(env)
    assert "muted for 1h" in reply["text"]
    sub = await env.service.store.get_subscription(channel_id="C0TEST", job_key=key)
    assert sub is not None and sub.muted_until == env.clock() + 3600


async def test_unsubscribe_button_acts_on_the_clicked_channel(env: Env) -> None:
    key = env.sim.script_job(RUNNING)
    await subscribed(env, f"subscribe {key}", channel="C1")
    await subscribed(env, f"subscribe {key}", channel="C2")
    assert await env.button(ACTION_UNSUBSCRIBE, key, channel="C1") == 200
    reply = await last_button_reply(env)
    assert f"Stopped watching `{key}`" in reply["text"]
    store = env.service.store
    sub = await store.get_subscription(channel_id="C1", job_key=key)
    assert sub is not None and not sub.active
    assert (await store.count_active(channel_id="C2")) == 1


async def test_an_unsubscribe_by_button_is_a_line_in_the_thread_and_an_audit_line(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    key = env.sim.script_job(RUNNING)
    await subscribed(env, f"subscribe {key}")
    await env.cycle()  # the card
    with caplog.at_level(logging.INFO, logger="bot.audit"):
        assert await env.button(ACTION_UNSUBSCRIBE, key) == 200
        await last_button_reply(env)
    await env.cycle(1.0)
    await env.cycle(1.0)
    card = env.sink.channels["C0TEST"][0]
    lines = [m.text for m in env.sink.replies("C0TEST", card.ts)]
    assert lines == ["🔕 <@U0ALICE> stopped watching this job in this channel"]
    assert "No longer watched in this channel" in card.text  # its one last edit
    (record,) = [r for r in caplog.records if r.name == "bot.audit"]
    assert (record.user, record.channel, record.result) == (  # type: ignore[attr-defined]
        "U0ALICE",
        "C0TEST",
        f"unsubscribed from {key}",
    )
    assert record.command == f"button mathfi_unsubscribe {key}"  # type: ignore[attr-defined]


async def test_unsubscribe_all_is_one_line_in_the_channel(env: Env) -> None:
    keys = [env.sim.script_job(RUNNING) for _ in range(2)]
    for key in keys:
        await subscribed(env, f"subscribe {key}")
    await env.cycle()
    await env.cycle(1.0)
    await answer(env, "unsubscribe all")
    await env.cycle(1.0)
    top = [m.text for m in env.sink.channels["C0TEST"] if m.thread_ts is None]
    assert top[-1] == "🔕 <@U0ALICE> stopped watching 2 jobs in this channel"
    assert sum("stopped watching" in t for t in top) == 1


async def test_refresh_button_polls_now_and_redraws_the_card(env: Env) -> None:
    key = env.sim.script_job(RUNNING)
    await subscribed(env, f"subscribe {key}")
    await env.cycle()  # the card
    await env.cycle(1.0)
    polls = env.sim.stats.progress_polls
    updates = sum(1 for method, _ in env.sink.calls if method == "chat.update")
    env.sim.advance(key)  # best 0.74, not yet due for a poll
    assert await env.button(ACTION_REFRESH, key) == 200
    reply = await last_button_reply(env)
    assert "Refreshing" in reply["text"]
    await env.cycle(1.0)
    assert env.sim.stats.progress_polls == polls + 1  # polled at once, 9 s before it was due
    await env.cycle(1.0)  # the thread reply (new best), then the card edit, paced
    await env.cycle(1.0)
    assert sum(1 for method, _ in env.sink.calls if method == "chat.update") > updates
    assert "0.7400" in env.sink.channels["C0TEST"][0].text


# --------------------------------------------------------------------- any text
ANY_TEXT = st.one_of(
    st.text(),
    st.text(st.characters(codec="utf-8", categories=("Cc", "Cf", "Zs", "Zl", "So", "Lo"))),
    st.builds(
        lambda word, rest: f"{word} {rest}",
        st.sampled_from(["subscribe", "unsubscribe", "list", "status", "mute", "unmute", "help"]),
        st.text(max_size=60),
    ),
    st.builds(lambda piece, times: piece * times, st.text(min_size=1), st.integers(50, 700)),
)


async def test_any_text_gets_a_200_and_a_reply(env: Env) -> None:
    """Hypothesis drives a worker thread; each example is posted on this test's loop."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []

    def run(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=15)

    @settings(max_examples=40, deadline=None, database=None)
    @given(text=ANY_TEXT)
    @example(text="subscribe " + "\u202e\x00" * 3000)  # far over the 2,000-character cap
    @example(text="mute " + "é" * 1990)  # just under the cap, multi-byte
    @example(text="\x00\r\n\t\x7f\u2028")
    @example(text=f"status {UNKNOWN_KEY}\x00")
    def check(text: str) -> None:
        seen.append(text)
        status, ack, url = run(env.command(text))
        assert status == 200, (status, ack)
        assert isinstance(ack, dict) and ack.get("response_type") == "ephemeral", ack
        assert ack.get("text") and "Traceback" not in text_of(ack)
        assert "went wrong" not in ack["text"]  # a deliberate answer, not the catch-all
        if "Asking MathFi" in ack["text"]:
            reply = run(env.reply(url))
            assert reply.get("response_type") == "ephemeral" and reply.get("text")
            assert "Traceback" not in text_of(reply) and "went wrong" not in reply["text"]

    await asyncio.to_thread(check)
    assert len(seen) >= 30 and max(map(len, seen)) > 2000  # it ran, long texts included


async def test_refresh_on_an_old_card_after_unsubscribe_polls_nothing(env: Env) -> None:
    key = env.sim.script_job(RUNNING)
    await subscribed(env, f"subscribe {key}")
    await env.cycle()
    assert await env.button(ACTION_UNSUBSCRIBE, key) == 200
    await last_button_reply(env)
    polls = env.sim.stats.progress_polls
    assert await env.button(ACTION_REFRESH, key) == 200  # the old card still has buttons
    reply = await last_button_reply(env)
    assert "not watching" in reply["text"]
    await env.cycle(1.0)  # not yet due: only a Refresh would poll it now
    assert env.sim.stats.progress_polls == polls


# --------------------------------------------------------------------- status: forecast
def forecast_line(blocks: list[dict[str, Any]]) -> list[str]:
    return [
        b["text"]["text"]
        for b in blocks
        if b["type"] == "section"
        and "text" in b
        and b["text"]["text"].startswith(("🎯", "⚠️", "🔮"))
    ]


async def test_status_of_an_unwatched_job_says_it_has_no_forecast(env: Env) -> None:
    key = env.sim.script_job([payload("RUNNING", {"BSEV01": 0.8})])
    reply = await answer(env, f"status {key}")
    assert forecast_line(reply["blocks"]) == [
        "🔮 Not watched: no forecast (it needs the job's history: subscribe to it)"
    ]


async def test_status_of_a_watched_job_shows_the_forecast_of_the_card(env: Env) -> None:
    # BSEV01 climbs 0.01 every 30 s towards 0.85: on track, about 8 minutes to go
    steps = [payload("RUNNING", {"BSEV01": 0.60 + i / 100, "BSEV02": 0.5}) for i in range(10)]
    key = env.sim.script_job(steps)
    assert (await answer(env, f"subscribe {key}"))["text"]
    await env.cycle()
    early = await answer(env, f"status {key}")
    assert forecast_line(early["blocks"]) == ["🔮 No forecast yet: not enough history"]
    for _ in range(9):
        env.sim.advance(key)
        await env.cycle(30.0)
    await env.service.sender.tick()  # the card's edit
    reply = await answer(env, f"status {key}")
    (line,) = forecast_line(reply["blocks"])
    assert line.startswith("🎯 ETA ≈ ") and "(`BSEV01`, +0.02/min)" in line
    (card,) = env.sink.top_level("C0TEST")
    assert forecast_line(card.blocks) == [line]  # the engine's forecast, recomputed alike
