"""A stop while a click waits on MathFi, and what a new service on the same database makes
of it: nothing is left `requested` (which says "under way" and holds the job's cancel and
retrain for good), nothing is sent to MathFi again, and the person is told.

Through the real paths: signed block_actions posted to the service, the MathFi simulator
(a latency fault: MathFi answers late) and the Slack sink; `Service.stop` as `serve` calls
it, then the listeners still running cancelled as `asyncio.run` does at exit.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bot.slack.actions_render import ACTION_CANCEL_JOB, ACTION_START_TRAINING
from simulator.faults import Fault
from tests.conftest import Env, wait_for
from tests.test_actions_slack import (
    CANCEL,
    CHANNEL,
    START,
    click,
    confirmation,
    people,
    send,
    service_with,
    thread_texts,
    watched_running_job,
)
from tests.test_commands import listeners_running

TRAINING = "/api/v1/training"
STOPPED = "the bot stopped before MathFi answered"


async def stop_as_serve_does(env: Env) -> None:
    """`serve`'s stop, then what `asyncio.run` does with the tasks left: cancel them."""
    await env.service.stop(grace=3.0)
    left = listeners_running()
    for task in left:
        task.cancel()
    if left:
        await asyncio.wait(left, timeout=5.0)


async def test_a_stop_while_mathfi_holds_a_cancel_tells_unknown_and_holds_nothing_under_way(
    env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.audit")
    people(env)
    job = await watched_running_job(env)
    env.sim.add_fault(Fault(kind="latency", seconds=3.0, method="PATCH", path_prefix=TRAINING))
    url = env.sink.new_response_url()
    assert await env.button(ACTION_CANCEL_JOB, job, response_url=url) == 200
    await wait_for(lambda: env.sim.stats.requests[CANCEL] == 1)
    await stop_as_serve_does(env)

    told = f"MathFi did not say whether job {job} was cancelled ({STOPPED}). Check it on the "
    assert env.responses(url)[0]["text"] == f"❔ Outcome unknown: {told}MathFi dashboard."
    assert any(f"cancel {job}: unknown -> {job}: {told}" in r.getMessage() for r in caplog.records)
    async with service_with(env, tmp_path, database_path=tmp_path / "bot.db") as again:
        (row,) = await again.service.store.recent_actions()
        assert (row.state, row.answer) == ("unknown", f"outcome unknown: {STOPPED}")
        await send(again)  # the line queued while stopping, in the job's thread
        assert [line for line in thread_texts(again) if "asked to cancel" in line] == [
            "❔ <@U0ALICE> asked to cancel this training; outcome unknown: check job "
            f"{job}'s status on the MathFi dashboard before cancelling again"
        ]
        assert env.sim.stats.requests[CANCEL] == 1  # the bot never sent it again itself
        # Bob checks and cancels: an unknown cancel holds nothing (store/actions.py)
        env.sim.clear_faults()
        later = await click(again, ACTION_CANCEL_JOB, job, user="U0BOB")
        assert later["text"] == f"🚫 Job `{job}` is cancelled."
    assert env.sim.stats.requests[CANCEL] == 2  # Alice's, then Bob's own


async def test_a_stop_lets_a_click_mathfi_answers_in_time_finish(env: Env, tmp_path: Path) -> None:
    people(env)
    dataset = env.sim.create_dataset("oilplant")
    _, token = await confirmation(env, f"train {dataset}")
    env.sim.add_fault(Fault(kind="latency", seconds=0.3, method="POST", path_prefix=TRAINING))
    url = env.sink.new_response_url()
    assert await env.button(ACTION_START_TRAINING, token, response_url=url) == 200
    await wait_for(lambda: env.sim.stats.requests[START] == 1)
    await stop_as_serve_does(env)

    async with service_with(env, tmp_path, database_path=tmp_path / "bot.db") as again:
        (row,) = await again.service.store.recent_actions()
        assert row.state == "done" and row.result_job_key is not None
        answer = env.responses(url)[0]["text"]
        assert answer.startswith(f"▶️ Training `{row.result_job_key}` started"), answer
        await send(again)  # the channel watches it: its card says who started it
        assert "started by <@U0ALICE>" in str(env.sink.top_level(CHANNEL)[0].blocks)


async def test_at_start_an_action_a_dead_bot_left_under_way_becomes_unknown(
    env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bot that died while MathFi was asked (SIGKILL: no stop ran) left its rows
    `requested`; the next start makes those older than MATHFI_TIMEOUT (2 s here) unknown,
    on the record, and never asks MathFi again."""
    caplog.set_level(logging.INFO, logger="bot.audit")
    people(env)
    job = await watched_running_job(env)
    store, now = env.service.store, env.clock()
    old, _ = await store.begin_action(
        idempotency_key="card-cancel:dead", kind="cancel", team_id="T0DEMO",
        channel_id=CHANNEL, user_id="U0ALICE", subject_key=job, once_per_subject=True,
        now=now - 2.5,
    )  # fmt: skip
    young, _ = await store.begin_action(
        idempotency_key="confirm:young", kind="start", team_id="T0DEMO", channel_id=CHANNEL,
        user_id="U0BOB", subject_key="some-dataset", now=now - 1.5,
    )  # fmt: skip
    await env.service.stop(grace=3.0)

    async with service_with(env, tmp_path, database_path=tmp_path / "bot.db") as again:
        after = {row.id: row for row in await again.service.store.recent_actions()}
        assert (after[old.id].state, after[old.id].answer) == (
            "unknown", f"outcome unknown: {STOPPED}",
        )  # fmt: skip
        assert after[young.id].state == "requested"  # may still be waited on elsewhere
        audit = [r.getMessage() for r in caplog.records if "(at start)" in r.getMessage()]
        assert audit == [
            f"team=T0DEMO channel={CHANNEL} user=U0ALICE command='(at start)' "
            f"result=cancel {job}: unknown: {STOPPED}"
        ]
        unknown = again.service.metrics.actions.labels(action="cancel", outcome="unknown")
        assert unknown._value.get() == 1
        await send(again)
        assert [line for line in thread_texts(again) if "asked to cancel" in line] == [
            "❔ <@U0ALICE> asked to cancel this training; outcome unknown: check job "
            f"{job}'s status on the MathFi dashboard before cancelling again"
        ]
        assert env.sim.stats.requests[CANCEL] == 0  # the dead bot's row is never sent
        later = await click(again, ACTION_CANCEL_JOB, job, user="U0BOB")
        assert later["text"] == f"🚫 Job `{job}` is cancelled."  # not held by the unknown
    assert env.sim.stats.requests[CANCEL] == 1  # Bob's own
