"""Crash safety: SIGKILL at random moments, and a database locked by another process.

Issue 3's property: whatever moment the process dies at, the outbox ends up holding
exactly the events the script implies (none missing, none twice) and Slack holds each
notification exactly once, in order.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from simulator.slack import SlackFault
from tests.reliability.harness import (
    CARD_EVENT,
    CHANNEL,
    NOTE_EVENT,
    Harness,
    eventually,
    running,
)
from tests.reliability.timeline import climb

pytestmark = pytest.mark.reliability

SEED = 20240531
QUICK_STEPS, LONG_STEPS = 10, 31


@pytest.fixture
def kill_steps(request: pytest.FixtureRequest) -> int:
    """Kill steps of the SIGKILL tests: 10 by default, 31 in the long run (`--long` or
    LONG_TESTS=1; `make test`, hence CI, runs it)."""
    return LONG_STEPS if request.config.getoption("--long") else QUICK_STEPS


def kill_phase(h: Harness, key: str, version: int, channels: Sequence[str]) -> str:
    """Where a kill landed, judged from the database and the sink right after it."""
    if h.version(key) < version:
        return "before the poll's commit"
    rows = [r for channel in channels for r in h.outbox(channel)]
    posted = sum(
        len(h.posted(channel, CARD_EVENT)) + len(h.posted(channel, NOTE_EVENT))
        for channel in channels
    )
    sent = sum(r["state"] == "sent" for r in rows)
    if any(r["state"] == "sending" for r in rows):
        return "during a Slack call (row in 'sending')"
    if posted > sent:
        return "after Slack's answer, before mark-as-sent"
    if sent < len(rows):
        return "committed, not yet posted"
    return "after delivery"


async def kill_cycles(
    h: Harness,
    key: str,
    *,
    steps: int,
    rng: random.Random,
    max_delay: float,
    channels: Sequence[str],
    during_delivery: bool,
    sigterm_every: int = 0,
) -> Counter[str]:
    """Per step: advance the script, wait a seeded random delay (counted from the advance,
    or from the moment a row of the step goes to 'sending'), SIGKILL (every
    `sigterm_every`-th step SIGTERM instead), restart, and wait until the step's snapshot
    is committed before the next step."""
    base = h.version(key)
    landed: Counter[str] = Counter()
    for step in range(1, steps + 1):
        h.sim.advance(key)
        if during_delivery:  # the dedupe key names the job version of its poll
            await row_sending(h, channels, tag=f":v{base + step}:")
        await asyncio.sleep(rng.uniform(0.0, max_delay))
        if sigterm_every and step % sigterm_every == 0:
            assert await h.service.terminate() == 0
            landed["SIGTERM (graceful stop)"] += 1
        else:
            await h.service.kill()
            landed[kill_phase(h, key, base + step, channels)] += 1
        await h.service.start(h.http)
        await h.committed(key, base + step, timeout=15)
        assert h.version(key) == base + step, "one payload was committed twice"
    return landed


async def row_sending(h: Harness, channels: Sequence[str], *, tag: str) -> None:
    def sending() -> bool:
        rows = [r for channel in channels for r in h.outbox(channel)]
        return any(r["state"] == "sending" and tag in r["dedupe_key"] for r in rows)

    await eventually(sending, timeout=15, what=f"a row {tag} being sent", every=0.005)


async def all_sent(h: Harness, channels: Sequence[str], *, rows: int, timeout: float) -> None:
    def done() -> bool:
        return all(
            len(out := h.outbox(channel)) == rows and {r["state"] for r in out} == {"sent"}
            for channel in channels
        )

    await eventually(done, timeout=timeout, what="every outbox row sent", every=0.1)


async def test_sigkill_at_random_moments_loses_and_doubles_nothing(
    tmp_path: Path, kill_steps: int
) -> None:
    timeline = climb(kill_steps)
    async with running(tmp_path) as h:
        key = h.sim.script_job(timeline.payloads, training=timeline.training)
        await h.subscribe(key)
        landed = await kill_cycles(
            h,
            key,
            steps=timeline.steps,
            rng=random.Random(SEED),
            max_delay=1.3,
            channels=[CHANNEL],
            during_delivery=False,
        )
        await all_sent(h, [CHANNEL], rows=timeline.steps + 1, timeout=30)
        h.assert_exactly_once(CHANNEL, timeline.expected)
        assert h.service.starts == timeline.steps + 1
        card = h.posted(CHANNEL, CARD_EVENT)[0]
        await eventually(lambda: "COMPLETED" in card.text, timeout=10, what="the card edited")
        assert await h.service.terminate() == 0  # and a graceful stop still works after all that
    print("\nkills landed:", dict(landed))
    # The kills must have hit work in progress, not only a process at rest.
    assert sum(landed.values()) == timeline.steps
    assert len(landed) >= 2 and landed["after delivery"] < timeline.steps, landed


async def test_sigkill_during_slow_delivery_loses_and_doubles_nothing(
    tmp_path: Path, kill_steps: int
) -> None:
    """Slack answers every post after 0.3 s, so most kills land in the middle of a call;
    every 8th stop is a SIGTERM instead, a graceful stop in the middle of delivery.
    SLACK_TIMEOUT=1: a row interrupted mid-call is looked up only once the call has settled
    (its start + twice the timeout, issue 19), 2 s here rather than 20 s per kill."""
    timeline = climb(kill_steps)
    channels = [CHANNEL, "C0SECOND"]
    async with running(tmp_path, SLACK_TIMEOUT="1") as h:
        key = h.sim.script_job(timeline.payloads, training=timeline.training)
        for channel in channels:
            await h.subscribe(key, channel=channel)
        h.sink.add_fault(SlackFault(kind="hang", method="chat.postMessage", seconds=0.3))
        landed = await kill_cycles(
            h,
            key,
            steps=timeline.steps,
            rng=random.Random(SEED + 1),
            max_delay=0.4,
            channels=channels,
            during_delivery=True,
            sigterm_every=8,
        )
        await all_sent(h, channels, rows=timeline.steps + 1, timeout=40)
        for channel in channels:
            h.assert_exactly_once(channel, timeline.expected)
    print("\nkills landed:", dict(landed))
    assert sum(landed.values()) == timeline.steps
    assert landed["SIGTERM (graceful stop)"] == timeline.steps // 8
    assert landed["during a Slack call (row in 'sending')"] >= 1, landed


async def test_database_locked_by_another_process(tmp_path: Path) -> None:
    """`BEGIN EXCLUSIVE` held for longer than the service's 5 s busy timeout."""
    timeline = climb(4, retire_at=())
    async with running(tmp_path) as h:
        key = h.sim.script_job(timeline.payloads, training=timeline.training)
        await h.subscribe(key)
        await all_sent(h, [CHANNEL], rows=1, timeout=10)
        h.sink.add_fault(SlackFault(kind="ratelimit", method="chat.postMessage", retry_after=2))
        h.sim.advance(key)  # queued: Slack says 429 for now
        await eventually(lambda: len(h.outbox()) == 2, timeout=10, what="a queued row")
        before = h.job(key)
        locker = sqlite3.connect(h.db_path, timeout=10, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            h.sim.advance(key)  # the poll that must be committed cannot be, for now
            await eventually(
                lambda: h.service.messages(containing="database is locked"),
                timeout=15,
                what="the lock reported in the log",
            )
            assert h.job(key) == before, "the last good state changed under the lock"
            assert h.service.alive
        finally:
            locker.rollback()
            locker.close()
        h.sink.clear_faults()
        await h.committed(key, before["version"] + 1, timeout=15)
        h.sim.advance(key, 2)
        await all_sent(h, [CHANNEL], rows=4, timeout=20)
        # 1 (queued behind the 429s), 2 (committed once the lock is gone), then 2 -> 4 in
        # one poll: the completion, whose champion replaces the new best.
        expected = [timeline.expected[0], timeline.expected[1], timeline.expected[3]]
        h.assert_exactly_once(CHANNEL, expected)
        # Whichever loop hit the lock first reported it (the poller's commit or the
        # sender's mark-as-sending), as an error, once.
        errors = [r for r in h.service.records() if "database is locked" in str(r["message"])]
        assert [r["level"] for r in errors] == ["ERROR"], errors
        if errors[0]["logger"] == "bot.engine.poller":
            assert h.service.messages(containing="database writable again")
        print("\nthe lock was reported by", errors[0]["logger"])


async def test_commands_are_acked_in_time_while_the_database_is_locked(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        locker = sqlite3.connect(h.db_path, timeout=10, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            await asyncio.sleep(1.1)  # /healthz reuses a database probe's answer for 1 s
            probe = asyncio.create_task(h.health())  # its database probe waits on the lock
            await asyncio.sleep(0.2)
            started = asyncio.get_running_loop().time()
            answer = await h.command("help")
            took = asyncio.get_running_loop().time() - started
            code, body = await probe
            assert code == 503 and body["database"] in {"busy", "unavailable"}, body
        finally:
            locker.rollback()
            locker.close()
        assert answer.status == 200
        assert took < 3.0, f"`/mathfi help` was acked after {took:.1f} s"
