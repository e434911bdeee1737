"""The reliability harness: `python -m bot run` as a real process, its world faked as servers.

Model: Prometheus Alertmanager's acceptance tests. The MathFi simulator and the Slack sink
run IN the test process (aiohttp on 127.0.0.1, random ports), so a test scripts them
directly and reads what they saw; the service runs as a subprocess configured through its
environment only (cwd is a temp dir, so no `.env` is read), its JSON log lines going to a
file the test searches. Slash commands go through the real signed `POST /slack/events`.
The service's SQLite file is read with a separate read-only connection (WAL allows it), for
assertions only. Every wait is a condition polled against a deadline; `running()` kills
the process whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from bot.slack.answers import WORKING
from simulator.mathfi import Simulator
from simulator.mathfi import start_in_background as start_simulator
from simulator.slack import SinkMessage, SlackSink
from simulator.slack import start_in_background as start_sink
from tests.conftest import sign
from tests.reliability.process import ServiceProcess, eventually, short_timeout
from tests.reliability.timeline import Ev, assert_exactly_once

__all__ = ["Harness", "ServiceProcess", "eventually", "running"]

USERNAME = "demo@mathfi.ai"
PASSWORD = "demo-password"
SIGNING_SECRET = "reliability-signing-secret-42"
BOT_TOKEN = "xoxb-reliability-bot-token"
TEAM = "T0DEMO"
CHANNEL = "C0REL"
CARD_EVENT, NOTE_EVENT = "mathfi_card", "mathfi_notification"
_OWN_PREFIXES = ("SLACK_", "MATHFI_", "DATABASE_", "POLL_", "HTTP_", "LOG_")


@dataclass
class CommandReply:
    status: int
    body: Any
    response_url: str


class Harness:
    """One service process with its simulator, Slack sink, HTTP client and database file."""

    def __init__(
        self, *, tmp: Path, sim: Simulator, sink: SlackSink, http: aiohttp.ClientSession
    ) -> None:
        self.tmp, self.sim, self.sink, self.http = tmp, sim, sink, http
        self.db_path = tmp / "bot.db"
        self.signing_secret = SIGNING_SECRET
        self.sim_url = ""
        self.sim_runner: web.AppRunner
        self.sink_runner: web.AppRunner
        self.service: ServiceProcess

    def service_env(self, *, password: str = PASSWORD, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
        return base | {
            "MATHFI_BASE_URL": self.sim_url,
            "MATHFI_USERNAME": USERNAME,
            "MATHFI_PASSWORD": password,
            "SLACK_BOT_TOKEN": self.sink.token,
            "SLACK_SIGNING_SECRET": self.signing_secret,
            "SLACK_API_URL": self.sink.api_url,
            "DATABASE_PATH": str(self.db_path),
            "POLL_INTERVAL": "0.2",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": "0",  # the child binds a free port and logs it
            "LOG_FORMAT": "json",
            "MATHFI_MAX_RETRIES": "1",
            "MATHFI_TIMEOUT": "1",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    # ---- the simulator, stopped and started on the same port ----------------------
    async def stop_simulator(self) -> None:
        await self.sim_runner.cleanup()

    async def start_simulator(self) -> None:
        port = int(self.sim_url.rsplit(":", 1)[1])
        self.sim_runner, url = await start_simulator(self.sim, port=port)
        assert url == self.sim_url

    # ---- Slack commands through the real signed endpoint --------------------------
    async def command(
        self,
        text: str,
        *,
        channel: str = CHANNEL,
        team: str = TEAM,
        secret: str | None = None,
        timestamp: int | None = None,
        ack_only: bool = False,
        user: str = "U0ALICE",
    ) -> CommandReply:
        """Send a signed slash command; its `body` is the answer: the ack's, or, when the
        ack only said "working on it" (a slow store), the one that follows on response_url
        (`ack_only`: the ack as it came, for a test that times it)."""
        response_url = self.sink.new_response_url()
        form = {
            "command": "/mathfi",
            "text": text,
            "team_id": team,
            "team_domain": "demo",
            "channel_id": channel,
            "channel_name": "reliability",
            "user_id": user,
            "user_name": user.lower(),
            "response_url": response_url,
            "trigger_id": "1.2.3",
            "api_app_id": "A0REL",
        }
        body = urlencode(form)
        headers = sign(body, secret=secret or self.signing_secret, timestamp=timestamp)
        url = f"{self.service.base_url}/slack/events"
        async with self.http.post(url, data=body.encode(), headers=headers) as response:
            raw = await response.text()
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = raw
        if not ack_only and isinstance(parsed, dict) and parsed.get("text") == WORKING:
            # The store was slow: the ack said "working on it" and the answer follows on
            # response_url (bot.slack.answers). The answer is what the test is about.
            parsed = await self.reply(response_url, timeout=40.0)
        return CommandReply(response.status, parsed, response_url)

    def responses(self, response_url: str) -> list[dict[str, Any]]:
        return self.sink.responses.get(response_url.rsplit("/", 1)[-1], [])

    async def reply(self, response_url: str, *, timeout: float = 10.0) -> dict[str, Any]:
        """The first message the service posted to a command's response_url."""
        await eventually(
            lambda: self.responses(response_url), timeout=timeout, what="a response_url reply"
        )
        return self.responses(response_url)[0]

    async def subscribe(self, key: str, *, channel: str = CHANNEL, options: str = "") -> str:
        answer = await self.command(f"subscribe {key} {options}".strip(), channel=channel)
        assert answer.status == 200, answer
        text = str((await self.reply(answer.response_url))["text"])
        assert "Now watching" in text, text
        return text

    # ---- the service's own endpoints ----------------------------------------------
    async def health(self) -> tuple[int, dict[str, Any]]:
        async with self.http.get(f"{self.service.base_url}/healthz") as response:
            return response.status, await response.json()

    async def metric(self, sample: str) -> float:
        """The value of one exposition line, e.g. `mathfi_polls_total` (0 when absent)."""
        async with self.http.get(f"{self.service.base_url}/metrics") as response:
            text = await response.text()
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if name == sample:
                return float(value)
        return 0.0

    # ---- the database, read-only ---------------------------------------------------
    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()

    def outbox(self, channel: str = CHANNEL) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM outbox WHERE channel_id = ? ORDER BY id", (channel,))

    def job(self, key: str) -> dict[str, Any]:
        found = self.rows("SELECT * FROM jobs WHERE job_key = ?", (key,))
        assert found, f"no jobs row for {key}"
        return found[0]

    def version(self, key: str) -> int:
        return int(self.job(key)["version"])

    async def committed(self, key: str, version: int, *, timeout: float = 10.0) -> None:
        """Wait until the job's row reaches `version` (each poll that changed it adds one)."""
        await eventually(
            lambda: self.version(key) >= version, timeout=timeout, what=f"{key} at v{version}"
        )

    # ---- what reached Slack --------------------------------------------------------
    def posted(self, channel: str, event_type: str) -> list[SinkMessage]:
        return [
            m
            for m in self.sink.channels.get(channel, [])
            if m.metadata is not None and m.metadata.get("event_type") == event_type
        ]

    def outbox_ids(self, channel: str, event_type: str) -> list[int]:
        return [
            int((m.metadata or {})["event_payload"]["outbox_id"])
            for m in self.posted(channel, event_type)
        ]

    def assert_exactly_once(self, channel: str, expected: Sequence[Sequence[Ev]]) -> None:
        """The channel's outbox holds exactly `expected` (after the watch row), all sent, and
        Slack holds each row once, in order, and nothing else."""
        stray = [m.text for m in self.sink.channels.get(channel, []) if not m.metadata]
        assert not stray, f"messages without outbox metadata: {stray}"
        cards = self.posted(channel, CARD_EVENT)
        threads = {m.thread_ts for m in self.posted(channel, NOTE_EVENT)}
        assert threads <= {c.ts for c in cards[:1]}, "a reply outside the card's thread"
        assert_exactly_once(
            self.outbox(channel),
            card_ids=self.outbox_ids(channel, CARD_EVENT),
            note_ids=self.outbox_ids(channel, NOTE_EVENT),
            expected=expected,
        )


@contextlib.asynccontextmanager
async def running(
    tmp: Path,
    *,
    sim: Simulator | None = None,
    sink: SlackSink | None = None,
    start: bool = True,
    password: str = PASSWORD,
    signing_secret: str = SIGNING_SECRET,
    **env: str,
) -> AsyncIterator[Harness]:
    """Simulator + sink in this process, the service as a child; everything torn down.

    `env` adds or overrides variables of the service's environment (e.g. LOG_LEVEL)."""
    sim = sim or Simulator(seed=3)
    sink = sink or SlackSink(token=BOT_TOKEN, team_id=TEAM)
    connector = aiohttp.TCPConnector(force_close=True)  # the service dies: no stale sockets
    async with aiohttp.ClientSession(connector=connector, timeout=short_timeout(30.0)) as http:
        h = Harness(tmp=tmp, sim=sim, sink=sink, http=http)
        h.signing_secret = signing_secret
        h.sim_runner, h.sim_url = await start_simulator(sim)
        try:
            h.sink_runner, _ = await start_sink(sink)
            service_env = h.service_env(password=password, **env)
            h.service = ServiceProcess(env=service_env, cwd=tmp)
            try:
                if start:
                    await h.service.start(http)
                yield h
            finally:
                await h.service.kill()
                await h.sink_runner.cleanup()
        finally:
            await h.sim_runner.cleanup()  # a no-op if a test stopped it already
