"""`mathfi-bot demo`: the whole product in one process, on loopback, with no credentials.

The MathFi simulator and the local Slack sink run beside the real service; three trainings
with different fates are started on the simulator and `#demo` subscribes to each through
the real signed slash-command path; a fourth is cancelled from its card's Cancel button
(the real signed click); alice also follows the first one personally (`--dm`: its card
and status changes go to her DM with the bot). The terminal shows the channel (and, at
the end, alice's DM) as Slack would. At the end, Alice acknowledges the FAILED job's
on-call alert with its button (signed, as Slack sends a click): the thread says so and the
alert shows who and when.

A little over 300 lines: the demo's one class holds the start, the subscriptions, the
cancel, the acknowledgement and the views, which share its servers and state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from slack_sdk.signature import SignatureVerifier

from bot.app.service import Service
from bot.config import Settings
from bot.engine.poller import PollerConfig
from bot.slack.actions_render import ACTION_CANCEL_JOB
from bot.slack.oncall_render import ACTION_ACK
from bot.slack.sender import SenderConfig
from demo.view import render_channel
from simulator.mathfi import Simulator
from simulator.mathfi import start_in_background as start_simulator
from simulator.slack import SlackSink
from simulator.slack import start_in_background as start_sink
from simulator.slack_directory import SinkUser
from store import JobRecord, Store

CHANNEL = "C0DEMO"
CHANNEL_NAME = "demo"
ALICE_DM = "D0ALICE"  # the local Slack's IM of alice (U0ALICE) with the bot
FATES = ("COMPLETED", "NOT_COMPLETED", "FAILED", "TIMED_OUT")
ONCALL = "<!subteam^S0ONCALL|@ml-oncall>"


async def signed_command(
    session: aiohttp.ClientSession, url: str, *, secret: str, fields: dict[str, str]
) -> dict[str, Any]:
    """POST a slash command (or, with a `payload` field, a click) exactly as Slack does:
    form-encoded, signed, timestamped."""
    body = urlencode(fields)
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    headers = {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": str(signature),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    async with session.post(url, data=body.encode(), headers=headers) as response:
        text = await response.text()
        return {"status": response.status, "body": text}


class DemoSettings(Settings):
    """The demo's settings come from the demo alone: not from the environment or `.env`
    (a developer's SLACK_APP_TOKEN or SLACK_COMMAND must not leak into it)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


class Demo:
    def __init__(self, *, speed: float, jobs: int, seed: int, console: Console) -> None:
        self.speed, self.jobs, self.seed, self.console = speed, jobs, seed, console
        self.sim = Simulator(speed=speed, seed=seed)
        self.sink = SlackSink(token="xoxb-demo-" + secrets.token_hex(8), team_id="T0DEMO")
        self.sink.add_user(SinkUser("U0ALICE", name="alice"))  # a full member: she may act
        self.secret = secrets.token_hex(16)
        self.keys: list[str] = []
        self.records: dict[str, JobRecord | None] = {}
        self.fates: dict[str, str] = {}
        self.dataset = ""
        self.started = time.monotonic()
        self._runners: list[web.AppRunner] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="mathfi-demo-")
        self.service: Service | None = None
        self.events_url = ""

    async def start(self) -> None:
        sim_runner, sim_url = await start_simulator(self.sim)
        sink_runner, _ = await start_sink(self.sink)
        self._runners += [sim_runner, sink_runner]
        settings = DemoSettings(
            mathfi_base_url=sim_url,
            mathfi_username="demo@mathfi.ai",
            mathfi_password="demo-password",
            slack_bot_token=self.sink.token,
            slack_signing_secret=self.secret,
            slack_api_url=self.sink.api_url,
            database_path=Path(self._tmp.name) / "demo.db",
            poll_interval=0.5,
            http_host="127.0.0.1",
            http_port=0,
        )
        # Local Slack has no rate limit; pace a little faster than Slack's 1 post/s.
        self.service = Service(
            settings,
            poller_config=PollerConfig(interval=0.5, concurrency=10, resync_every=1),
            sender_config=SenderConfig(pace=0.25),
        )
        await self.service.start()
        runner = web.AppRunner(self.service.web_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runners.insert(0, runner)
        self.events_url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"

    async def subscribe_all(self) -> list[str]:
        self.dataset = self.dataset or self.sim.create_dataset("churn-demo", ready=True)
        answers = []
        async with aiohttp.ClientSession() as session:
            for i in range(self.jobs):
                fate = FATES[i % len(FATES)]
                key = self.sim.start_training(self.dataset, performance_threshold=0.85, fate=fate)
                self.fates[key] = fate
                answers.append(await self._subscribe(session, key))
                if i == 0:  # one personal subscription: alice follows it in her DM
                    answers.append(await self._subscribe(session, key, f"subscribe {key} --dm"))
        return answers

    async def _subscribe(
        self, session: aiohttp.ClientSession, key: str, text: str | None = None
    ) -> str:
        if key not in self.keys:
            self.keys.append(key)
        text = text or f"subscribe {key} --min-improvement 0.01 --mention {ONCALL}"
        answer = await signed_command(
            session,
            self.events_url,
            secret=self.secret,
            fields={
                "command": "/mathfi",
                "text": text,
                "team_id": self.sink.team_id,
                "team_domain": "demo",
                "channel_id": CHANNEL,
                "channel_name": CHANNEL_NAME,
                "user_id": "U0ALICE",
                "user_name": "alice",
                "response_url": self.sink.new_response_url(),
                "trigger_id": "1.2.3",
                "api_app_id": "A0DEMO",
            },
        )
        return f"/mathfi {text} → HTTP {answer['status']}"

    async def _card_posted(self, key: str) -> bool:
        assert self.service is not None
        card = await self.service.store.get_card(channel_id=CHANNEL, job_key=key)
        return card is not None and card.ts is not None

    async def cancel_one(self) -> list[str]:
        """A fourth training, watched, then cancelled by alice from its card's Cancel
        button: the click Slack would send once she confirmed its dialog."""
        assert self.service is not None
        # TIMED_OUT: the longest fate, so the job is still running when alice clicks
        self.dataset = self.dataset or self.sim.create_dataset("churn-demo", ready=True)
        key = self.sim.start_training(self.dataset, performance_threshold=0.85, fate="TIMED_OUT")
        self.fates[key] = "cancelled"
        async with aiohttp.ClientSession() as session:
            lines = [await self._subscribe(session, key)]
            deadline = time.monotonic() + 10.0
            while not await self._card_posted(key):
                if time.monotonic() > deadline:
                    return [*lines, "the card of the job to cancel did not appear"]
                await asyncio.sleep(0.05)
            click = {
                "type": "block_actions",
                "team": {"id": self.sink.team_id, "domain": "demo"},
                "user": {"id": "U0ALICE", "team_id": self.sink.team_id},
                "api_app_id": "A0DEMO",
                "channel": {"id": CHANNEL, "name": CHANNEL_NAME},
                "trigger_id": "4.5.6",
                "response_url": self.sink.new_response_url(),
                "actions": [{"action_id": ACTION_CANCEL_JOB, "value": key, "type": "button"}],
            }
            answer = await signed_command(
                session, self.events_url, secret=self.secret, fields={"payload": json.dumps(click)}
            )
        return [*lines, f"[Cancel training] on {key} by alice → HTTP {answer['status']}"]

    async def acknowledge_failure(self) -> str:
        """Alice clicks Acknowledge on the FAILED job's alert (a signed `block_actions`
        request); what the thread then says."""
        service = self.service
        assert service is not None
        failed = [key for key, fate in self.fates.items() if fate == "FAILED"]
        alerts = [a for a in await service.store.open_alerts() if a.job_key in failed]
        if not alerts:
            return "No FAILED alert to acknowledge."
        self.sink.add_user(SinkUser("U0ALICE", "member", name="alice"))
        click = {
            "type": "block_actions",
            "team": {"id": self.sink.team_id, "domain": "demo"},
            "user": {"id": "U0ALICE", "team_id": self.sink.team_id},
            "channel": {"id": CHANNEL, "name": CHANNEL_NAME},
            "response_url": self.sink.new_response_url(),
            "actions": [
                {"action_id": ACTION_ACK, "value": str(alerts[0].outbox_id), "type": "button"}
            ],
        }
        async with aiohttp.ClientSession() as session:
            await signed_command(
                session, self.events_url, secret=self.secret, fields={"payload": json.dumps(click)}
            )
        for _ in range(40):  # the sender posts the line, then edits the alert
            lines = [
                m.text for m in self.sink.channels.get(CHANNEL, []) if "Acknowledged by" in m.text
            ]
            if lines:
                return f"{alerts[0].job_key} (FAILED): {lines[0]}"
            await asyncio.sleep(0.25)
        return "The acknowledgement was not posted in time."

    async def finished(self) -> bool:
        """Every job terminal and everything sent; also refreshes `records` (the jobs as
        the store has them) for `status_line` and `summary`."""
        service = self.service
        assert service is not None

        def read(store: Store) -> tuple[dict[str, JobRecord | None], dict[str, int], bool]:
            records = {k: store.get_job(k) for k in self.keys}
            return records, store.outbox_counts(), bool(store.dirty_cards(limit=1))

        self.records, counts, dirty = await service.store.run(read)
        if not all(r is not None and r.terminal for r in self.records.values()):
            return False
        return not counts.get("pending") and not counts.get("sending") and not dirty

    def status_line(self) -> Text:
        service = self.service
        assert service is not None
        parts = []
        for key in self.keys:
            record = self.records.get(key)
            parts.append(f"{key[:8]} {record.status if record else '…'}")
        elapsed = time.monotonic() - self.started
        return Text(
            f"⏱ {elapsed:4.1f} s (×{self.speed:g})  "
            + "  ".join(parts)
            + f"  · posts {service.sender.posts}, card edits {service.sender.edits}",
            style="reverse",
        )

    def view(self, *, compact: bool = False) -> Group:
        """The channel; `compact` (the live view) keeps each card's last replies' headlines."""
        messages = self.sink.channels.get(CHANNEL, [])
        if compact:
            channel = render_channel(CHANNEL_NAME, messages, max_replies=3, max_lines=2)
        else:
            dm = render_channel("alice's DM", self.sink.channels.get(ALICE_DM, []))
            return Group(render_channel(CHANNEL_NAME, messages), dm, self.status_line())
        return Group(channel, self.status_line())

    def summary(self) -> Table:
        service = self.service
        assert service is not None
        table = Table(title="Demo summary", show_header=True)
        table.add_column("job")
        table.add_column("planned fate")
        table.add_column("final status")
        table.add_column("best")
        for key in self.keys:
            record = self.records.get(key)
            best = (
                f"{record.best_performance:.4f} ({record.best_algorithm})"
                if record and record.best_performance is not None
                else "—"
            )
            table.add_row(key, self.fates[key], record.status if record else "?", best)
        messages = self.sink.channels.get(CHANNEL, [])
        kinds = Counter("card" if not m.thread_ts else "reply" for m in messages)
        table.caption = (
            f"{len(messages)} messages posted in #{CHANNEL_NAME} "
            f"({kinds['card']} cards, {kinds['reply']} thread replies), "
            f"{sum(m.edits for m in messages)} card edits, "
            f"{len(self.sink.channels.get(ALICE_DM, []))} in alice's DM, "
            f"{time.monotonic() - self.started:.1f} s"
        )
        return table

    async def close(self) -> None:
        if self.service is not None:
            await self.service.stop(grace=5)
        for runner in self._runners:
            await runner.cleanup()
        self._tmp.cleanup()


async def run_demo(
    *,
    speed: float = 60.0,
    jobs: int = 3,
    seed: int = 7,
    plain: bool = False,
    max_seconds: float = 90.0,
    console: Console | None = None,
) -> int:
    console = console or Console()
    demo = Demo(speed=speed, jobs=max(1, jobs), seed=seed, console=console)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    interrupted = finished = False
    try:
        console.print(
            "[bold]MathFi Slack bot demo[/]: simulator + local Slack + the bot, all on 127.0.0.1",
            highlight=False,
        )
        await demo.start()
        # The job to cancel first: its card then waits behind no alert of the others (the
        # sender posts a channel's alerts first), so alice clicks before it times out.
        cancel = await demo.cancel_one()
        for line in [*await demo.subscribe_all(), *cancel]:
            console.print(Text(line, style="dim"))
        live_ok = console.is_terminal and not plain
        deadline = time.monotonic() + max_seconds
        with (
            Live(demo.view(compact=True), console=console, refresh_per_second=4, transient=False)
            if live_ok
            else contextlib.nullcontext() as live
        ):
            last_report = 0.0
            while time.monotonic() < deadline and not stop.is_set():
                if await demo.finished():
                    finished = True
                    break
                if live is not None:
                    live.update(demo.view(compact=True))
                elif time.monotonic() - last_report > 5:
                    console.print(demo.status_line())
                    last_report = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=0.25)
            if live is not None:
                live.update(demo.view(compact=True))
        interrupted = stop.is_set()
        if not live_ok:
            console.print(demo.view())
        await demo.finished()  # the jobs as they ended
        console.print(demo.summary())
        if finished:
            console.print(Text(await demo.acknowledge_failure(), style="bold"))
        if interrupted:
            console.print("Stopped by Ctrl-C.")
        elif not finished:
            console.print(f"[red]The demo did not finish within {max_seconds:.0f} s.[/]")
    finally:
        await demo.close()
    if interrupted:
        return 130
    return 0 if finished else 1
