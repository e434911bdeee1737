"""The on-call loop's "a bug: log and continue" branch (issue #20; since the engine's loops
share `bot.engine.loop.PeriodicLoop`, the branch every periodic loop runs): an alert row
this version cannot turn into a re-page (a hand edit, or a bug of ours) fails each tick
with its traceback in the log, pages nobody, and the loop keeps ticking."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import pytest
from pydantic import ValidationError

from bot.engine.oncall import Oncall, OncallConfig
from tests.conftest import Env
from tests.test_except_paths_loops import Rounds
from tests.test_oncall import failed_alert


async def test_an_unreadable_alert_fails_the_tick_and_the_loop_goes_on(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    await failed_alert(env)
    raw = sqlite3.connect(env.service.settings.database_path)
    with raw:  # a job key the re-page's note refuses (it must not be empty)
        raw.execute("UPDATE alerts SET job_key = ''")
    raw.close()
    env.clock.advance(3600)  # the first re-page is long due
    rounds = Rounds(2)
    oncall = Oncall(
        env.service.store,
        config=OncallConfig(repage=60.0, max_pages=2, every=5.0),
        metrics=env.service.metrics,
        clock=env.clock,
        sleep=rounds,
    )
    rounds.loop = oncall
    with caplog.at_level(logging.ERROR, logger="bot.engine.oncall"):
        await asyncio.wait_for(oncall.run(), timeout=5)
    failed = [r for r in caplog.records if r.name == "bot.engine.oncall"]
    assert [r.getMessage() for r in failed] == ["on-call tick failed; continuing"] * 2
    assert failed[0].exc_info is not None  # the traceback is in the log
    assert isinstance(failed[0].exc_info[1], ValidationError)
    assert rounds.waits == [5.0, 5.0]  # ticked again after each failure
    assert oncall.pages == 0
    (alert,) = await env.service.store.open_alerts()
    assert alert.pages == 0  # nobody paged, the alert still open
