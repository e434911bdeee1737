"""The `except` branches of the background loops that no other test runs (issue #20): the
digest, on-call and Home loops when the database refuses (a real `AsyncStore`, closed) or
holds a row they cannot read, and the group commit when a poll's record breaks inside the
batch's transaction. Each test checks what the branch is for: the loop goes on, one log
line says why, the other channels and polls are not held up."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.engine.digest import DigestConfig, DigestLoop
from bot.engine.group_commit import GroupCommit
from bot.engine.oncall import Oncall, OncallConfig
from bot.metrics import Metrics
from bot.slack.api import SlackCaller
from bot.slack.home import HomePublisher
from store import AsyncStore
from tests.conftest import Env, ManualClock
from tests.scripts import LIFECYCLE
from tests.test_failure_paths_engine import Outcomes, poll


@pytest.fixture
async def store(tmp_path: Path, clock: ManualClock) -> AsyncIterator[AsyncStore]:
    opened = await AsyncStore.open(tmp_path / "bot.db", clock=clock)
    try:
        yield opened
    finally:
        await opened.close()


class Rounds:
    """An injected sleep that stops `loop` after `rounds` waits (so the loop ran that many
    rounds, each after the last one failed)."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.waits: list[float] = []
        self.loop: Any = None

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if len(self.waits) >= self.rounds:
            self.loop.stop()
        await asyncio.sleep(0)


def messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


# ----------------------------------------------------------------------------- digest
async def test_the_digest_loop_goes_on_when_the_database_refuses(
    store: AsyncStore, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    await store.close()
    rounds = Rounds(2)
    loop = DigestLoop(store, config=DigestConfig(every=30.0), clock=clock, sleep=rounds)
    rounds.loop = loop
    with caplog.at_level(logging.WARNING, logger="bot.engine.digest"):
        await asyncio.wait_for(loop.run(), timeout=5)
    assert (
        messages(caplog, "bot.engine.digest")
        == ["digest round skipped: the database refused (the store is closed)"] * 2
    )
    assert rounds.waits == [30.0, 30.0]


async def test_a_zone_that_left_the_zone_database_skips_that_channel_alone(
    store: AsyncStore, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    for channel, tz in (("CGONE", "Mars/Olympus_Mons"), ("CUTC", "UTC")):
        await store.set_digest(
            channel_id=channel, team_id="T1", daily_at="00:00", tz=tz, user_id="U1"
        )
    loop = DigestLoop(store, config=DigestConfig(), clock=clock)
    with caplog.at_level(logging.WARNING, logger="bot.engine.digest"):
        written = await loop.round()
    assert written == ["CUTC"]  # the other channel still gets its digest
    assert messages(caplog, "bot.engine.digest") == [
        "digest of CGONE: unknown time zone 'Mars/Olympus_Mons'"
    ]


async def test_a_round_that_hits_an_unreadable_row_is_logged_and_the_loop_goes_on(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    key = env.sim.script_job(LIFECYCLE)
    status, _, url = await env.command(f"subscribe {key}")
    assert status == 200
    await env.reply(url)
    path = env.service.settings.database_path
    store = await AsyncStore.open(path, clock=env.clock)
    try:
        await store.set_digest(
            channel_id="C0TEST", team_id="T1", daily_at="00:00", tz="UTC", user_id="U1"
        )
        raw = sqlite3.connect(path)
        with raw:  # a snapshot this version cannot read (a bug, or a hand edit)
            raw.execute("UPDATE jobs SET snapshot_json = '{\"no\": 1}' WHERE job_key = ?", (key,))
        raw.close()
        rounds = Rounds(2)
        loop = DigestLoop(store, config=DigestConfig(every=30.0), clock=env.clock, sleep=rounds)
        rounds.loop = loop
        with caplog.at_level(logging.ERROR, logger="bot.engine.digest"):
            await asyncio.wait_for(loop.run(), timeout=5)
    finally:
        await store.close()
    failed = [r for r in caplog.records if r.name == "bot.engine.digest"]
    assert [r.getMessage() for r in failed] == ["digest round failed; continuing"] * 2
    assert failed[0].exc_info is not None  # the traceback is in the log
    assert rounds.waits == [30.0, 30.0]


# ----------------------------------------------------------------------------- on-call
async def test_the_oncall_loop_goes_on_when_the_database_refuses(
    store: AsyncStore, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    await store.close()
    rounds = Rounds(2)
    loop = Oncall(
        store, config=OncallConfig(every=5.0), metrics=Metrics(), clock=clock, sleep=rounds
    )
    rounds.loop = loop
    with caplog.at_level(logging.WARNING, logger="bot.engine.oncall"):
        await asyncio.wait_for(loop.run(), timeout=5)
    assert (
        messages(caplog, "bot.engine.oncall")
        == ["on-call tick skipped: the database refused (the store is closed)"] * 2
    )
    assert loop.unacknowledged is None and rounds.waits == [5.0, 5.0]


# ----------------------------------------------------------------------------- Home tab
async def test_the_home_publisher_goes_on_when_the_database_refuses(
    env: Env, store: AsyncStore, caplog: pytest.LogCaptureFixture
) -> None:
    await store.close()
    rounds = Rounds(2)
    slack = SlackCaller(env.service.slack, metrics=Metrics())
    home = HomePublisher(store, slack, command="/mathfi", clock=env.clock, sleep=rounds)
    rounds.loop = home
    with caplog.at_level(logging.WARNING, logger="bot.slack.home"):
        await asyncio.wait_for(home.run(), timeout=5)
    # the engine's loops' words (`PeriodicLoop`): a refusal skips a tick, it is no bug
    assert (
        messages(caplog, "bot.slack.home")
        == ["home publisher cycle skipped: the database refused (the store is closed)"] * 2
    )
    assert rounds.waits == [1.0, 1.0]
    assert not [m for m, _ in env.sink.calls if m == "views.publish"]


# ----------------------------------------------------------------------------- group commit
async def test_a_record_that_breaks_inside_the_batch_fails_alone(store: AsyncStore) -> None:
    """Not a refusal by SQLite but an error of our own while the batch's transaction is
    written: the batch is rolled back and each poll is written on its own, so only the
    broken one fails (and its poll hears the error)."""
    commit, seen = GroupCommit(store), Outcomes()
    broken = dataclasses.replace(poll("JBAD"), last_best=[(1, 0.5)])  # type: ignore[arg-type]
    results = await asyncio.gather(
        seen.record(commit, "J1", poll("J1")),
        seen.record(commit, "JBAD", broken),
        seen.record(commit, "J3", poll("J3")),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], AttributeError)
    assert set(seen.written) == {"J1", "J3"} and not seen.refused
    assert (await store.get_job("J1")) is not None and (await store.get_job("J3")) is not None
    assert (await store.get_job("JBAD")) is None
