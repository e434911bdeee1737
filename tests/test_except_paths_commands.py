"""The `except` branches of acting from Slack that no other test runs (issue #20): MathFi
refusing or failing a start, a cancel and the reads before a confirmation, the database
refusing a click, a bot built without the acting tools, and a click cut short by a stop.

Everything goes in as a user would send it (signed slash commands and block_actions
payloads posted to the service); MathFi fails through the simulator's faults, the database
through another connection holding it. Each test checks what the person reads, what was
recorded and that nothing was done twice.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from bot.slack.actions_render import (
    ACTION_CANCEL_JOB,
    ACTION_CONFIRM_CANCEL,
    ACTION_RETRAIN,
    ACTION_START_TRAINING,
)
from simulator.faults import Fault
from store import ActionRecord
from tests.conftest import Env, wait_for
from tests.scripts import payload
from tests.test_actions_slack import (
    CHANNEL,
    START,
    ask,
    button,
    cancels,
    click,
    confirmation,
    people,
    send,
    service_with,
    starts,
    thread_texts,
    watched_running_job,
)
from tests.test_commands import listeners_running
from tests.test_failure_paths_commands import Commands, database_held

TRAINING = "/api/v1/training"
AUTH = (
    "MathFi refused the bot's credentials, so nothing was done. Ask whoever runs the bot to "
    "check MATHFI_USERNAME and MATHFI_PASSWORD."
)


async def only_action(env: Env) -> ActionRecord:
    (row,) = await env.service.store.recent_actions()
    return row


def failed_count(env: Env, action: str, outcome: str) -> float:
    value: float = env.service.metrics.actions.labels(action=action, outcome=outcome)._value.get()
    return value


# --------------------------------------------------------------------- start: MathFi refuses
@pytest.mark.parametrize(
    ("status", "said"),
    [
        (401, AUTH),
        (404, "MathFi does not know dataset {dataset}."),
        (422, "MathFi refused the request for dataset {dataset} (HTTP 422); nothing was done."),
        (
            307,
            "MathFi refused the request for dataset {dataset} (redirect refused); nothing was "
            "done.",
        ),
    ],
)
async def test_a_start_mathfi_refuses_says_why_and_starts_nothing(
    env: Env, status: int, said: str
) -> None:
    people(env)
    dataset = env.sim.create_dataset("oilplant")
    _, token = await confirmation(env, f"train {dataset}")
    env.sim.add_fault(Fault(kind="status", status=status, method="POST", path_prefix=TRAINING))
    answer = await click(env, ACTION_START_TRAINING, token)
    assert answer["text"] == "⚠️ " + said.format(dataset=dataset)
    assert answer.get("replace_original") is True  # the confirmation's button is gone
    row = await only_action(env)
    assert (row.state, row.kind, row.result_job_key) == ("failed", "start", None)
    assert failed_count(env, "start", "failed") == 1
    # asked once (twice for a 401: one fresh login, one retry), never started, no card
    assert starts(env) == (2 if status == 401 else 1)
    assert not env.sink.top_level(CHANNEL)
    env.sim.clear_faults()
    again = await click(env, ACTION_START_TRAINING, token)  # the same confirmation
    assert "already failed" in again["text"]
    assert starts(env) == (2 if status == 401 else 1)


# --------------------------------------------------------------------- cancel: MathFi fails
@pytest.mark.parametrize(
    ("status", "said"),
    [
        (429, "MathFi cannot be reached right now, so nothing was done. Try again in a minute."),
        (401, AUTH),
    ],
)
async def test_a_cancel_mathfi_cannot_take_is_told_once_and_the_job_runs_on(
    env: Env, status: int, said: str
) -> None:
    people(env)
    job = await watched_running_job(env)
    env.sim.add_fault(Fault(kind="status", status=status, method="PATCH", path_prefix=TRAINING))
    answer = await click(env, ACTION_CANCEL_JOB, job)
    assert answer["text"].startswith(f"⚠️ {said}")
    row = await only_action(env)
    assert (row.state, row.kind) == ("failed", "cancel")
    env.sim.clear_faults()
    assert (await env.service.mathfi.get_progress(job)).status != "CANCELLED"
    await send(env)
    told = [line for line in thread_texts(env) if "asked to cancel" in line]
    assert told == [f"⚠️ <@U0ALICE> asked to cancel this training; nothing was done: {said}"]
    assert "CANCELLED" not in str(env.sink.top_level(CHANNEL)[0].blocks)


async def test_a_lost_cancel_whose_read_back_fails_too_is_unknown(env: Env) -> None:
    people(env)
    job = await watched_running_job(env)
    env.sim.add_fault(Fault(kind="lost", method="PATCH", path_prefix=TRAINING, count=1))
    env.sim.add_fault(Fault(kind="status", status=503, method="GET", path_prefix=TRAINING))
    answer = await click(env, ACTION_CANCEL_JOB, job)
    assert answer["text"] == (
        f"❔ Outcome unknown: MathFi did not say whether job {job} was cancelled "
        "(outcome unknown). Check it on the MathFi dashboard."
    )  # no "It is … now": MathFi did not say that either
    row = await only_action(env)
    assert (row.state, row.answer) == ("unknown", "outcome unknown: outcome unknown")
    assert cancels(env) == 1
    env.sim.clear_faults()
    await send(env)
    told = [line for line in thread_texts(env) if "U0ALICE" in line and "cancel" in line]
    assert len(told) == 1 and "MathFi dashboard" in told[0], told


async def test_cancelling_an_ended_job_whose_status_cannot_be_read(env: Env) -> None:
    people(env)
    job = env.sim.script_job([payload("COMPLETED", {"BSEV01": 0.9})])
    env.sim.add_fault(Fault(kind="status", status=503, method="GET", path_prefix=TRAINING))
    answer = await click(env, ACTION_CANCEL_JOB, job)  # an old card's Cancel
    assert answer["text"] == f"⚠️ Job {job} has already ended: there is nothing to cancel."
    assert (await only_action(env)).state == "failed"


# --------------------------------------------------------------------- reads before a confirmation
async def test_mathfi_failing_before_a_confirmation_is_told_and_nothing_is_proposed(
    env: Env,
) -> None:
    people(env)
    dataset = env.sim.create_dataset("oilplant")
    job = env.sim.start_training(dataset)
    env.sim.add_fault(Fault(kind="status", status=503, method="GET", path_prefix="/api/v1"))
    down = "⚠️ MathFi cannot be reached right now, so nothing was done. Try again in a minute."
    for text in (f"train {dataset}", f"cancel {job}", "datasets"):
        reply = await ask(env, text)
        assert reply["text"] == down, text
        assert button(reply, ACTION_START_TRAINING) is None
        assert button(reply, ACTION_CONFIRM_CANCEL) is None
    retrain = await click(env, ACTION_RETRAIN, job)
    assert retrain["text"] == down and button(retrain, ACTION_START_TRAINING) is None
    assert starts(env) == 0 and cancels(env) == 0
    assert not await env.service.store.recent_actions()


async def test_a_dataset_mathfi_refuses_to_show_is_not_called_unreachable(env: Env) -> None:
    people(env)
    dataset = env.sim.create_dataset("oilplant")
    env.sim.add_fault(Fault(kind="status", status=403, method="GET", path_prefix="/api/v1"))
    reply = await ask(env, f"train {dataset}")
    assert reply["text"] == (
        f"⚠️ MathFi refused the request about `{dataset}` (HTTP 403), so nothing was done."
    )
    assert button(reply, ACTION_START_TRAINING) is None


# --------------------------------------------------------------------- the database refuses
async def test_a_click_the_database_refuses_does_nothing_and_says_so(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    people(env)
    job = await watched_running_job(env)
    with caplog.at_level(logging.ERROR), database_held(Path(env.service.settings.database_path)):
        answer = await click(env, ACTION_CANCEL_JOB, job)
    assert answer["text"] == "⚠️ The bot's database is unavailable right now."
    assert cancels(env) == 0  # the row comes before MathFi: no row, no call
    assert not await env.service.store.recent_actions()
    assert not [r for r in caplog.records if r.exc_info]
    again = await click(env, ACTION_CANCEL_JOB, job)  # the database is back
    assert "is cancelled" in again["text"] and cancels(env) == 1


# --------------------------------------------------------------------- no acting tools
async def test_a_bot_built_without_acting_says_so(env: Env) -> None:
    """A CommandContext made without `acting` (the subscription commands alone)."""
    bolt = Commands(env)
    dataset = env.sim.create_dataset("oilplant")
    ack, url = await bolt.command(f"train {dataset}")
    assert "Checking dataset" in ack["text"]
    reply = await env.reply(url)
    assert reply["text"] == "⚠️ Acting from Slack is not set up in this bot."
    clicked = await env.reply(await bolt.button(ACTION_CANCEL_JOB, "some-job"))
    assert clicked["text"] == "⚠️ Acting from Slack is not set up in this bot."
    assert starts(env) == 0 and cancels(env) == 0


# --------------------------------------------------------------------- a click cut short
async def test_a_start_cut_short_while_mathfi_works_is_recorded_unknown(env: Env) -> None:
    """The service stopped while MathFi was starting the training (asyncio cancels the
    tasks left at exit): the row must not stay `requested`, holding the click's key with
    no outcome; it says the outcome is unknown, and a second click does not start again."""
    people(env)
    dataset = env.sim.create_dataset("oilplant")
    _, token = await confirmation(env, f"train {dataset}")
    env.sim.add_fault(
        Fault(kind="latency", seconds=3.0, method="POST", path_prefix=TRAINING, count=1)
    )
    url = env.sink.new_response_url()
    assert await env.button(ACTION_START_TRAINING, token, response_url=url) == 200
    await wait_for(lambda: env.sim.stats.requests[START] == 1)
    (listener,) = listeners_running()
    listener.cancel()
    await asyncio.wait({listener}, timeout=5.0)
    row = await only_action(env)
    assert (row.state, row.answer) == ("unknown", "the bot failed")
    again = await click(env, ACTION_START_TRAINING, token)
    assert "the outcome is unknown: the bot failed" in again["text"]
    assert env.sim.stats.requests[START] == 1 and not env.responses(url)


# --------------------------------------------------------------------- after MathFi acted
async def test_a_training_started_where_the_channel_is_full_is_started_and_told(
    env: Env, tmp_path: Path
) -> None:
    people(env)
    dataset = env.sim.create_dataset("oilplant")
    async with service_with(env, tmp_path, subscription_limit=1) as full:
        await ask(full, f"subscribe {env.sim.start_training(dataset)}")
        _, token = await confirmation(full, f"train {dataset}")
        answer = await click(full, ACTION_START_TRAINING, token)
        (row,) = await full.service.store.recent_actions()
        job = row.result_job_key
        assert row.state == "done" and job is not None
        assert answer["text"] == (
            f"⚠️ Training `{job}` started, but this channel already watches as many jobs as "
            f"allowed: `/mathfi subscribe {job}` after an unsubscribe."
        )
        assert await full.service.store.get_subscription(channel_id=CHANNEL, job_key=job) is None
        await send(full)
        said = [m for m in full.sink.top_level(CHANNEL) if "Started by" in m.text]
        assert len(said) == 1 and said[0].text == (
            f"▶️ Started by <@U0ALICE>: job `{job}`, target 0.8, scaling factor 19"
        )  # in the channel (no card, no thread): the line names the job
        assert said[0].metadata["event_payload"]["job_key"] == job
        assert starts(full) == 1


async def test_a_cancel_done_whose_card_cannot_be_redrawn_does_not_say_nothing_changed(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """MathFi cancelled the job; the stored snapshot (a hand edit, a bug) cannot be read
    to redraw its card. The person must not read "nothing was changed"."""
    people(env)
    job = await watched_running_job(env)
    raw = sqlite3.connect(env.service.settings.database_path)
    with raw:
        raw.execute("UPDATE jobs SET snapshot_json = '{\"no\": 1}' WHERE job_key = ?", (job,))
    raw.close()
    with caplog.at_level(logging.ERROR):
        answer = await click(env, ACTION_CANCEL_JOB, job)
    assert "nothing was changed" not in answer["text"]
    assert answer["text"] == (
        "⚠️ Something went wrong on our side, and MathFi may have acted: check the job on "
        "the MathFi dashboard before you try again."
    )
    assert any(r.exc_info for r in caplog.records)  # the traceback, with the reference
    row = await only_action(env)
    assert (row.state, cancels(env)) == ("done", 1)
    again = await click(env, ACTION_CANCEL_JOB, job)
    assert again["text"] == f"🚫 Already done: <@U0ALICE> cancelled job `{job}`."
