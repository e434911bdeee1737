"""Shared fixtures: the MathFi simulator and the Slack sink as real servers on 127.0.0.1,
and the service wired to both, with a manual clock so tests tick the loops themselves."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from hypothesis import settings as hypothesis_settings
from slack_sdk.signature import SignatureVerifier

from bot.app.service import Service
from bot.config import Settings
from bot.engine.poller import PollerConfig
from bot.logs import redactor
from bot.slack.sender import SenderConfig
from simulator.mathfi import Simulator
from simulator.mathfi import start_in_background as start_simulator
from simulator.slack import SlackSink
from simulator.slack import start_in_background as start_sink

# bolt and slack-sdk read SLACK_* variables implicitly; tests must not see a developer's.
for _name in list(os.environ):
    if _name.startswith(("SLACK_", "MATHFI_")):
        del os.environ[_name]

# Hypothesis: no per-example deadline anywhere (a loaded machine made the 200 ms default
# fail once); CI (CI=true) also derandomizes and keeps no example database, so a CI run is
# the same run every time. Developers keep random examples. HYPOTHESIS_PROFILE overrides.
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.register_profile("ci", deadline=None, derandomize=True, database=None)
hypothesis_settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE")
    or ("ci" if os.environ.get("CI", "").lower() in {"1", "true", "yes"} else "dev")
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        default=bool(os.environ.get("LONG_TESTS")),
        help="the long variants (e.g. 31 SIGKILL steps instead of 10); also LONG_TESTS=1",
    )


# The benchmark smoke runs (seconds each) that `make test-fast` leaves out; the rest of
# tests/test_bench_smoke.py (the hot-path unit tests) stays in the fast loop.
BENCH_SMOKE = {
    "test_poll_scale_runs_every_phase",
    "test_latency_measures_every_change",
    "test_ceiling_runs_alone",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name == "test_bench_smoke.py" and item.name in BENCH_SMOKE:
            item.add_marker(pytest.mark.bench_smoke)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """No silent skips: a test that skips (rather than being deselected) fails."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, and this suite allows no skips: {report.longrepr}"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put back what a test (or `bot.__main__`'s configure_logging) changes in the logging
    globals: the root logger's level, handlers and filters, aiohttp.access's level, and the
    secrets the process-wide redactor scrubs."""
    root = logging.getLogger()
    access = logging.getLogger("aiohttp.access")
    level, handlers, filters = root.level, list(root.handlers), list(root.filters)
    access_level = access.level
    secrets = set(redactor()._secrets)
    try:
        yield
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
        root.filters[:] = filters
        access.setLevel(access_level)
        redactor()._secrets.clear()
        redactor()._secrets.update(secrets)


SIGNING_SECRET = "test-signing-secret-0123456789"
BOT_TOKEN = "xoxb-test-token-abcdef"
PASSWORD = "demo-password"
TEAM = "T0DEMO"


class ManualClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mathfi_base_url": "http://127.0.0.1:1",
        "mathfi_username": "demo@mathfi.ai",
        "mathfi_password": PASSWORD,
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": "http://127.0.0.1:1/api/",
        "database_path": Path("unused.db"),
        "poll_interval": 10.0,
        "http_host": "127.0.0.1",
        "http_port": 0,
        "mathfi_max_retries": 1,
        "mathfi_timeout": 2.0,
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)


def sign(
    body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": str(signature),
        "Content-Type": "application/x-www-form-urlencoded",
    }


async def wait_for(condition: Callable[[], Any], *, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@dataclass
class Env:
    sim: Simulator
    sim_url: str
    sink: SlackSink
    service: Service
    clock: ManualClock
    base_url: str
    http: aiohttp.ClientSession
    runners: list[web.AppRunner] = field(default_factory=list)

    async def command(
        self,
        text: str,
        *,
        channel: str = "C0TEST",
        team: str = TEAM,
        user: str = "U0ALICE",
        command: str = "/mathfi",
        headers: dict[str, str] | None = None,
        trigger_id: str = "1.2.3",
    ) -> tuple[int, Any, str]:
        """A signed slash command. Returns (HTTP status, ack body, response_url)."""
        response_url = self.sink.new_response_url()
        body = urlencode(
            {
                "command": command,
                "text": text,
                "team_id": team,
                "team_domain": "demo",
                "channel_id": channel,
                "channel_name": "test",
                "user_id": user,
                "user_name": "alice",
                "response_url": response_url,
                "trigger_id": trigger_id,
                "api_app_id": "A0TEST",
            }
        )
        async with self.http.post(
            f"{self.base_url}/slack/events", data=body.encode(), headers=headers or sign(body)
        ) as response:
            raw = await response.text()
            try:
                parsed: Any = json.loads(raw)
            except ValueError:
                parsed = raw
            return response.status, parsed, response_url

    def responses(self, response_url: str) -> list[dict[str, Any]]:
        return self.sink.responses.get(response_url.rsplit("/", 1)[-1], [])

    async def reply(self, response_url: str, *, timeout: float = 5.0) -> dict[str, Any]:
        """The first message posted to a command's response_url (slow commands answer there)."""
        found = await wait_for(lambda: self.responses(response_url), timeout=timeout)
        result: dict[str, Any] = found[0]
        return result

    async def button(
        self,
        action_id: str,
        value: str,
        *,
        channel: str = "C0TEST",
        user: str = "U0ALICE",
        trigger_id: str = "1.2.3",
        response_url: str | None = None,
    ) -> int:
        """A signed block_actions click. A real click has its own `trigger_id` (a second
        click on the same button too); Slack's redelivery of one click repeats it."""
        payload = {
            "type": "block_actions",
            "team": {"id": TEAM, "domain": "demo"},
            "user": {"id": user, "team_id": TEAM},
            "api_app_id": "A0TEST",
            "channel": {"id": channel, "name": "test"},
            "trigger_id": trigger_id,
            "response_url": response_url or self.sink.new_response_url(),
            "container": {"type": "message", "message_ts": "1.0", "channel_id": channel},
            "message": {"ts": "1.0", "text": "card"},
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "b",
                    "value": value,
                    "type": "button",
                    "action_ts": "1.1",
                }
            ],
        }
        body = urlencode({"payload": json.dumps(payload)})
        async with self.http.post(
            f"{self.base_url}/slack/events", data=body.encode(), headers=sign(body)
        ) as response:
            return response.status

    async def cycle(self, seconds: float = 0.0) -> None:
        """Advance the clock, poll what is due, then send what is due."""
        self.clock.advance(seconds)
        await self.service.poller.tick()
        await self.service.sender.tick()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def serve_service(settings: Settings, clock: ManualClock) -> tuple[Service, web.AppRunner]:
    """The service with the tests' timing, its loops left to `tick`, served on a free port."""
    service = Service(
        settings,
        clock=clock,
        poller_config=PollerConfig(
            interval=10.0, jitter=0.0, concurrency=8, unreachable_after=60.0, resync_every=3600.0
        ),
        sender_config=SenderConfig(pace=1.0, backoff_base=1.0, backoff_max=30.0),
    )
    await service.start(run_loops=False)
    runner = web.AppRunner(service.web_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return service, runner


def url_of(runner: web.AppRunner) -> str:
    return f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def env(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Env]:
    sim = Simulator(seed=1)
    sink = SlackSink(token=BOT_TOKEN, team_id=TEAM)
    sim_runner, sim_url = await start_simulator(sim)
    sink_runner, _ = await start_sink(sink)
    settings = make_settings(
        mathfi_base_url=sim_url, slack_api_url=sink.api_url, database_path=tmp_path / "bot.db"
    )
    service, runner = await serve_service(settings, clock)
    base_url = url_of(runner)
    async with aiohttp.ClientSession() as http:
        environment = Env(
            sim=sim,
            sim_url=sim_url,
            sink=sink,
            service=service,
            clock=clock,
            base_url=base_url,
            http=http,
            runners=[runner, sim_runner, sink_runner],
        )
        try:
            yield environment
        finally:
            await service.stop(grace=3.0)
            for r in environment.runners:
                await r.cleanup()
