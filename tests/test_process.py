"""`mathfi-bot run` as a real process: clean SIGTERM shutdown, and no secret in any log line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest

from simulator.mathfi import Simulator
from simulator.mathfi import start_in_background as start_simulator
from simulator.slack import SlackFault, SlackSink
from simulator.slack import start_in_background as start_sink
from tests.conftest import sign, wait_for
from tests.reliability.process import bound_port
from tests.scripts import LIFECYCLE

PASSWORD = "pw-Zq81-very-secret"
BOT_TOKEN = "xoxb-4242-secret-bot-token"
SIGNING = "signing-secret-5f3a9c-known"
ROOT = Path(__file__).resolve().parents[1]
REQUIRED = {
    "MATHFI_USERNAME": "a",
    "MATHFI_PASSWORD": "b",
    "SLACK_BOT_TOKEN": "xoxb-x",
    "SLACK_SIGNING_SECRET": "s",
    "SLACK_API_URL": "http://127.0.0.1:9/api/",  # nothing listens: start goes on regardless
}


def base_env() -> dict[str, str]:
    """PATH, the repo on PYTHONPATH, and coverage's variables (a measured run measures the
    child too); nothing else of this process's environment."""
    coverage = {k: v for k, v in os.environ.items() if k.startswith("COVERAGE_")}
    return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **coverage}


class Bot:
    """The service as a child process; it binds HTTP_PORT=0 and `start` reads the port
    from its "listening on" log line."""

    def __init__(self, tmp: Path, sim_url: str, sink: SlackSink) -> None:
        self.port = 0
        self.log = tmp / "bot.log"
        self.db = tmp / "bot.db"
        self.env = {
            **base_env(),
            "MATHFI_BASE_URL": sim_url,
            "MATHFI_USERNAME": "ops@mathfi.ai",
            "MATHFI_PASSWORD": PASSWORD,
            "MATHFI_MAX_RETRIES": "1",
            "MATHFI_TIMEOUT": "2",
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING,
            "SLACK_API_URL": sink.api_url,
            "DATABASE_PATH": str(self.db),
            "POLL_INTERVAL": "0.2",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": "0",
            "LOG_LEVEL": "DEBUG",
            "LOG_FORMAT": "json",
        }
        self.tmp = tmp
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                cwd=self.tmp,
                env=self.env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        async with aiohttp.ClientSession() as http:

            async def healthy() -> bool:
                try:
                    async with http.get(self.url + "/healthz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            deadline = time.monotonic() + 20
            while not (self.port and await healthy()):
                self.port = self.port or bound_port(self.log.read_text().splitlines()) or 0
                assert self.proc.returncode is None, self.log.read_text()
                assert time.monotonic() < deadline, self.log.read_text()
                await asyncio.sleep(0.1)

    async def command(self, http: aiohttp.ClientSession, text: str, response_url: str) -> int:
        body = urlencode(
            {
                "command": "/mathfi",
                "text": text,
                "team_id": "T0DEMO",
                "channel_id": "C0OPS",
                "user_id": "U1",
                "response_url": response_url,
            }
        )
        async with http.post(
            self.url + "/slack/events", data=body.encode(), headers=sign(body, secret=SIGNING)
        ) as response:
            return response.status

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Simulator, SlackSink, Bot]]:
    sim = Simulator(users={"ops@mathfi.ai": PASSWORD})
    sink = SlackSink(token=BOT_TOKEN, team_id="T0DEMO")
    sim_runner, sim_url = await start_simulator(sim)
    sink_runner, _ = await start_sink(sink)
    bot = Bot(tmp_path, sim_url, sink)
    try:
        yield sim, sink, bot
    finally:
        await bot.stop()
        await sim_runner.cleanup()
        await sink_runner.cleanup()


@pytest.mark.parametrize(
    ("uvloop", "loop"),
    [("true", "uvloop.Loop"), ("false", "asyncio.unix_events._UnixSelectorEventLoop")],
)
async def test_sigterm_stops_cleanly_within_ten_seconds(
    world: tuple[Simulator, SlackSink, Bot], uvloop: str, loop: str
) -> None:
    """On either event loop (UVLOOP; uvloop is a locked dependency on Linux)."""
    sim, sink, bot = world
    bot.env["UVLOOP"] = uvloop
    await bot.start()
    assert f'"message": "event loop: {loop}"' in bot.log.read_text()
    key = sim.script_job(LIFECYCLE[1:3])
    async with aiohttp.ClientSession() as http:
        assert await bot.command(http, f"subscribe {key}", sink.new_response_url()) == 200
    await wait_for(lambda: sink.channels.get("C0OPS"), timeout=10)
    assert bot.proc is not None
    started = time.monotonic()
    bot.proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(bot.proc.wait(), timeout=12)
    assert code == 0, bot.log.read_text()
    assert time.monotonic() - started < 10
    log = bot.log.read_text()
    assert '"message": "stopped"' in log


async def test_no_secret_reaches_a_log_line(world: tuple[Simulator, SlackSink, Bot]) -> None:
    sim, sink, bot = world
    await bot.start()
    key = sim.script_job(LIFECYCLE[1:4])
    async with aiohttp.ClientSession() as http:
        # login + a subscribe
        assert await bot.command(http, f"subscribe {key}", sink.new_response_url()) == 200
        await wait_for(lambda: sink.channels.get("C0OPS"), timeout=10)
        issued = set(sim._tokens)  # every MathFi token handed out so far
        # a 401 in the middle of a run: the bot logs in again
        sim.revoke_tokens()
        sim.advance(key)
        await wait_for(lambda: sim.stats.logins >= 2, timeout=10)
        issued |= set(sim._tokens)
        # a Slack error
        posted = len(sink.channels["C0OPS"])
        sink.add_fault(SlackFault(kind="error", error="internal_error", count=2))
        sim.advance(key)
        await wait_for(lambda: len(sink.channels["C0OPS"]) > posted, timeout=15)
        # a crash in a listener: a button payload the listener cannot understand
        errors = lambda: bot.log.read_text().count('"level": "ERROR"')  # noqa: E731
        errors_before = errors()
        payload = json.dumps(
            {
                "type": "block_actions",
                "team": {"id": "T0DEMO"},
                "user": {"id": "U1"},
                "actions": [{"action_id": "mathfi_refresh"}],
                "response_url": sink.new_response_url(),
            }
        )
        body = urlencode({"payload": payload})
        async with http.post(
            bot.url + "/slack/events", data=body.encode(), headers=sign(body, secret=SIGNING)
        ) as response:
            assert response.status == 200
        await wait_for(lambda: errors() > errors_before, timeout=10)  # the crash, logged
    await bot.stop()
    log = bot.log.read_text()
    assert len(issued) >= 2 and "ERROR" in log  # the listener crash was logged
    for secret in [PASSWORD, BOT_TOKEN, SIGNING, *issued]:
        assert secret not in log, f"a secret reached the log: {secret[:6]}…"
    for line in log.splitlines():
        json.loads(line)  # LOG_FORMAT=json: one object a line


async def refused_run(tmp_path: Path, **variables: str) -> str:
    """`mathfi-bot run` that must refuse to start: exit 2 and, as its last line, one
    `mathfi-bot: …` message and no traceback. Returns that line."""
    env = {**base_env(), **variables}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    text = err.decode()
    assert proc.returncode == 2, text
    lines = text.strip().splitlines()
    assert sum(line.startswith("mathfi-bot: ") for line in lines) == 1, text
    assert lines[-1].startswith("mathfi-bot: ") and "Traceback" not in text, text
    assert out == b""
    return lines[-1]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, "MATHFI_USERNAME is not set"),
        ({**REQUIRED, "POLL_INTERVAL": "soon"}, "POLL_INTERVAL is invalid"),
        ({**REQUIRED, "DATABASE_PATH": "/proc/nope/bot.db"}, "the database (DATABASE_PATH)"),
    ],
)
async def test_run_with_bad_settings_says_which_in_one_line(
    tmp_path: Path, extra: dict[str, str], expected: str
) -> None:
    assert expected in await refused_run(tmp_path, **extra)


async def test_run_on_a_taken_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        line = await refused_run(
            tmp_path,
            **REQUIRED,
            HTTP_HOST="127.0.0.1",
            HTTP_PORT=str(taken.getsockname()[1]),
            DATABASE_PATH=str(tmp_path / "bot.db"),
        )
    assert "HTTP_PORT" in line
