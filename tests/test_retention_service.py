"""Compaction seen from Slack (issue #16): a finished job, still watched, compacted a week
after it ended, shows the same card (its sparklines drawn from the archived points),
and `/mathfi status` and `/mathfi list` answer the same. Simulator, service and Slack sink
over real HTTP; the card is rendered at one clock reading before and after."""

from __future__ import annotations

from functools import partial
from typing import Any

from bot.metrics import Metrics
from bot.slack.budget import Budget
from bot.slack.delivery import disable_channel
from bot.slack.live_cards import LiveCards
from bot.slack.sender import SlackCaller
from store.compact import TAIL_POINTS
from tests.conftest import Env
from tests.scripts import ALGORITHMS, CHAMPION_TRAINING, payload
from tests.test_retention import WEEK

STEPS = 20  # more than the sparkline's 12 points, so the archive keeps only the tail
SCRIPT = [
    payload("PENDING"),
    *[
        payload("RUNNING", {name: 0.5 + 0.01 * n + 0.003 * i for i, name in enumerate(ALGORITHMS)})
        for n in range(STEPS)
    ],
    payload("COMPLETED", {name: 0.86 - 0.01 * i for i, name in enumerate(ALGORITHMS)}),
]


async def answer(env: Env, text: str) -> Any:
    """The command's answer: its ack, or, when the ack only says it is on its way
    ("⏳ Asking MathFi…", "Working on it"), what comes on the response_url."""
    status, ack, response_url = await env.command(text)
    assert status == 200
    waiting = not ack or str(ack.get("text", "")).startswith("⏳")
    return await env.reply(response_url) if waiting else ack


async def test_a_compacted_watched_job_shows_the_same_card_status_and_list(env: Env) -> None:
    key = env.sim.script_job(SCRIPT, training=CHAMPION_TRAINING)
    await answer(env, f"subscribe {key}")
    await env.cycle()
    for _ in range(1, len(SCRIPT)):
        env.sim.advance(key)
        await env.cycle(20.0)
        await env.cycle(1.0)
    store = env.service.store
    history = await store.history(key)
    assert len([p for p in history if p.algorithm == ALGORITHMS[0]]) > TAIL_POINTS
    cards = LiveCards(
        store,
        SlackCaller(env.service.slack, metrics=Metrics(), budget=Budget(clock=env.clock)),
        metrics=Metrics(),
        pace=1.0,
        clock=env.clock,
        disable=partial(disable_channel, store),
    )

    async def answers() -> tuple[Any, ...]:
        return (
            await cards.message("C0TEST", key),
            await answer(env, f"status {key}"),
            await answer(env, "list"),
        )

    before = await answers()
    assert "COMPLETED" in before[0].text and "COMPLETED" in str(before[1])
    assert key in str(before[2])
    compacted = await store.compact_jobs(after=WEEK, now=env.clock() + WEEK + 1)
    assert compacted.count == 1
    assert len(await store.history(key)) == len(ALGORITHMS) * TAIL_POINTS
    assert await answers() == before
