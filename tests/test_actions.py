"""The action runner (bot/slack/actions.py) against the real simulator, a real AsyncStore
and the permission check over the local Slack sink: exactly once, refused, unknown, on the
record."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import parse_actions
from bot.mathfi.client import MathFiClient
from bot.slack.actions import ActionKind, ActionRunner, Actor, Result, StartParameters
from bot.slack.permissions import PermissionCheck, Verdict
from simulator import Fault, Simulator, start_in_background
from simulator.slack import SlackSink
from simulator.slack_directory import UserKind
from store import AsyncStore
from tests.directory_sink import calls, client_of, serve_directory

START = ("POST", "/api/v1/training/datasets/{key}")
CANCEL = ("PATCH", "/api/v1/training/{key}/cancel")
ALICE = Actor(team_id="T1", channel_id="C1", user_id="UALICE")
BOB = Actor(team_id="T1", channel_id="C1", user_id="UBOB")
GUEST_ACTOR = Actor(team_id="T1", channel_id="C1", user_id="UGUEST")


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    sim: Simulator
    clock: ManualClock
    store: AsyncStore
    slack: SlackSink
    runner: ActionRunner
    mathfi: MathFiClient

    def starts(self) -> int:
        return self.sim.stats.requests[START]

    def cancels(self) -> int:
        return self.sim.stats.requests[CANCEL]

    def runner_with(self, setting: str) -> ActionRunner:
        check = PermissionCheck(parse_actions(setting), client_of(self.slack))
        return ActionRunner(self.store, self.mathfi, check)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = ManualClock()
    sim = Simulator(seed=3, clock=clock)
    sim_runner, sim_url = await start_in_background(sim)
    store = await AsyncStore.open(tmp_path / "bot.db", clock=lambda: 1000.0)
    mathfi = MathFiClient(
        sim_url, username="demo@mathfi.ai", password=SecretStr("demo-password"),
        backoff_base=0.01, timeout=2.0,
    )  # fmt: skip
    try:
        users: dict[str, UserKind] = {"UALICE": "member", "UBOB": "member", "UGUEST": "guest"}
        async with serve_directory(users) as slack:
            check = PermissionCheck(parse_actions("everyone"), client_of(slack))
            runner = ActionRunner(store, mathfi, check)
            yield World(sim, clock, store, slack, runner, mathfi)
    finally:
        await mathfi.close()
        await store.close()
        await sim_runner.cleanup()


def params(dataset: str, **overrides: object) -> StartParameters:
    values: dict[str, object] = {"dataset_key": dataset, "target": 0.85, "scaling_factor": 19}
    values.update(overrides)
    return StartParameters.model_validate(values)


async def test_a_double_click_starts_one_training(world: World) -> None:
    dataset = world.sim.create_dataset("ready")
    first = await world.runner.start(key="tok-1", actor=ALICE, params=params(dataset))
    assert first.result is Result.DONE and first.kind is ActionKind.START
    assert first.status == "PENDING" and first.job_key is not None
    assert (first.action.state, first.action.result_job_key) == ("done", first.job_key)
    again = await world.runner.start(key="tok-1", actor=ALICE, params=params(dataset))
    assert again.result is Result.DUPLICATE and again.action == first.action
    assert again.job_key == first.job_key
    assert world.starts() == 1
    stored = StartParameters.model_validate_json(first.action.parameters)
    assert stored == params(dataset)


async def test_concurrent_redeliveries_start_one_training(world: World) -> None:
    dataset = world.sim.create_dataset("ready")
    outcomes = await asyncio.gather(
        *(world.runner.start(key="tok-1", actor=ALICE, params=params(dataset)) for _ in range(5))
    )
    assert sorted(o.result for o in outcomes) == [Result.DONE] + [Result.DUPLICATE] * 4
    assert world.starts() == 1
    assert len(await world.store.recent_actions()) == 1


async def test_a_lost_answer_is_unknown_and_a_second_click_does_not_call_mathfi(
    world: World,
) -> None:
    dataset = world.sim.create_dataset("ready")
    world.sim.add_fault(Fault("lost", method="POST", path_prefix="/api/v1/training/", count=1))
    lost = await world.runner.start(key="tok-1", actor=ALICE, params=params(dataset))
    assert lost.result is Result.UNKNOWN and lost.job_key is None
    assert "did not say whether the training started" in lost.reason
    assert dataset in lost.reason and "MathFi dashboard" in lost.reason
    assert (
        lost.action.state == "unknown" and lost.action.answer == "outcome unknown: outcome unknown"
    )
    again = await world.runner.start(key="tok-1", actor=ALICE, params=params(dataset))
    assert again.result is Result.DUPLICATE and again.action.state == "unknown"
    assert world.starts() == 1  # MathFi did start one (the answer was lost), and only one


async def test_a_guest_is_refused_and_nothing_is_recorded_as_done(world: World) -> None:
    dataset = world.sim.create_dataset("ready")
    refused = await world.runner.start(key="tok-1", actor=GUEST_ACTOR, params=params(dataset))
    assert refused.result is Result.REFUSED and refused.verdict is Verdict.GUEST
    assert refused.reason.startswith("Guests cannot")
    assert world.starts() == 0
    rows = await world.store.recent_actions()
    assert [(row.state, row.user_id, row.answer) for row in rows] == [
        ("refused", "UGUEST", refused.reason)
    ]
    again = await world.runner.start(key="tok-1", actor=GUEST_ACTOR, params=params(dataset))
    assert again.result is Result.REFUSED and len(await world.store.recent_actions()) == 1
    # the refusal holds nothing: a member using the same confirmation starts the training
    allowed = await world.runner.start(key="tok-1", actor=ALICE, params=params(dataset))
    assert allowed.result is Result.DONE and world.starts() == 1


async def test_actions_off_refuses_members_too(world: World) -> None:
    dataset = world.sim.create_dataset("ready")
    outcome = await world.runner_with("off").start(key="k", actor=ALICE, params=params(dataset))
    assert outcome.result is Result.REFUSED and outcome.verdict is Verdict.OFF
    assert world.starts() == 0 and calls(world.slack) == 0


@pytest.mark.parametrize("status", ["PENDING", "PROCESSING", "FAILED"])
async def test_a_dataset_that_is_not_ready_fails_and_nothing_started(
    world: World, status: str
) -> None:
    dataset = world.sim.create_dataset("waiting", status=status)
    outcome = await world.runner.start(key="k", actor=ALICE, params=params(dataset))
    assert outcome.result is Result.FAILED and "HTTP 409" in outcome.reason
    assert outcome.action.state == "failed" and outcome.action.answer == "failed: HTTP 409"
    world.sim.create_dataset("ready")
    assert (await world.runner.start(key="k", actor=ALICE, params=params(dataset))).result is (
        Result.DUPLICATE
    )


async def test_an_unreachable_mathfi_fails_and_a_new_confirmation_may_try_again(
    world: World,
) -> None:
    dataset = world.sim.create_dataset("ready")
    world.sim.add_fault(Fault("status", status=429, path_prefix="/api/v1/training/", count=5))
    outcome = await world.runner.start(key="k1", actor=ALICE, params=params(dataset))
    assert outcome.result is Result.FAILED and "cannot be reached" in outcome.reason
    retry = await world.runner.start(key="k2", actor=ALICE, params=params(dataset))
    assert retry.result is Result.DONE


async def test_cancel_is_once_per_job_whoever_clicks(world: World) -> None:
    job = world.sim.start_training(world.sim.create_dataset("ready"))
    first = await world.runner.cancel(key="T1:UALICE:1.1", actor=ALICE, job_key=job)
    assert (first.result, first.status, first.job_key) == (Result.DONE, "CANCELLED", job)
    second = await world.runner.cancel(key="T1:UBOB:1.2", actor=BOB, job_key=job)
    assert second.result is Result.DUPLICATE and second.action.user_id == "UALICE"
    assert second.job_key == job and world.cancels() == 1


@pytest.mark.parametrize("fate", ["COMPLETED", "FAILED", "TIMED_OUT"])
async def test_cancel_of_a_finished_job_is_a_clear_answer(world: World, fate: str) -> None:
    job = world.sim.start_training(world.sim.create_dataset("ready"), fate=fate)
    world.clock.now += 1200
    outcome = await world.runner.cancel(key="k", actor=ALICE, job_key=job)
    assert outcome.result is Result.FAILED and outcome.status == fate
    assert outcome.reason == f"Job {job} has already ended ({fate}): there is nothing to cancel."
    assert outcome.action.answer == f"already ended ({fate})"
    assert world.cancels() == 1


async def test_cancel_of_an_unknown_job_fails(world: World) -> None:
    key = "00000000-0000-4000-8000-000000000000"
    outcome = await world.runner.cancel(key="k", actor=ALICE, job_key=key)
    assert (
        outcome.result is Result.FAILED and outcome.reason == f"MathFi has no training job {key}."
    )


async def test_a_lost_cancel_answer_is_read_back(world: World) -> None:
    job = world.sim.start_training(world.sim.create_dataset("ready"))
    world.sim.add_fault(Fault("lost", method="PATCH", path_prefix="/api/v1/training/", count=1))
    outcome = await world.runner.cancel(key="k", actor=ALICE, job_key=job)
    assert (outcome.result, outcome.status) == (Result.DONE, "CANCELLED")
    assert outcome.action.answer == "CANCELLED (read back)" and world.cancels() == 1


async def test_a_lost_cancel_answer_on_a_job_still_running_is_unknown(world: World) -> None:
    job = world.sim.start_training(world.sim.create_dataset("ready"))
    world.sim.add_fault(Fault("drop", method="PATCH", path_prefix="/api/v1/training/", count=1))
    outcome = await world.runner.cancel(key="k", actor=ALICE, job_key=job)
    assert outcome.result is Result.UNKNOWN and outcome.status == "PENDING"
    assert "It is PENDING now. Check it on the MathFi dashboard." in outcome.reason
    # Bob checks and asks again: a new, confirmed request (not a retry of Alice's), which
    # MathFi carries out; a third click finds Bob's done cancel.
    again = await world.runner.cancel(key="k2", actor=BOB, job_key=job)
    assert again.result is Result.DONE and again.status == "CANCELLED"
    assert world.cancels() == 2
    third = await world.runner.cancel(key="k3", actor=ALICE, job_key=job)
    assert third.result is Result.DUPLICATE and third.action.id == again.action.id
    assert world.cancels() == 2


async def test_retrain_is_once_per_old_job(world: World) -> None:
    dataset = world.sim.create_dataset("ready")
    old = world.sim.start_training(dataset, fate="NOT_COMPLETED")
    retrain = params(dataset, target=0.75, retrain_of=old)
    first = await world.runner.start(key="tok-a", actor=ALICE, params=retrain)
    assert first.result is Result.DONE and first.kind is ActionKind.RETRAIN
    assert first.action.subject_key == old
    second = await world.runner.start(key="tok-b", actor=BOB, params=retrain)
    assert second.result is Result.DUPLICATE and second.job_key == first.job_key
    assert world.starts() == 1
