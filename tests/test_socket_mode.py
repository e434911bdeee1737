"""Socket Mode: with SLACK_APP_TOKEN set, commands arrive over bolt's aiohttp WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app.check import collect
from bot.app.service import Service
from bot.engine.poller import PollerConfig
from bot.errors import ConfigError
from simulator.mathfi import Simulator
from simulator.mathfi import start_in_background as start_simulator
from simulator.slack import SlackSink
from simulator.slack import start_in_background as start_sink
from tests.conftest import BOT_TOKEN, ManualClock, make_settings, wait_for
from tests.scripts import LIFECYCLE

APP_TOKEN = "xapp-1-test-app-token"


@pytest.fixture
async def socket_env(tmp_path: Path) -> AsyncIterator[tuple[Simulator, SlackSink, Service]]:
    sim, sink = Simulator(), SlackSink(token=BOT_TOKEN, team_id="T0DEMO", app_token=APP_TOKEN)
    sim_runner, sim_url = await start_simulator(sim)
    sink_runner, _ = await start_sink(sink)
    settings = make_settings(
        mathfi_base_url=sim_url,
        slack_api_url=sink.api_url,
        slack_app_token=APP_TOKEN,
        database_path=tmp_path / "bot.db",
    )
    service = Service(settings, clock=ManualClock(), poller_config=PollerConfig(interval=10))
    await service.start(run_loops=False)
    try:
        yield sim, sink, service
    finally:
        await service.stop(grace=3.0)
        await sim_runner.cleanup()
        await sink_runner.cleanup()


async def test_slash_command_over_socket_mode(
    socket_env: tuple[Simulator, SlackSink, Service],
) -> None:
    sim, sink, service = socket_env
    await wait_for(lambda: sink.socket.connected)
    key = sim.script_job(LIFECYCLE)
    response_url = sink.new_response_url()
    ack = await sink.socket.push(
        "slash_commands",
        {
            "command": "/mathfi",
            "text": f"subscribe {key}",
            "team_id": "T0DEMO",
            "channel_id": "C0SOCK",
            "user_id": "U1",
            "response_url": response_url,
            "api_app_id": "A0SINK",
            "trigger_id": "1.2",
        },
    )
    assert "Asking MathFi" in str(ack.get("payload"))
    await wait_for(lambda: sink.responses[response_url.rsplit("/", 1)[-1]])
    subs = await service.store.list_subscriptions(channel_id="C0SOCK")
    assert [s.subscription.job_key for s in subs] == [key]
    await service.sender.tick()
    assert sink.channels["C0SOCK"][0].metadata["event_type"] == "mathfi_card"


async def test_help_over_socket_mode_answers_in_the_ack(
    socket_env: tuple[Simulator, SlackSink, Service],
) -> None:
    _, sink, _ = socket_env
    await wait_for(lambda: sink.socket.connected)
    ack = await sink.socket.push(
        "slash_commands",
        {
            "command": "/mathfi",
            "text": "help",
            "team_id": "T0DEMO",
            "channel_id": "C0SOCK",
            "user_id": "U1",
            "response_url": sink.new_response_url(),
            "api_app_id": "A0SINK",
        },
    )
    assert "subscribe" in str(ack["payload"])


@pytest.mark.parametrize("token", ["xapp-1-not-the-right-one", "xoxb-not-an-app-token"])
async def test_a_refused_app_token_stops_start_with_one_clear_error(
    tmp_path: Path, token: str
) -> None:
    sim, sink = Simulator(), SlackSink(token=BOT_TOKEN, team_id="T0DEMO", app_token=APP_TOKEN)
    sim_runner, sim_url = await start_simulator(sim)
    sink_runner, _ = await start_sink(sink)
    settings = make_settings(
        mathfi_base_url=sim_url,
        slack_api_url=sink.api_url,
        slack_app_token=token,
        database_path=tmp_path / "bot.db",
    )
    service = Service(settings, clock=ManualClock())
    try:
        with pytest.raises(ConfigError, match="SLACK_APP_TOKEN"):
            await service.start(run_loops=False)
        checks = await collect(lambda: settings)
        socket = next(c for c in checks if c.name == "Socket Mode token")
        assert not socket.ok and "connections:write" in socket.fix
    finally:
        await service.stop(grace=1.0)
        await sim_runner.cleanup()
        await sink_runner.cleanup()
