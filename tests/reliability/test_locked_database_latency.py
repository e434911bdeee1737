"""Issue 10 point 3: SQLite never blocks the event loop.

Another process holds `BEGIN EXCLUSIVE` on the service's database for 5 s while the test
hammers `/healthz` and signed `list`, `help` and `subscribe` commands: each answers within
100 ms (p99 over the window). On a loaded machine (`make soak` runs the suite beside a CPU
hog) the limit is 6 x the p99 of the same requests measured just before the lock, never
more than 500 ms: a loop that waits on the lock answers in 1-1.5 s, so the test still
fails when SQLite blocks the event loop, but not because another process took the core.
Once the lock goes, every notification queued meanwhile is
delivered exactly once, the subscribe made under the lock took effect, and every command
that acked "working on it" got its real answer.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from simulator.slack import SlackFault
from tests.reliability.harness import CHANNEL, CommandReply, Harness, eventually, running
from tests.reliability.timeline import climb

pytestmark = pytest.mark.reliability

LOCK_SECONDS = 5.0
P99_LIMIT = 0.100  # on a calm machine
P99_CEILING = 0.500  # on a loaded one: still half of what a blocked loop gives
BASELINE_SECONDS = 1.5
OTHER = "C0LOCKED"


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


async def hammer(
    request: Callable[[], Awaitable[Any]], *, until: float, gap: float
) -> tuple[list[float], list[Any]]:
    """Send `request` one after another until `until` (monotonic); each latency and answer."""
    took: list[float] = []
    answers: list[Any] = []
    while time.monotonic() < until:
        started = time.monotonic()
        answers.append(await request())
        took.append(time.monotonic() - started)
        await asyncio.sleep(gap)
    return took, answers


async def all_sent(h: Harness, channel: str, *, rows: int, timeout: float) -> None:
    def done() -> bool:
        out = h.outbox(channel)
        return len(out) == rows and {r["state"] for r in out} == {"sent"}

    await eventually(done, timeout=timeout, what=f"{rows} rows sent in {channel}", every=0.1)


async def test_healthz_and_command_acks_stay_fast_while_another_process_locks_the_database(
    tmp_path: Path,
) -> None:
    timeline = climb(4, retire_at=())
    async with running(tmp_path) as h:
        key = h.sim.script_job(timeline.payloads, training=timeline.training)
        other = h.sim.script_job(timeline.payloads, training=timeline.training)
        await h.subscribe(key)
        await all_sent(h, CHANNEL, rows=1, timeout=10)
        # A notification waits in the outbox (Slack says 429 for now) when the lock comes.
        h.sink.add_fault(SlackFault(kind="ratelimit", method="chat.postMessage", retry_after=2))
        h.sim.advance(key)
        await eventually(lambda: len(h.outbox()) == 2, timeout=10, what="a queued row")
        before = h.job(key)

        # The same requests before the lock: what this machine gives right now.
        calm_until = time.monotonic() + BASELINE_SECONDS
        calm = await asyncio.gather(
            hammer(h.health, until=calm_until, gap=0.01),
            hammer(lambda: h.command("list", ack_only=True), until=calm_until, gap=0.02),
            hammer(lambda: h.command("help", ack_only=True), until=calm_until, gap=0.02),
        )
        baseline = max(p99(took) for took, _ in calm)
        limit = min(P99_CEILING, max(P99_LIMIT, 6 * baseline))

        locker = sqlite3.connect(h.db_path, timeout=10, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            locked_at = time.monotonic()
            h.sink.clear_faults()  # Slack is fine again; the database is not
            h.sim.advance(key)  # a change the poller cannot commit until the lock goes
            until = locked_at + LOCK_SECONDS - 0.1

            async def subscribe() -> CommandReply:
                return await h.command(f"subscribe {other}", channel=OTHER)

            (
                (health_t, health),
                (list_t, lists),
                (help_t, helps),
                (sub_t, subs),
            ) = await asyncio.gather(
                hammer(h.health, until=until, gap=0.01),
                hammer(lambda: h.command("list", ack_only=True), until=until, gap=0.02),
                hammer(lambda: h.command("help", ack_only=True), until=until, gap=0.02),
                hammer(subscribe, until=until, gap=0.25),
            )
            assert time.monotonic() - locked_at < LOCK_SECONDS + 1.0, "the window overran"
            # still locked: nothing of the window has been written
            assert h.job(key) == before
            assert not h.rows("SELECT 1 FROM subscriptions WHERE channel_id = ?", (OTHER,))
        finally:
            locker.rollback()
            locker.close()

        figures = {
            "healthz": (len(health_t), p99(health_t)),
            "list": (len(list_t), p99(list_t)),
            "help": (len(help_t), p99(help_t)),
            "subscribe": (len(sub_t), p99(sub_t)),
        }
        print(f"\nbefore the lock p99 {baseline:.3f} s, limit {limit:.3f} s")
        print("under a 5 s lock (requests, p99 s):", figures)
        for name, (count, slowest) in figures.items():
            assert count >= 10, (name, count)
            assert slowest <= limit, f"{name}: p99 {slowest * 1000:.0f} ms > {limit * 1000:.0f}"
        # A probe's answer is reused for a second: after that, the lock shows.
        late = [(code, body["database"]) for code, body in health[len(health) // 2 :]]
        assert {state for _, state in late} <= {"busy", "unavailable"}, late
        assert all(code == 503 for code, _ in late), late
        for answer in [*lists, *helps, *subs]:
            assert answer.status == 200, answer

        # Every command is answered: in its ack, or (list, subscribe) on its response_url.
        for answer in lists:
            text = str(answer.body["text"])
            if "Working on it" in text:
                text = str((await h.reply(answer.response_url, timeout=40))["text"])
            assert "watches" in text, text
        for answer in subs:
            text = str((await h.reply(answer.response_url, timeout=40))["text"])
            assert "watch" in text and other in text, text
        (sub,) = h.rows("SELECT * FROM subscriptions WHERE channel_id = ?", (OTHER,))
        assert sub["active"] == 1 and sub["job_key"] == other

        # What was queued before and during the lock reaches Slack exactly once.
        await h.committed(key, before["version"] + 1, timeout=15)
        await all_sent(h, CHANNEL, rows=3, timeout=20)
        h.assert_exactly_once(CHANNEL, timeline.expected[:2])
        await all_sent(h, OTHER, rows=1, timeout=20)  # the new subscription's card
        assert h.service.alive
