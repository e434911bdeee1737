"""The poller's forecast warnings end to end: the simulator plays a lifecycle with MathFi's
rules compressed (a 300 s stall window in 15 s), the service polls it on a manual clock and
posts to the Slack sink; the warnings go through the outbox like every notification."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web

from bot.app.service import Service
from bot.core.diff import best_reached
from bot.core.models import Snapshot
from bot.slack.sender import SenderConfig
from simulator.mathfi import Simulator
from simulator.mathfi import start_in_background as start_simulator
from simulator.slack import SlackSink
from simulator.slack import start_in_background as start_sink
from simulator.training import Rules
from store import JobRecord, Store
from tests.conftest import BOT_TOKEN, TEAM, ManualClock, make_settings, sign, url_of, wait_for

FACTOR = 20.0  # MathFi's rules and curves played 20 times faster
RULES = Rules.compressed(FACTOR)
INTERVAL = 30.0 / FACTOR  # the default poll interval, compressed alike
COOLDOWN = 600.0 / FACTOR
WARNINGS = ("at_risk", "back_on_track", "stall_warning")


@dataclasses.dataclass
class Rig:
    sim: Simulator
    sink: SlackSink
    clock: ManualClock
    settings_path: Path
    sim_url: str
    cooldown: float = COOLDOWN
    service: Service | None = None
    runner: web.AppRunner | None = None

    async def start(self) -> Service:
        settings = make_settings(
            mathfi_base_url=self.sim_url,
            slack_api_url=self.sink.api_url,
            database_path=self.settings_path,
            poll_interval=INTERVAL,
            mathfi_stall_window=RULES.stall_window,
            mathfi_stall_delta=RULES.stall_delta,
            mathfi_time_budget=RULES.time_limit,
            warning_cooldown=self.cooldown,
        )
        # the service's own PollerConfig (forecast rules and cooldown from the settings),
        # with the tests' jitter-free timing
        service = Service(settings, clock=self.clock, sender_config=SenderConfig(pace=0.0))
        service._poller_config = dataclasses.replace(
            service._poller_config, jitter=0.0, resync_every=3600.0
        )
        await service.start(run_loops=False)
        self.runner = web.AppRunner(service.web_app(), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.service = service
        return service

    async def stop(self) -> None:
        assert self.service is not None and self.runner is not None
        await self.service.stop(grace=3.0)
        await self.runner.cleanup()
        self.service = self.runner = None

    async def cycle(self) -> None:
        assert self.service is not None
        self.clock.advance(INTERVAL)
        await self.service.poller.tick()
        await self.service.sender.tick()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = ManualClock()
    compressed = {f.name: getattr(RULES, f.name) for f in dataclasses.fields(RULES)}
    sim = Simulator(clock=clock, seed=5, **compressed)
    sink = SlackSink(token=BOT_TOKEN, team_id=TEAM)
    sim_runner, sim_url = await start_simulator(sim)
    sink_runner, _ = await start_sink(sink)
    setup = Rig(sim, sink, clock, tmp_path / "bot.db", sim_url)
    try:
        yield setup
    finally:
        if setup.service is not None:
            await setup.stop()
        await sim_runner.cleanup()
        await sink_runner.cleanup()


async def subscribe(rig: Rig, key: str) -> None:
    assert rig.runner is not None
    response_url = rig.sink.new_response_url()
    body = urlencode(
        {
            "command": "/mathfi",
            "text": f"subscribe {key}",
            "team_id": TEAM,
            "channel_id": "C0TEST",
            "user_id": "U0ALICE",
            "response_url": response_url,
        }
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url_of(rig.runner)}/slack/events", data=body.encode(), headers=sign(body)
        ) as response,
    ):
        assert response.status == 200
    await wait_for(lambda: rig.sink.responses.get(response_url.rsplit("/", 1)[-1]))


def warning_rows(path: Path) -> list[tuple[str, float, str]]:
    """(kind of each warning event, when its row was queued, the row's dedupe key)."""
    store = Store(path)
    try:
        rows = [r for state in ("pending", "sent", "dead") for r in store.rows_in_state(state)]
    finally:
        store.close()
    found = []
    for row in rows:
        for event in json.loads(row.payload).get("events", []):
            if event["kind"] in WARNINGS:
                found.append((event["kind"], row.created_at, row.dedupe_key))
    return sorted(found, key=lambda w: w[1])


async def doomed_job(rig: Rig) -> str:
    """A job whose four algorithms level off below 0.85: MathFi stops it NOT_COMPLETED
    about 20 s (400 s of MathFi's time) in."""
    key = rig.sim.start_training(
        rig.sim.create_dataset("d"), performance_threshold=0.85, fate="NOT_COMPLETED"
    )
    await subscribe(rig, key)
    return key


async def poll_until(rig: Rig, key: str, done: Callable[[JobRecord], bool]) -> JobRecord:
    assert rig.service is not None
    for _ in range(100):
        await rig.cycle()
        record = await rig.service.store.get_job(key)
        assert record is not None
        if done(record) or record.terminal:
            return record
    raise AssertionError("the job did not get there in 100 polls")


def blocks_text(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


async def test_a_doomed_job_is_warned_at_risk_once_before_the_end_and_not_again_after_a_restart(
    rig: Rig,
) -> None:
    await rig.start()
    key = await doomed_job(rig)
    record = await poll_until(rig, key, lambda _: bool(warning_rows(rig.settings_path)))
    assert not record.terminal  # told while there is still time
    assert [kind for kind, _, _ in warning_rows(rig.settings_path)] == ["at_risk"]
    assert rig.service is not None
    await rig.service.sender.tick()  # the card is edited after the post
    (card,) = rig.sink.top_level("C0TEST")
    assert "⚠️ At risk: no algorithm is projected to reach 0.85 (best projected" in blocks_text(
        card.blocks
    )

    await rig.stop()  # a restart: the poller's memory is gone, the database stays
    await rig.start()
    record = await poll_until(rig, key, lambda _: False)
    assert record.status == "NOT_COMPLETED"
    rows = warning_rows(rig.settings_path)
    assert [kind for kind, _, _ in rows] == ["at_risk"]  # the restart did not repeat it

    replies = [m.text for m in rig.sink.replies("C0TEST", card.ts)]
    at_risk = [text for text in replies if text.startswith("⚠️ At risk")]
    assert len(at_risk) == 1
    assert "MathFi's advice: retrain at 0.80, then raise in 0.05 steps" in at_risk[0]
    (final,) = [text for text in replies if text.startswith("🛑 Job NOT_COMPLETED")]
    best = best_reached(Snapshot.model_validate_json(record.snapshot_json))
    assert best is not None and 0.80 <= best < 0.85  # the curves level off in [0.80, 0.85)
    assert f"Best reached {best:.4f}. MathFi's advice: retrain at 0.80, then raise" in final
    assert rig.service is not None
    await rig.service.sender.tick()  # the card's last edit follows the final reply
    (card,) = rig.sink.top_level("C0TEST")
    assert "NOT_COMPLETED" in blocks_text(card.blocks)
    assert "At risk" not in blocks_text(card.blocks)  # nothing on a finished job


@pytest.mark.parametrize(
    ("cooldown", "expected"),
    [(0.0, ["at_risk", "stall_warning"]), (COOLDOWN, ["at_risk"])],
    ids=["no-cooldown", "cooldown"],
)
async def test_at_most_one_warning_per_job_per_cooldown(
    rig: Rig, cooldown: float, expected: list[str]
) -> None:
    rig.cooldown = cooldown
    await rig.start()
    key = await doomed_job(rig)
    record = await poll_until(rig, key, lambda _: False)
    assert record.status == "NOT_COMPLETED"
    rows = warning_rows(rig.settings_path)
    # the stall comes 6 s (two minutes of MathFi's time) after the at_risk: within the
    # cooldown of 30 s it is held back and the job ends first
    assert [kind for kind, _, _ in rows] == expected
    assert all(b[1] - a[1] >= cooldown for a, b in itertools.pairwise(rows))
    assert len({dedupe for _, _, dedupe in rows}) == len(rows)
