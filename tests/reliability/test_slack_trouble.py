"""Slack trouble: a 429 storm, 5xx bursts, lost answers, a hang, an archived channel.

Whatever Slack does, every notification arrives exactly once, in per-job order, and a
channel that can no longer be posted to is disabled with a reason `list` shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from simulator.slack import SlackFault, SlackSink
from tests.reliability.harness import (
    CHANNEL,
    NOTE_EVENT,
    Harness,
    eventually,
    running,
)
from tests.reliability.timeline import climb

pytestmark = pytest.mark.reliability

OTHER = "C0OTHER"
STORM = (1, 2, 3)  # Retry-After of three 429s in a row, growing


@dataclass
class CallTimes:
    """When each Slack call reached the sink (a watcher task notes new calls every 5 ms)."""

    sink: SlackSink
    seen: list[tuple[float, str, str | None]] = field(default_factory=list)

    def note(self) -> None:
        now = time.monotonic()
        for method, params in self.sink.calls[len(self.seen) :]:
            channel = params.get("channel")
            self.seen.append((now, method, channel if isinstance(channel, str) else None))


@contextlib.asynccontextmanager
async def watching(sink: SlackSink) -> AsyncIterator[CallTimes]:
    times = CallTimes(sink)

    async def watch() -> None:
        while True:
            times.note()
            await asyncio.sleep(0.005)

    task = asyncio.create_task(watch())
    try:
        yield times
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def all_sent(h: Harness, channel: str, rows: int, *, timeout: float) -> None:
    def done() -> bool:
        out = h.outbox(channel)
        return len(out) == rows and {r["state"] for r in out} == {"sent"}

    await eventually(done, timeout=timeout, what=f"{rows} rows sent to {channel}", every=0.05)


async def test_429_storm_5xx_bursts_and_lost_answers(tmp_path: Path) -> None:
    timeline = climb(5, retire_at=(2,))
    async with running(tmp_path) as h, watching(h.sink) as times:
        key = h.sim.script_job(timeline.payloads, training=timeline.training)
        for channel in (CHANNEL, OTHER):
            await h.subscribe(key, channel=channel)
            await all_sent(h, channel, 1, timeout=10)
        start = len(h.sink.calls)
        post = "chat.postMessage"
        for seconds in STORM:
            h.sink.add_fault(
                SlackFault(kind="ratelimit", method=post, count=1, retry_after=seconds)
            )
        h.sink.add_fault(SlackFault(kind="status", method=post, status=500, count=2))
        h.sink.add_fault(SlackFault(kind="status", method=post, status=503, count=1))
        h.sink.add_fault(SlackFault(kind="fail_after_commit", method=post, count=2))
        h.sink.add_fault(SlackFault(kind="status", method="chat.update", status=502, count=2))
        for step in range(1, timeline.steps + 1):
            h.sim.advance(key)
            await h.committed(key, step)
        for channel in (CHANNEL, OTHER):
            await all_sent(h, channel, timeline.steps + 1, timeout=45)
            h.assert_exactly_once(channel, timeline.expected)
        times.note()
        posts = [t for t in times.seen[start:] if t[1] == post]
        for (limited_at, _, limited), wait in zip(posts, STORM, strict=False):
            later = [t for t, m, c in times.seen if m == post and c == limited and t > limited_at]
            assert later, "no post after a 429"
            assert later[0] - limited_at >= wait - 0.05, f"Retry-After {wait} not honoured"
        assert await h.metric('mathfi_slack_ratelimited_total{method="chat.postMessage"}') == len(
            STORM
        )


async def test_a_post_that_hangs_past_the_client_timeout(tmp_path: Path) -> None:
    # 8.5 s: longer than the 5 s client timeout (SLACK_TIMEOUT) plus the sender's first
    # backoff (at most 2 s) plus a loop turn, so the outcome does not depend on the backoff.
    hang = 8.5
    timeline = climb(3, retire_at=())
    async with running(tmp_path, SLACK_TIMEOUT="5") as h:
        key = h.sim.script_job(timeline.payloads, training=timeline.training)
        await h.subscribe(key)
        await all_sent(h, CHANNEL, 1, timeout=10)
        h.sink.add_fault(SlackFault(kind="hang", method="chat.postMessage", count=1, seconds=hang))
        started = time.monotonic()
        h.sim.advance(key)
        await all_sent(h, CHANNEL, 2, timeout=30)
        # The hung call began within a second of the advance; let it end before counting.
        await asyncio.sleep(max(0.0, started + hang + 1.0 - time.monotonic()))
        h.sim.advance(key, 2)
        await all_sent(h, CHANNEL, 3, timeout=15)
        h.assert_exactly_once(CHANNEL, [timeline.expected[0], timeline.expected[2]])


async def test_channel_archived_mid_lifecycle(tmp_path: Path) -> None:
    archived = "C0ARCHIVED"
    timeline = climb(4, retire_at=())
    async with running(tmp_path) as h:
        key = h.sim.script_job(timeline.payloads, training=timeline.training)
        for channel in (CHANNEL, archived):
            await h.subscribe(key, channel=channel)
        h.sim.advance(key)
        for channel in (CHANNEL, archived):
            await all_sent(h, channel, 2, timeout=15)
        async with h.http.post(f"{h.sink.base_url}/_sink/archive/{archived}") as response:
            assert response.status == 200
        for step in range(2, timeline.steps + 1):
            h.sim.advance(key)
            await h.committed(key, step)
        await all_sent(h, CHANNEL, timeline.steps + 1, timeout=20)
        h.assert_exactly_once(CHANNEL, timeline.expected)

        def disabled() -> str | None:
            subs = h.rows("SELECT * FROM subscriptions WHERE channel_id = ?", (archived,))
            return subs[0]["disabled_reason"] if subs else None

        reason = await eventually(disabled, timeout=10, what="the subscription disabled")
        assert "archived" in reason
        rows = h.outbox(archived)
        assert [r["state"] for r in rows[:2]] == ["sent", "sent"]
        assert {r["state"] for r in rows[2:]} <= {"dead"}, rows  # nothing retried forever
        assert len(h.posted(archived, NOTE_EVENT)) == 1  # nothing after the archive
        listing = await h.command("list", channel=archived)
        assert listing.status == 200 and listing.body["response_type"] == "ephemeral"
        assert "archived" in listing.body["text"] and "subscribe" in listing.body["text"]
        healthy = await h.command("list", channel=CHANNEL)
        assert "not posting" not in healthy.body["text"]
        other = h.rows("SELECT * FROM subscriptions WHERE channel_id = ?", (CHANNEL,))
        assert other[0]["disabled_reason"] is None
