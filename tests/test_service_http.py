"""/healthz, /metrics, `check`, and the logs: what an operator relies on."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from bot.app.check import collect, print_checks, run_check
from bot.logs import JsonFormatter, RedactSecrets, configure_logging
from simulator.faults import Fault
from simulator.slack import SlackFault
from tests.conftest import BOT_TOKEN, PASSWORD, SIGNING_SECRET, Env, make_settings
from tests.scripts import LIFECYCLE


async def test_metrics_answer_from_the_start(env: Env) -> None:
    async with env.http.get(f"{env.base_url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    for name in (
        "mathfi_polls_total",
        "mathfi_poll_errors_total",
        "mathfi_poll_latency_seconds",
        "mathfi_events_total",
        "mathfi_outbox_backlog",
        "mathfi_slack_ratelimited_total",
        "mathfi_slack_send_latency_seconds",
        "mathfi_active_subscriptions",
    ):
        assert name in text


async def test_metrics_count_polls_events_and_subscriptions(env: Env) -> None:
    key = env.sim.script_job(LIFECYCLE[1:3])
    _, _, url = await env.command(f"subscribe {key}")
    await env.reply(url)
    env.sim.advance(key)
    await env.cycle(10.0)
    async with env.http.get(f"{env.base_url}/metrics") as response:
        text = await response.text()
    assert "mathfi_polls_total 1.0" in text
    assert 'mathfi_events_total{kind="new_best"} 1.0' in text
    assert "mathfi_active_subscriptions 1.0" in text


async def test_healthz_fresh_then_stale(env: Env) -> None:
    await env.cycle()
    async with env.http.get(f"{env.base_url}/healthz") as response:
        body = await response.json()
        assert response.status == 200, body
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["outbox_backlog"] == 0
    env.clock.advance(env.service.settings.stale_after + 1)
    async with env.http.get(f"{env.base_url}/healthz") as response:
        assert response.status == 503
        assert (await response.json())["status"] == "stale"


async def test_healthz_degraded_while_mathfi_is_down(env: Env) -> None:
    key = env.sim.script_job(LIFECYCLE[1:3])
    _, _, url = await env.command(f"subscribe {key}")
    await env.reply(url)
    env.sim.add_fault(Fault(kind="status", status=503))
    await env.cycle(10.0)
    async with env.http.get(f"{env.base_url}/healthz") as response:
        body = await response.json()
    assert response.status == 200  # the service itself is fine: not a restart reason
    assert body["status"] == "degraded" and body["mathfi"] == "unreachable"


async def test_slack_429_is_counted(env: Env) -> None:
    key = env.sim.script_job(LIFECYCLE[1:3])
    _, _, url = await env.command(f"subscribe {key}")
    await env.reply(url)
    env.sink.add_fault(
        SlackFault(kind="ratelimit", method="chat.postMessage", count=1, retry_after=2)
    )
    await env.cycle()
    async with env.http.get(f"{env.base_url}/metrics") as response:
        assert (
            'mathfi_slack_ratelimited_total{method="chat.postMessage"} 1.0' in await response.text()
        )


def test_redaction_scrubs_messages_args_and_tracebacks() -> None:
    redact = RedactSecrets(["hunter2-password", "xoxb-secret-token"])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(redact)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("login with %s", "hunter2-password")
        try:
            raise RuntimeError("token xoxb-secret-token refused")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "hunter2-password" not in output and "xoxb-secret-token" not in output
    assert output.count("[redacted]") >= 2
    for line in output.splitlines():
        json.loads(line)  # one JSON object a line


async def test_check_reports_every_part(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(
        mathfi_base_url=env.sim_url,
        slack_api_url=env.sink.api_url,
        database_path=env.service.settings.database_path,
    )
    checks = await collect(lambda: settings)
    assert [c.ok for c in checks] == [True, True, True, True], checks
    out = io.StringIO()
    print_checks(checks, out)
    assert out.getvalue().count("✓") == 4 and "All checks passed." in out.getvalue()


async def test_check_says_what_to_do(env: Env, tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    settings = make_settings(
        mathfi_base_url=env.sim_url,
        mathfi_password="wrong",
        slack_api_url=env.sink.api_url,
        slack_bot_token="xoxb-wrong",
        database_path=blocked / "bot.db",
    )
    checks = await collect(lambda: settings)
    failed = {c.name.split()[0]: c for c in checks if not c.ok}
    assert set(failed) == {"MathFi", "Slack", "Database"}
    assert "MATHFI_PASSWORD" in failed["MathFi"].fix
    assert "SLACK_BOT_TOKEN" in failed["Slack"].fix
    assert "DATABASE_PATH" in failed["Database"].fix
    out = io.StringIO()
    print_checks(checks, out)
    assert "3 check(s) failed." in out.getvalue()
    assert "wrong" not in out.getvalue().replace("xoxb-wrong", "")  # no secret echoed


async def test_check_exits_nonzero_on_missing_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    assert await run_check() == 1
    out = capsys.readouterr().out
    assert "✗ Settings" in out and "MATHFI_USERNAME is not set" in out


def test_configure_logging_registers_secrets() -> None:
    stream = io.StringIO()
    configure_logging(
        level="INFO", fmt="text", secrets=[PASSWORD, BOT_TOKEN, SIGNING_SECRET], stream=stream
    )
    try:
        logging.getLogger("bot.test").info("%s %s %s", PASSWORD, BOT_TOKEN, SIGNING_SECRET)
    finally:
        logging.getLogger().handlers.clear()
    assert PASSWORD not in stream.getvalue() and BOT_TOKEN not in stream.getvalue()
    assert SIGNING_SECRET not in stream.getvalue()
