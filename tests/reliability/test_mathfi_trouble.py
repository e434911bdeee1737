"""MathFi trouble: a long outage (503, then connection refused), and token trouble.

The service must stay up, say so on /healthz, log the outage once (not once per poll),
and after recovery tell each channel exactly what changed while it was blind.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from simulator.faults import Fault
from simulator.mathfi import Simulator
from tests.reliability.harness import (
    CARD_EVENT,
    CHANNEL,
    NOTE_EVENT,
    PASSWORD,
    USERNAME,
    Harness,
    eventually,
    running,
)
from tests.reliability.timeline import climb, completion, events_of

pytestmark = pytest.mark.reliability

UNAVAILABLE = 'mathfi_poll_errors_total{kind="unavailable"}'


async def delivered(h: Harness, rows: int, *, channel: str = CHANNEL, timeout: float = 15) -> None:
    """Wait until the channel's outbox has `rows` rows, all sent, and Slack has them."""

    def done() -> bool:
        out = h.outbox(channel)
        posted = len(h.posted(channel, CARD_EVENT)) + len(h.posted(channel, NOTE_EVENT))
        return len(out) == rows and {r["state"] for r in out} == {"sent"} and posted == rows

    await eventually(done, timeout=timeout, what=f"{rows} rows delivered to {channel}", every=0.05)


async def step_and_deliver(h: Harness, key: str, rows: int) -> None:
    h.sim.advance(key)
    await delivered(h, rows)


async def test_long_outage_then_one_correct_jump(tmp_path: Path) -> None:
    timeline = climb(3, retire_at=())
    final = timeline.training["achievedPerformance"]
    async with running(tmp_path) as h:

        async def failed_polls(at_least: float) -> bool:
            return await h.metric(UNAVAILABLE) >= at_least

        async def degraded() -> None:
            code, body = await h.health()
            assert (code, body["status"], body["mathfi"]) == (200, "degraded", "unreachable")
            assert h.service.alive

        key = h.sim.script_job(timeline.payloads, training=timeline.training)
        await h.subscribe(key)
        await delivered(h, 1)  # the card, at RUNNING
        h.sim.add_fault(Fault(kind="status", status=503))  # every request, /api/login too
        h.sim.advance(key)
        await eventually(lambda: failed_polls(1), timeout=10, what="a poll answered 503")
        await degraded()
        await h.stop_simulator()  # connection refused from now on...
        h.sim.advance(key, 2)  # ... while the job completes behind the outage
        refused_from = await h.metric(UNAVAILABLE) + 1
        await eventually(lambda: failed_polls(refused_from + 1), timeout=15, what="refused polls")
        await degraded()
        h.sim.clear_faults()
        await h.start_simulator()
        await delivered(h, 2, timeout=20)
        code, body = await h.health()
        assert (code, body["status"], body["mathfi"]) == (200, "ok", "ok"), body
        assert events_of(h.outbox()[1]["payload"]) == completion(final)  # RUNNING -> COMPLETED
        h.assert_exactly_once(CHANNEL, [completion(final)])
        assert len(h.service.messages(containing="MathFi unreachable")) == 1
        assert len(h.service.messages(containing="MathFi reachable again")) == 1
        print(f"\nfailed polls during the outage: {await h.metric(UNAVAILABLE):g}")


async def test_one_second_tokens_for_a_whole_lifecycle(tmp_path: Path) -> None:
    timeline = climb(8, retire_at=(3,))
    async with running(tmp_path, sim=Simulator(seed=5, token_lifetime=1)) as h:
        key = h.sim.script_job(timeline.payloads, training=timeline.training)
        await h.subscribe(key)
        await delivered(h, 1)
        for step in range(1, timeline.steps + 1):
            await step_and_deliver(h, key, step + 1)
        h.assert_exactly_once(CHANNEL, timeline.expected)
        print(f"\nlogins with 1 s tokens: {h.sim.stats.logins}")
        assert h.sim.stats.logins >= 4, "the 1 s tokens were not renewed during the lifecycle"
        assert not h.service.messages(containing="polling failed")
        assert not h.service.messages(containing="MathFi unreachable")


async def test_login_failing_for_a_while_then_recovering(tmp_path: Path) -> None:
    timeline = climb(3, retire_at=())
    async with running(tmp_path) as h:
        key = h.sim.script_job(timeline.payloads, training=timeline.training)
        await h.subscribe(key)
        await delivered(h, 1)
        logins = h.sim.stats.requests[("POST", "/api/login")]
        h.sim.revoke_tokens()  # the next poll gets a 401 and must log in again...
        h.sim.add_fault(Fault(kind="status", status=503, path_prefix="/api/login", count=4))
        h.sim.advance(key)  # ... and the login answers 503 four times
        await delivered(h, 2, timeout=20)
        await step_and_deliver(h, key, 3)
        await step_and_deliver(h, key, 4)
        h.assert_exactly_once(CHANNEL, timeline.expected)
        assert h.sim.stats.requests[("POST", "/api/login")] - logins == 5  # 4 refused + 1
        assert len(h.service.messages(containing="MathFi unreachable")) == 1


async def test_wrong_credentials_are_named_and_logins_stay_bounded(tmp_path: Path) -> None:
    timeline = climb(3, retire_at=())
    channels = (CHANNEL, "C0TWO")
    async with running(tmp_path, MATHFI_LOGIN_COOLDOWN="1") as h:
        keys = [h.sim.script_job(timeline.payloads, training=timeline.training) for _ in channels]
        for key, channel in zip(keys, channels, strict=True):
            await h.subscribe(key, channel=channel)
            await delivered(h, 1, channel=channel)
        h.sim.users[USERNAME] = "the-password-was-changed"  # as if someone rotated it
        h.sim.revoke_tokens()
        for key in keys:
            h.sim.advance(key)
        named = "check MATHFI_USERNAME and MATHFI_PASSWORD"
        await eventually(
            lambda: len(h.service.messages(containing=named)) >= 1, timeout=10, what="the hint"
        )
        refused = await h.command(f"subscribe {keys[0]}", channel="C0OTHER")
        assert (
            "MATHFI_USERNAME and MATHFI_PASSWORD" in (await h.reply(refused.response_url))["text"]
        )
        window, attempts = 5.0, h.sim.stats.requests[("POST", "/api/login")]
        await asyncio.sleep(window)  # the measurement window itself
        tried = h.sim.stats.requests[("POST", "/api/login")] - attempts
        print(f"\nlogin attempts with a wrong password: {tried} in {window:g} s")
        # Polled every 0.2 s, two jobs would try 50 logins in 5 s; the backoff keeps it low.
        assert tried <= 10, f"{tried} login attempts in {window:g} s"
        # The client names the variables on each refused login (a 1 s cooldown doubling here,
        # 30 s by default); the poller logs the MathFi-wide refusal once, not once per job.
        poller_lines = [
            m for m in h.service.messages(containing=named) if "will keep retrying" in m
        ]
        assert len(poller_lines) == 1

        h.sim.users[USERNAME] = PASSWORD  # fixed: both jobs catch up, nothing lost
        for channel in channels:
            await delivered(h, 2, channel=channel, timeout=30)
            h.assert_exactly_once(channel, timeline.expected[:1])
        assert h.service.alive
