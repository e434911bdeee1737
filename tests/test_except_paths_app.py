"""The `except` branches of bot/app that no other test runs (issue #20): Slack not answering
auth.test or Socket Mode's token probe at start (the service starts anyway and identifies
itself on the first command), `mathfi-bot check` when MathFi and Slack cannot be reached,
and SQLite refusing the start-up write check's connection. Each test drives the real
failure (the local Slack sink's faults, a closed port, a folder that does not exist) and
checks what the person or the operator sees."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.app.check import collect, print_checks
from bot.app.service import Service
from bot.app.startup import check_writable
from simulator.mathfi import Simulator
from simulator.mathfi import start_in_background as start_simulator
from simulator.slack import SlackSink
from simulator.slack import start_in_background as start_sink
from simulator.slack_faults import SlackFault
from store import StoreUnavailable
from tests.conftest import BOT_TOKEN, TEAM, Env, ManualClock, make_settings, serve_service, url_of

# Nothing listens here: a connection is refused at once (the default of `make_settings`).
CLOSED = "http://127.0.0.1:1"


def service_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bot.app.service"]


@pytest.fixture
async def sink() -> AsyncIterator[SlackSink]:
    sink = SlackSink(token=BOT_TOKEN, team_id=TEAM)
    runner, _ = await start_sink(sink)
    try:
        yield sink
    finally:
        await sink.settle()  # a held call completes even after its client gave up
        await runner.cleanup()


# ----------------------------------------------------------------------------- auth.test
@pytest.mark.parametrize(
    ("fault", "line"),
    [
        (
            SlackFault(kind="hang", method="auth.test", count=1, seconds=1.5),
            "Slack unreachable at start",
        ),
        (
            SlackFault(kind="status", method="auth.test", count=1, status=503),
            "Slack auth.test failed (fatal_error); will try again on the first command",
        ),
    ],
)
async def test_slack_silent_at_start_the_service_starts_and_identifies_on_the_first_command(
    tmp_path: Path,
    sink: SlackSink,
    caplog: pytest.LogCaptureFixture,
    fault: SlackFault,
    line: str,
) -> None:
    sim = Simulator(seed=1)
    sim_runner, sim_url = await start_simulator(sim)
    sink.add_fault(fault)
    settings = make_settings(
        mathfi_base_url=sim_url,
        slack_api_url=sink.api_url,
        slack_timeout=1,
        database_path=tmp_path / "bot.db",
    )
    clock = ManualClock()
    with caplog.at_level(logging.INFO, logger="bot.app.service"):
        service, runner = await serve_service(settings, clock)
    try:
        assert service.accepting  # Slack's trouble does not keep the service down
        assert any(message.startswith(line) for message in service_lines(caplog)), caplog.text
        assert service.front.team_id is None
        async with aiohttp.ClientSession() as http:
            env = Env(sim, sim_url, sink, service, clock, url_of(runner), http)
            # the first command asks auth.test again: now the bot knows its team and
            # refuses another workspace's command
            status, ack, _ = await env.command("list", team="T0OTHER")
        assert status == 200 and "another Slack workspace" in str(ack), ack
        assert service.front.team_id == TEAM
    finally:
        await service.stop(grace=1.0)
        await runner.cleanup()
        await sim_runner.cleanup()


# ----------------------------------------------------------------------------- Socket Mode
async def test_slack_unreachable_at_start_in_socket_mode_is_not_a_refused_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Socket Mode's token probe cannot reach Slack: Slack's trouble, not a configuration
    error, so the service starts and the SDK keeps trying to connect."""
    settings = make_settings(
        slack_api_url=f"{CLOSED}/api/",
        slack_app_token="xapp-1-test-app-token",
        database_path=tmp_path / "bot.db",
    )
    service = Service(settings, clock=ManualClock())
    try:
        with caplog.at_level(logging.INFO, logger="bot.app.service"):
            await service.start(run_loops=False)  # no ConfigError
        assert service.accepting
        lines = service_lines(caplog)
        assert any(m.startswith("Slack unreachable at start") for m in lines), lines
        assert "connecting to Slack in Socket Mode" in lines
    finally:
        await service.stop(grace=1.0)


# ----------------------------------------------------------------------------- check
async def test_check_says_mathfi_and_slack_cannot_be_reached(tmp_path: Path) -> None:
    settings = make_settings(
        mathfi_base_url=CLOSED,
        slack_api_url=f"{CLOSED}/api/",
        database_path=tmp_path / "bot.db",
    )
    checks = await collect(lambda: settings)
    failed = {c.name.split()[0]: c for c in checks if not c.ok}
    assert set(failed) == {"MathFi", "Slack"}
    assert failed["MathFi"].fix == "Check MATHFI_BASE_URL and that this machine can reach it."
    assert "127.0.0.1:1" in failed["MathFi"].detail
    assert failed["Slack"].detail == "cannot reach Slack (ClientConnectorError)"
    assert failed["Slack"].fix == "Check SLACK_API_URL and the network (proxy, firewall)."
    out = io.StringIO()
    print_checks(checks, out)
    assert "2 check(s) failed." in out.getvalue()


# ----------------------------------------------------------------------------- start-up
def test_sqlite_refusing_the_write_checks_connection_is_one_clear_refusal(
    tmp_path: Path,
) -> None:
    """In the service the store has just opened the same file, so only a race (the folder
    removed, the process out of file descriptors) gets here; SQLite's refusal becomes the
    `StoreUnavailable` that `mathfi-bot run` turns into one line and exit code 2."""
    with pytest.raises(StoreUnavailable, match="unable to open database file"):
        check_writable(tmp_path / "no-such-folder" / "bot.db")
