"""What the user hears when the database refuses a command or a button (issue #20), and a
revoked bot token at start-up.

The commands are the real ones (`bot.slack.commands.register` on a bolt app, signed
requests, answers on the sink's response_url) with the store the service opened; another
sqlite3 connection holds the database, so every write is refused after the busy timeout,
every time. The context's sleep between the store's tries waits nothing, so the ~30 s of
`STORE_RETRY_DELAYS` take the busy timeouts alone.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import commands
from bot.slack.answers import DATABASE_DOWN, STORE_RETRY_DELAYS
from bot.slack.render import ACTION_MUTE, ACTION_REFRESH, ACTION_UNSUBSCRIBE
from simulator.slack import SlackFault
from simulator.slack import start_in_background as start_sink
from tests.conftest import BOT_TOKEN, SIGNING_SECRET, TEAM, Env, sign, wait_for
from tests.scripts import LIFECYCLE
from tests.test_process import REQUIRED, refused_run


@contextmanager
def database_held(path: Path) -> Iterator[None]:
    holder = sqlite3.connect(path, timeout=0, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def no_wait(seconds: float) -> None:
    """The context's sleep between tries: the busy timeout alone paces them."""
    tries.append(seconds)


tries: list[float] = []


class Commands:
    """The command and button handlers on a bolt app of their own."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.app = AsyncApp(
            client=AsyncWebClient(token=BOT_TOKEN, base_url=env.sink.api_url),
            signing_secret=SIGNING_SECRET,
            process_before_response=False,
        )
        commands.register(
            self.app,
            commands.CommandContext(
                store=env.service.store,
                mathfi=env.service.mathfi,
                metrics=env.service.metrics,
                watch=env.service.poller.watch,
                clock=env.clock,
                sleep=no_wait,
            ),
        )

    async def dispatch(self, form: dict[str, str]) -> tuple[int, Any]:
        body = urlencode(form)
        response = await self.app.async_dispatch(AsyncBoltRequest(body=body, headers=sign(body)))
        return response.status, json.loads(response.body) if response.body else None

    async def command(self, text: str) -> tuple[Any, str]:
        url = self.env.sink.new_response_url()
        form = {
            "command": "/mathfi",
            "text": text,
            "team_id": TEAM,
            "channel_id": "C0TEST",
            "user_id": "U0ALICE",
            "response_url": url,
            "trigger_id": "1.2.3",
        }
        status, ack = await self.dispatch(form)
        assert status == 200
        return ack, url

    async def button(self, action_id: str, key: str) -> str:
        url = self.env.sink.new_response_url()
        payload = {
            "type": "block_actions",
            "team": {"id": TEAM},
            "user": {"id": "U0ALICE", "team_id": TEAM},
            "channel": {"id": "C0TEST"},
            "response_url": url,
            "container": {"type": "message", "message_ts": "1.0", "channel_id": "C0TEST"},
            "actions": [{"action_id": action_id, "value": key, "type": "button"}],
        }
        status, _ = await self.dispatch({"payload": json.dumps(payload)})
        assert status == 200
        return url


@pytest.fixture
async def bolt(env: Env) -> AsyncIterator[Commands]:
    tries.clear()
    yield Commands(env)


async def watched(env: Env, bolt: Commands) -> str:
    key = env.sim.script_job(LIFECYCLE)
    _, url = await bolt.command(f"subscribe {key}")
    reply = await env.reply(url)
    assert "Watching" in reply["text"] or "watching" in reply["text"], reply
    return key


def db(env: Env) -> Path:
    return Path(env.service.settings.database_path)


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


@pytest.mark.parametrize("text", ["unsubscribe {key}", "mute {key} 1h", "subscribe {key}"])
async def test_a_command_the_database_refuses_says_nothing_was_changed(
    env: Env, bolt: Commands, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    key = await watched(env, bolt)
    before = await env.service.store.get_subscription(channel_id="C0TEST", job_key=key)
    with caplog.at_level(logging.INFO), database_held(db(env)):
        started = time.monotonic()
        ack, url = await bolt.command(text.format(key=key))
        assert time.monotonic() - started < 1.0  # the ack never waits on the database
        assert "Working on it" in str(ack) or "Asking MathFi" in str(ack)
        reply = await env.reply(url, timeout=15.0)
    assert reply["text"] == f"⚠️ {DATABASE_DOWN} Try again in a minute."
    assert tries == list(STORE_RETRY_DELAYS)  # tried again the whole time before giving up
    assert (await env.service.store.get_subscription(channel_id="C0TEST", job_key=key)) == before
    no_tracebacks(caplog)
    assert any("database unavailable during" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("action", [ACTION_MUTE, ACTION_UNSUBSCRIBE, ACTION_REFRESH])
async def test_a_button_the_database_refuses_says_try_again(
    env: Env, bolt: Commands, caplog: pytest.LogCaptureFixture, action: str
) -> None:
    key = await watched(env, bolt)
    before = await env.service.store.get_subscription(channel_id="C0TEST", job_key=key)
    with caplog.at_level(logging.INFO), database_held(db(env)):
        url = await bolt.button(action, key)
        reply = await env.reply(url, timeout=15.0)
    assert reply["text"] == "⚠️ The bot's database is unavailable right now."
    assert tries == list(STORE_RETRY_DELAYS)
    assert (await env.service.store.get_subscription(channel_id="C0TEST", job_key=key)) == before
    no_tracebacks(caplog)
    # and once the database is back, the same button works
    url = await bolt.button(action, key)
    await wait_for(lambda: env.responses(url))
    assert "unavailable" not in env.responses(url)[0]["text"]


async def test_a_command_answered_late_goes_to_the_response_url(env: Env, bolt: Commands) -> None:
    key = await watched(env, bolt)
    with database_held(db(env)):
        ack, url = await bolt.command(f"mute {key} 1h")
        assert "Working on it" in str(ack)
    # released before the store's second try: the answer follows on response_url
    reply = await env.reply(url, timeout=10.0)
    assert "Muted" in reply["text"] or "muted" in reply["text"], reply
    sub = await env.service.store.get_subscription(channel_id="C0TEST", job_key=key)
    assert sub is not None and sub.muted_until is not None


# ----------------------------------------------------------------------------- start-up
async def test_a_revoked_bot_token_stops_the_start_with_one_line(tmp_path: Path) -> None:
    from simulator.slack import SlackSink

    sink = SlackSink(token="xoxb-x", team_id=TEAM)
    runner, _ = await start_sink(sink)
    try:
        sink.add_fault(SlackFault(kind="error", error="token_revoked", method="auth.test"))
        line = await refused_run(
            tmp_path,
            **{
                **REQUIRED,
                "SLACK_API_URL": sink.api_url,
                "DATABASE_PATH": str(tmp_path / "bot.db"),
                "HTTP_PORT": "0",
            },
        )
    finally:
        await runner.cleanup()
    assert line == (
        "mathfi-bot: configuration error: SLACK_BOT_TOKEN was refused by Slack "
        "(token_revoked); run `mathfi-bot check`"
    )
    assert [m for m, _ in sink.calls] == ["auth.test"]  # nothing posted, nothing polled
