"""`mathfi-bot check` and Socket Mode's token probe at start against a silent or
unreachable Slack: each gives up after SLACK_TIMEOUT with a clear message (slack_sdk
ignores its own timeout on a session it did not create: check's session would wait 5
minutes, the service's 30 s), and `check` never says Slack accepts SLACK_APP_TOKEN when it
could not ask. Against the local Slack sink (a hang fault) and a closed port."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app.check import Check, collect, print_checks
from bot.app.service import Service
from simulator.slack import SlackSink
from simulator.slack import start_in_background as start_sink
from simulator.slack_faults import SlackFault
from tests.conftest import BOT_TOKEN, TEAM, ManualClock, make_settings

APP_TOKEN = "xapp-1-test-app-token"
CLOSED = "http://127.0.0.1:1"  # nothing listens: refused at once
SILENT = "Slack did not answer within 1 s (SLACK_TIMEOUT)"
HANG = 4.0  # the sink holds the call this long; SLACK_TIMEOUT is 1 s


@pytest.fixture
async def sink() -> AsyncIterator[SlackSink]:
    sink = SlackSink(token=BOT_TOKEN, team_id=TEAM, app_token=APP_TOKEN)
    runner, _ = await start_sink(sink)
    try:
        yield sink
    finally:
        await sink.settle()
        await runner.cleanup()


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name.split(" at ")[0]: check for check in checks}


async def timed_collect(**overrides: object) -> tuple[dict[str, Check], float, str]:
    settings = make_settings(slack_timeout=1, **overrides)
    started = time.monotonic()
    checks = await collect(lambda: settings)
    elapsed = time.monotonic() - started
    out = io.StringIO()
    print_checks(checks, out)
    return by_name(checks), elapsed, out.getvalue()


async def test_check_gives_up_on_a_silent_auth_test_after_slack_timeout(
    sink: SlackSink, tmp_path: Path
) -> None:
    sink.add_fault(SlackFault(kind="hang", method="auth.test", seconds=HANG, count=1))
    checks, elapsed, _ = await timed_collect(
        slack_api_url=sink.api_url, database_path=tmp_path / "bot.db"
    )
    slack = checks["Slack auth.test"]
    assert (slack.ok, slack.detail) == (False, SILENT)
    assert slack.fix == "Check SLACK_API_URL and the network (proxy, firewall)."
    assert elapsed < HANG - 1.0


async def test_check_gives_up_on_a_silent_socket_mode_probe_and_says_it_could_not_check(
    sink: SlackSink, tmp_path: Path
) -> None:
    sink.add_fault(SlackFault(kind="hang", method="apps.connections.open", seconds=HANG, count=1))
    checks, elapsed, printed = await timed_collect(
        slack_api_url=sink.api_url, slack_app_token=APP_TOKEN, database_path=tmp_path / "b.db"
    )
    socket = checks["Socket Mode token"]
    assert (socket.ok, socket.detail) == (False, f"could not check SLACK_APP_TOKEN: {SILENT}")
    assert "✓ Socket Mode token" not in printed
    assert checks["Slack auth.test"].ok  # the bot token's own check still ran
    assert elapsed < HANG - 1.0


async def test_check_with_slack_unreachable_does_not_say_it_accepts_the_app_token(
    tmp_path: Path,
) -> None:
    checks, _, printed = await timed_collect(
        slack_api_url=f"{CLOSED}/api/", slack_app_token=APP_TOKEN, database_path=tmp_path / "b.db"
    )
    socket = checks["Socket Mode token"]
    assert (socket.ok, socket.detail) == (
        False, "could not check SLACK_APP_TOKEN: cannot reach Slack (ClientConnectorError)",
    )  # fmt: skip
    assert "Slack accepts SLACK_APP_TOKEN" not in printed
    assert "✗ Socket Mode token: could not check SLACK_APP_TOKEN" in printed


async def test_check_still_says_so_when_slack_accepts_the_app_token(
    sink: SlackSink, tmp_path: Path
) -> None:
    checks, _, _ = await timed_collect(
        slack_api_url=sink.api_url, slack_app_token=APP_TOKEN, database_path=tmp_path / "b.db"
    )
    socket = checks["Socket Mode token"]
    assert (socket.ok, socket.detail) == (True, "Slack accepts SLACK_APP_TOKEN")


async def test_start_in_socket_mode_gives_up_on_a_silent_token_probe_after_slack_timeout(
    sink: SlackSink, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink.add_fault(SlackFault(kind="hang", method="apps.connections.open", seconds=HANG, count=1))
    settings = make_settings(
        slack_api_url=sink.api_url, slack_app_token=APP_TOKEN, slack_timeout=1,
        database_path=tmp_path / "bot.db",
    )  # fmt: skip
    service = Service(settings, clock=ManualClock())
    try:
        started = time.monotonic()
        with caplog.at_level(logging.INFO, logger="bot.app.service"):
            await service.start(run_loops=False)
        assert time.monotonic() - started < HANG - 1.0
        assert service.accepting
        lines = [r.getMessage() for r in caplog.records if r.name == "bot.app.service"]
        assert f"SLACK_APP_TOKEN not checked: {SILENT}; connecting anyway" in lines
    finally:
        await service.stop(grace=1.0)
