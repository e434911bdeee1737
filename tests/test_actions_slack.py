"""Acting from Slack end to end: `/mathfi train|cancel|datasets`, the confirmations' buttons,
the card's Cancel and Retrain, through the real signed paths (slash commands and
block_actions payloads posted to the service), the MathFi simulator and the Slack sink."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.core.events import Event, EventKind
from bot.core.models import Snapshot
from bot.slack.actions_render import (
    ACTION_CANCEL_JOB,
    ACTION_CONFIRM_CANCEL,
    ACTION_RETRAIN,
    ACTION_START_TRAINING,
)
from bot.slack.render import render_notification
from simulator.faults import Fault
from simulator.slack_directory import SinkUser, UserKind
from tests.conftest import PASSWORD, Env, make_settings, serve_service, url_of
from tests.scripts import payload

START = ("POST", "/api/v1/training/datasets/{key}")
CANCEL = ("PATCH", "/api/v1/training/{key}/cancel")
CHANNEL = "C0TEST"
_triggers = itertools.count(1)


# --------------------------------------------------------------------- helpers
def people(env: Env, **kinds: UserKind) -> None:
    for user_id, kind in {"U0ALICE": "member", "U0BOB": "member", **kinds}.items():
        env.sink.add_user(SinkUser(user_id, kind))


def text_of(body: dict[str, Any]) -> str:
    return str(body.get("text", "")) + "\n" + str(body.get("blocks", ""))


def button(body: dict[str, Any], action_id: str) -> dict[str, Any] | None:
    for block in body.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id:
                found: dict[str, Any] = element
                return found
    return None


async def ask(env: Env, text: str, **kwargs: Any) -> dict[str, Any]:
    """A slow command: acked at once, answered on its response_url."""
    status, ack, url = await env.command(text, **kwargs)
    assert status == 200 and ack["response_type"] == "ephemeral", ack
    return await env.reply(url)


async def click(
    env: Env, action_id: str, value: str, *, user: str = "U0ALICE", trigger: str | None = None
) -> dict[str, Any]:
    """One click (its own trigger_id unless a redelivery is meant); its ephemeral answer."""
    url = env.sink.new_response_url()
    trigger_id = trigger or f"click.{next(_triggers)}"
    status = await env.button(action_id, value, user=user, trigger_id=trigger_id, response_url=url)
    assert status == 200
    return await env.reply(url)


def starts(env: Env) -> int:
    return env.sim.stats.requests[START]


def cancels(env: Env) -> int:
    return env.sim.stats.requests[CANCEL]


async def send(env: Env, rounds: int = 4) -> None:
    """Only the sender (no poll): what the bot shows without asking MathFi again."""
    for _ in range(rounds):
        env.clock.advance(1.1)
        await env.service.sender.tick()


def card(env: Env, channel: str = CHANNEL, index: int = 0) -> Any:
    return env.sink.top_level(channel)[index]


def thread_texts(env: Env, channel: str = CHANNEL, index: int = 0) -> list[str]:
    return [m.text for m in env.sink.replies(channel, card(env, channel, index).ts)]


async def confirmation(env: Env, text: str, **kwargs: Any) -> tuple[dict[str, Any], str]:
    reply = await ask(env, text, **kwargs)
    found = button(reply, ACTION_START_TRAINING) or button(reply, ACTION_CONFIRM_CANCEL)
    assert found is not None, reply
    return reply, str(found["value"])


async def started_job(env: Env) -> str:
    (latest,) = await env.service.store.recent_actions(limit=1)
    assert latest.result_job_key is not None, latest
    return latest.result_job_key


@asynccontextmanager
async def service_with(env: Env, tmp_path: Path, **overrides: Any) -> AsyncIterator[Env]:
    values: dict[str, Any] = {
        "mathfi_base_url": env.sim_url,
        "slack_api_url": env.sink.api_url,
        "database_path": tmp_path / "other.db",
    }
    service, runner = await serve_service(make_settings(**(values | overrides)), env.clock)
    try:
        yield replace(env, service=service, base_url=url_of(runner), runners=[])
    finally:
        await service.stop(grace=3.0)
        await runner.cleanup()


# --------------------------------------------------------------------- train
async def test_train_answers_with_a_confirmation_not_an_error(env: Env) -> None:
    people(env)
    dataset = env.sim.create_dataset("oilplant")
    reply, token = await confirmation(env, f"train {dataset} --target 0.8 --scaling-factor 21")
    assert "Something went wrong" not in text_of(reply)
    assert "oilplant" in reply["text"] and dataset in text_of(reply)
    assert "0.8" in text_of(reply) and "21" in text_of(reply)
    assert len(token) <= 200 and starts(env) == 0  # nothing starts before the click


@pytest.mark.parametrize(
    ("status", "said"),
    [
        ("PENDING", "waiting for its data"),
        ("PROCESSING", "still being prepared"),
        ("FAILED", "failed to prepare"),
    ],
)
async def test_a_dataset_that_is_not_ready_is_explained(env: Env, status: str, said: str) -> None:
    people(env)
    dataset = env.sim.create_dataset(f"ds-{status}", status=status)
    reply = await ask(env, f"train {dataset}")
    assert said in reply["text"] and button(reply, ACTION_START_TRAINING) is None
    assert starts(env) == 0


async def test_an_unknown_dataset_is_named(env: Env) -> None:
    people(env)
    unknown = "0f0f0f0f-1111-4222-8333-444444444444"
    reply = await ask(env, f"train {unknown}")
    assert "no dataset" in reply["text"] and unknown in reply["text"]
    assert button(reply, ACTION_START_TRAINING) is None


async def test_start_click_starts_once_watches_and_says_who(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    people(env)
    dataset = env.sim.create_dataset("oilplant")
    _, token = await confirmation(
        env, f"train {dataset} --target 0.8 --scaling-factor 21 --events failures"
    )
    answer = await click(env, ACTION_START_TRAINING, token)
    assert "started" in answer["text"] and answer.get("replace_original") is True
    job = await started_job(env)
    assert starts(env) == 1 and job in answer["text"]
    training = await env.service.mathfi.get_training(job)
    assert (training.dataset_key, training.scaling_factor) == (dataset, 21)
    assert training.target_performance == pytest.approx(0.8)
    sub = await env.service.store.get_subscription(channel_id=CHANNEL, job_key=job)
    assert sub is not None and sub.active and sub.events == "failures"

    await send(env)
    assert "started by <@U0ALICE>" in str(card(env).blocks)
    assert any("Started by <@U0ALICE>" in line for line in thread_texts(env))
    # on the record: the audit log, the metric
    assert any(
        r.name == "bot.audit" and "start" in r.getMessage() and "done" in r.getMessage()
        for r in caplog.records
    )
    assert PASSWORD not in caplog.text
    async with env.http.get(f"{env.base_url}/metrics") as response:
        metrics = await response.text()
    assert 'mathfi_actions_total{action="start",outcome="done"} 1.0' in metrics


async def test_a_double_click_and_a_redelivered_click_start_once(env: Env) -> None:
    people(env)
    dataset = env.sim.create_dataset("oilplant")
    _, token = await confirmation(env, f"train {dataset}")
    await click(env, ACTION_START_TRAINING, token, trigger="t.1")
    again = await click(env, ACTION_START_TRAINING, token, trigger="t.2")  # double click
    redelivered = await click(env, ACTION_START_TRAINING, token, trigger="t.1")
    assert starts(env) == 1
    for reply in (again, redelivered):
        assert "Already done" in reply["text"] and "<@U0ALICE>" in reply["text"]
    await send(env)
    assert len(env.sink.top_level(CHANNEL)) == 1  # one card
    assert sum("Started by" in line for line in thread_texts(env)) == 1  # told once


async def test_a_redelivered_command_shows_the_same_confirmation(env: Env) -> None:
    people(env)
    dataset = env.sim.create_dataset("oilplant")
    _, first = await confirmation(env, f"train {dataset}", trigger_id="cmd.1")
    _, again = await confirmation(env, f"train {dataset}", trigger_id="cmd.1")
    _, other = await confirmation(env, f"train {dataset}", trigger_id="cmd.2")
    assert first == again and other != first
    await click(env, ACTION_START_TRAINING, first)
    await click(env, ACTION_START_TRAINING, again)
    assert starts(env) == 1


async def test_a_forged_or_foreign_confirmation_does_nothing(env: Env) -> None:
    people(env)
    dataset = env.sim.create_dataset("oilplant")
    _, token = await confirmation(env, f"train {dataset}")
    forged = await click(env, ACTION_START_TRAINING, token[:-4] + "AAAA")
    assert "expired" in forged["text"]
    foreign = await click(env, ACTION_START_TRAINING, token, user="U0BOB")
    assert "somebody else" in foreign["text"]
    assert starts(env) == 0


async def test_a_lost_start_answer_is_unknown_and_never_repeated(env: Env) -> None:
    people(env)
    dataset = env.sim.create_dataset("oilplant")
    _, token = await confirmation(env, f"train {dataset}")
    env.sim.add_fault(Fault(kind="lost", method="POST", path_prefix="/api/v1/training", count=1))
    answer = await click(env, ACTION_START_TRAINING, token)
    assert "Outcome unknown" in answer["text"] and "MathFi dashboard" in answer["text"]
    assert starts(env) == 1
    again = await click(env, ACTION_START_TRAINING, token)
    assert "unknown" in again["text"] and starts(env) == 1


async def test_a_guest_is_refused_on_the_record(env: Env) -> None:
    people(env, U0GUEST="guest")
    dataset = env.sim.create_dataset("oilplant")
    reply = await ask(env, f"train {dataset}", user="U0GUEST")
    assert "Guests cannot" in reply["text"] and button(reply, ACTION_START_TRAINING) is None
    (row,) = await env.service.store.recent_actions()
    assert (row.state, row.user_id, row.kind) == ("refused", "U0GUEST", "start")
    assert env.service.metrics.actions.labels(action="start", outcome="refused")._value.get() == 1
    assert starts(env) == 0


async def test_actions_off_refuses_with_the_reason(env: Env, tmp_path: Path) -> None:
    people(env)
    dataset = env.sim.create_dataset("oilplant")
    job = env.sim.start_training(dataset)
    async with service_with(env, tmp_path, actions="off") as off:
        reply = await ask(off, f"train {dataset}")
        assert "ACTIONS=off" in reply["text"]
        cancelled = await click(off, ACTION_CANCEL_JOB, job)
        assert "ACTIONS=off" in cancelled["text"]
    assert starts(env) == 0 and cancels(env) == 0


async def test_actions_off_offers_no_cancel_on_the_card_and_no_retrain_after_a_miss(
    env: Env, tmp_path: Path
) -> None:
    """Buttons that could only refuse are not shown; with acting on (the same steps in
    `env`'s own service) the card offers Cancel and the miss Retrain."""
    people(env)
    script = [
        payload("RUNNING", {"BSEV01": 0.70}),
        payload("NOT_COMPLETED", {"BSEV01": 0.768}, statuses={"BSEV01": "NOT_COMPLETED"}),
    ]
    for actions, channel in (("off", "C0OFF"), ("everyone", "C0ON")):
        async with service_with(env, tmp_path / actions, actions=actions) as bot:
            job = env.sim.script_job(script)
            await ask(bot, f"subscribe {job}", channel=channel)
            await bot.cycle()
            running = card(bot, channel)
            cancel = button({"blocks": running.blocks}, ACTION_CANCEL_JOB)  # before the edit
            assert "Mute" in str(running.blocks)  # the card's other buttons stay
            env.sim.advance(job)
            await bot.cycle(10.0)
            await send(bot)
            (final,) = [
                m for m in env.sink.replies(channel, running.ts) if "NOT_COMPLETED" in m.text
            ]
            offered = actions != "off"
            assert (cancel is not None) is offered
            assert (button({"blocks": final.blocks}, ACTION_RETRAIN) is not None) is offered


# --------------------------------------------------------------------- cancel
async def watched_running_job(env: Env) -> str:
    dataset = env.sim.create_dataset("oilplant")
    job = env.sim.start_training(dataset)
    await ask(env, f"subscribe {job}")
    await env.cycle()
    return job


async def test_the_card_cancel_cancels_once_and_the_card_shows_it_at_once(env: Env) -> None:
    people(env)
    job = await watched_running_job(env)
    cancel = button({"blocks": card(env).blocks}, ACTION_CANCEL_JOB)
    assert cancel is not None and cancel["value"] == job and "confirm" in cancel
    answer = await click(env, ACTION_CANCEL_JOB, job)
    assert "is cancelled" in answer["text"] and cancels(env) == 1
    second = await click(env, ACTION_CANCEL_JOB, job, user="U0BOB")  # somebody else, too late
    assert "Already done" in second["text"] and cancels(env) == 1

    await send(env)  # no poll: the store's snapshot says CANCELLED already
    assert "CANCELLED" in str(card(env).blocks[0])
    assert button({"blocks": card(env).blocks}, ACTION_CANCEL_JOB) is None
    assert sum("Cancelled by <@U0ALICE>" in line for line in thread_texts(env)) == 1


async def test_the_cancel_command_confirms_first(env: Env) -> None:
    people(env)
    job = await watched_running_job(env)
    reply, token = await confirmation(env, f"cancel {job}")
    assert job in reply["text"] and cancels(env) == 0
    answer = await click(env, ACTION_CONFIRM_CANCEL, token)
    assert "is cancelled" in answer["text"] and answer.get("replace_original") is True
    await click(env, ACTION_CONFIRM_CANCEL, token)
    assert cancels(env) == 1


async def test_cancelling_an_ended_job_says_so(env: Env) -> None:
    people(env)
    job = env.sim.script_job([payload("COMPLETED", {"BSEV01": 0.9})])
    reply = await ask(env, f"cancel {job}")
    assert "already ended (COMPLETED)" in reply["text"] and cancels(env) == 0
    stale_card = await click(env, ACTION_CANCEL_JOB, job)  # an old card's button
    assert "already ended" in stale_card["text"]


async def test_a_lost_cancel_answer_is_read_back(env: Env) -> None:
    people(env)
    job = await watched_running_job(env)
    env.sim.add_fault(Fault(kind="lost", method="PATCH", path_prefix="/api/v1/training", count=1))
    answer = await click(env, ACTION_CANCEL_JOB, job)
    assert "is cancelled" in answer["text"] and cancels(env) == 1


# --------------------------------------------------------------------- retrain
async def test_retrain_after_a_miss_proposes_the_advice_and_links_the_old_job(env: Env) -> None:
    people(env)
    dataset = env.sim.create_dataset("oilplant")
    old = env.sim.script_job(
        [
            payload("RUNNING", {"BSEV01": 0.70}),
            payload("NOT_COMPLETED", {"BSEV01": 0.768}, statuses={"BSEV01": "NOT_COMPLETED"}),
        ],
        training={"datasetKey": dataset, "scalingFactor": 23},
    )
    await ask(env, f"subscribe {old} --events failures")
    await env.cycle()
    env.sim.advance(old)
    await env.cycle(10.0)
    await send(env)
    final = [m for m in env.sink.replies(CHANNEL, card(env).ts) if "NOT_COMPLETED" in m.text]
    assert final and button({"blocks": final[0].blocks}, ACTION_RETRAIN) is not None

    proposal = await click(env, ACTION_RETRAIN, old)
    token = button(proposal, ACTION_START_TRAINING)
    assert token is not None and "0.75" in text_of(proposal) and "23" in text_of(proposal)
    assert starts(env) == 0
    await click(env, ACTION_START_TRAINING, str(token["value"]))
    new = await started_job(env)
    training = await env.service.mathfi.get_training(new)
    assert training.target_performance == pytest.approx(0.75)
    assert (training.dataset_key, training.scaling_factor) == (dataset, 23)
    sub = await env.service.store.get_subscription(channel_id=CHANNEL, job_key=new)
    assert sub is not None and sub.events == "failures"  # the channel's options kept
    await send(env)
    new_card = next(m for m in env.sink.top_level(CHANNEL) if new in str(m.blocks))
    assert f"retrain of `{old}`" in str(new_card.blocks)
    await click(env, ACTION_RETRAIN, old, user="U0BOB")  # a retrain is once per job
    assert starts(env) == 1


def test_an_at_risk_warning_offers_retrain_and_a_new_best_does_not() -> None:
    snapshot = Snapshot(job_key="J1", status="RUNNING", target_performance=0.85)
    warned = render_notification(
        [Event(kind=EventKind.AT_RISK, job_key="J1", target_performance=0.85, retry_at=0.75)],
        snapshot=snapshot,
    )
    assert button({"blocks": warned.blocks}, ACTION_RETRAIN) is not None
    news = render_notification(
        [Event(kind=EventKind.NEW_BEST, job_key="J1", performance=0.8)], snapshot=snapshot
    )
    assert button({"blocks": news.blocks}, ACTION_RETRAIN) is None


# --------------------------------------------------------------------- datasets
async def test_datasets_are_paged_newest_first(env: Env) -> None:
    for day in range(1, 13):
        env.sim.create_dataset(f"set-{day:02d}", created_on=f"2025-10-{day:02d}T08:00:00Z")
    first = await ask(env, "datasets")
    text = text_of(first)
    assert "page 1 of 2" in text and "12 in all" in text
    assert text.index("set-12") < text.index("set-03") and "set-02" not in text
    second = await ask(env, "datasets 2")
    assert "set-02" in text_of(second) and "set-01" in text_of(second)
    assert "set-12" not in text_of(second)


# --------------------------------------------------------------------- refusals and stale clicks
async def test_a_guests_cancel_and_retrain_are_refused_and_told_in_the_jobs_thread(
    env: Env,
) -> None:
    people(env, U0GUEST="guest")
    job = await watched_running_job(env)
    reply = await ask(env, f"cancel {job}", user="U0GUEST")
    assert "Guests cannot" in reply["text"] and button(reply, ACTION_CONFIRM_CANCEL) is None
    retrain = await click(env, ACTION_RETRAIN, job, user="U0GUEST")
    assert "Guests cannot" in retrain["text"] and button(retrain, ACTION_START_TRAINING) is None
    await send(env)
    refused = [line for line in thread_texts(env) if "U0GUEST" in line]
    assert len(refused) == 2 and all("Guests cannot" in line for line in refused), refused
    rows = await env.service.store.recent_actions()
    assert sorted(r.kind for r in rows) == ["cancel", "retrain"]
    assert {r.state for r in rows} == {"refused"} and cancels(env) == 0 and starts(env) == 0


async def test_a_stale_or_foreign_cancel_confirmation_does_nothing(env: Env) -> None:
    people(env)
    job = await watched_running_job(env)
    _, token = await confirmation(env, f"cancel {job}")
    foreign = await click(env, ACTION_CONFIRM_CANCEL, token, user="U0BOB")
    assert foreign["text"] == ("⚠️ This confirmation was shown to somebody else; nothing was done.")
    env.clock.advance(15 * 60 + 1)  # the confirmation expired
    stale = await click(env, ACTION_CONFIRM_CANCEL, token)
    assert "This confirmation has expired" in stale["text"]
    assert cancels(env) == 0 and not await env.service.store.recent_actions()


async def test_retrain_of_a_job_that_reached_nothing_proposes_a_new_training(env: Env) -> None:
    people(env)
    dataset = env.sim.create_dataset("oilplant")
    job = env.sim.script_job(
        [payload("NOT_COMPLETED", {})], training={"datasetKey": dataset, "scalingFactor": 23}
    )
    reply = await click(env, ACTION_RETRAIN, job)
    assert reply["text"] == (
        f"⚠️ Job `{job}` reached no performance to retrain at (best none). Start a new "
        f"training with `/mathfi train {dataset} --target …` instead."
    )
    assert button(reply, ACTION_START_TRAINING) is None


async def test_a_retrain_mathfi_refuses_is_told_in_the_old_jobs_thread(env: Env) -> None:
    people(env)
    dataset = env.sim.create_dataset("oilplant")
    old = env.sim.script_job(
        [payload("NOT_COMPLETED", {"BSEV01": 0.768}, statuses={"BSEV01": "NOT_COMPLETED"})],
        training={"datasetKey": dataset, "scalingFactor": 23},
    )
    await ask(env, f"subscribe {old}")
    await env.cycle()
    proposal = await click(env, ACTION_RETRAIN, old)
    token = button(proposal, ACTION_START_TRAINING)
    assert token is not None
    env.sim.add_fault(Fault(kind="status", status=503, method="POST", path_prefix="/api/v1"))
    answer = await click(env, ACTION_START_TRAINING, str(token["value"]))
    assert "Outcome unknown" in answer["text"]  # a 5xx on a POST: MathFi may have acted
    await send(env)
    told = [line for line in thread_texts(env) if "U0ALICE" in line]
    assert len(told) == 1 and "retrain" in told[0], told


async def test_a_cancel_of_a_job_no_card_shows_or_two_channels_watch(env: Env) -> None:
    people(env)
    unwatched = env.sim.start_training(env.sim.create_dataset("other-plant"))
    answer = await click(env, ACTION_CANCEL_JOB, unwatched)  # e.g. from an old card
    assert "is cancelled" in answer["text"]
    watched = await watched_running_job(env)
    await ask(env, f"subscribe {watched}", channel="C0OTHER")
    await env.cycle()
    assert "is cancelled" in (await click(env, ACTION_CANCEL_JOB, watched))["text"]
    await send(env)
    for channel in (CHANNEL, "C0OTHER"):  # every channel watching it is told who
        lines = [m.text for m in env.sink.channels[channel] if m.thread_ts]
        assert sum("Cancelled by <@U0ALICE>" in line for line in lines) == 1, (channel, lines)
    assert cancels(env) == 2
