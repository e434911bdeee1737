"""Bad input: hostile slash-command text, malformed MathFi bodies, forged or replayed
signatures. None of it may crash the service, post to a channel or damage the database."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from simulator.faults import Fault
from tests.reliability.harness import (
    CHANNEL,
    Harness,
    eventually,
    running,
)
from tests.reliability.timeline import ALGORITHMS, climb, progress

pytestmark = pytest.mark.reliability

HOSTILE = "C0HOSTILE"
UNKNOWN_KEY = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
HOSTILE_TEXTS = [
    "subscribe " + "a" * 5000,
    "x" * 1999,
    "🦄" * 700,
    "subscribe 🦄💥-ñ-ß-中文-עברית",
    "subscribe '; DROP TABLE subscriptions; --",
    "unsubscribe all'); DELETE FROM outbox; --",
    "<!channel> <!here> <!everyone> <@U0ALICE> <#C0REL> <https://evil.example|click>",
    "status <!channel>",
    f"subscribe {UNKNOWN_KEY} --mention <!channel>",
    f"mute {UNKNOWN_KEY} 99999999d",
    "help\x00\x07\x1b[31m\r\n\x7f",
    "list \u202e\u200b\ufeff",
    "*bold* _it_ ~st~ `code` ```block``` &lt;!channel&gt; &amp;lt;",
    "\n\n\t ",
    "subscribe --events ' OR 1=1 -- --min-improvement NaN",
]
BROADCASTS = ("<!channel>", "<!here>", "<!everyone>")


def _texts(reply: Any) -> str:
    return str(reply.get("text", "")) + str(reply.get("blocks", ""))


async def test_hostile_command_text(tmp_path: Path) -> None:
    timeline = climb(3, retire_at=())
    async with running(tmp_path) as h:
        key = h.sim.script_job(timeline.payloads, training=timeline.training)
        await h.subscribe(key)  # a legitimate subscription elsewhere, which must survive
        tables = h.rows("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        for text in HOSTILE_TEXTS:
            answer = await h.command(text, channel=HOSTILE)
            assert answer.status == 200, (text, answer)
            assert isinstance(answer.body, dict) and answer.body["response_type"] == "ephemeral"
            replies = [answer.body]
            if "Asking MathFi" in answer.body["text"]:
                replies.append(await h.reply(answer.response_url))
            for reply in replies:
                assert reply.get("response_type", "ephemeral") == "ephemeral", (text, reply)
                assert not any(b in _texts(reply) for b in BROADCASTS), (text, reply)
        assert h.service.alive
        assert not h.sink.channels.get(HOSTILE), "something was posted to the channel"
        assert not [c for c in h.sink.calls if c[1].get("channel") == HOSTILE]
        assert h.rows("PRAGMA integrity_check") == [{"integrity_check": "ok"}]
        assert h.rows("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name") == (
            tables
        )
        subs = h.rows("SELECT channel_id, job_key, active FROM subscriptions")
        assert subs == [{"channel_id": CHANNEL, "job_key": key, "active": 1}]
        assert [r["kind"] for r in h.outbox(HOSTILE)] == []


def bad_bodies() -> list[Fault]:
    """One answer each, for the progress route of one job: every way a body can be wrong."""
    huge = [
        {"algorithm": f"A{i:05d}", "status": "RUNNING", "latestPerformance": 0.5}
        for i in range(3000)
    ]
    nan_job = {"algorithm": "BSEV01", "status": "RUNNING", "latestPerformance": float("nan")}
    return [
        Fault(kind="malformed"),
        Fault(kind="body", body={"status": 42, "jobs": "nope"}),
        Fault(kind="body", body={}),
        Fault(kind="body", body=[1, 2, 3]),
        Fault(kind="body", body={"status": "RUNNING", "jobs": [nan_job]}),
        Fault(kind="body", body={"status": "RUNNING", "jobs": [[0] * 100] * 1000}),
        Fault(kind="body", body={"status": "RUNNING", "jobs": huge}),
        Fault(kind="body", body={"status": "EXPLODED", "jobs": [{"algorithm": "BSEV01"}]}),
        Fault(kind="body", body=progress("EXPLODED", dict.fromkeys(ALGORITHMS, 0.1))),
        Fault(kind="body", body="null"),
    ]


def _consumed(h: Harness) -> bool:
    return not h.sim._faults.active()  # a read-only look at the simulator's fault book


async def test_malformed_mathfi_bodies_for_one_job(tmp_path: Path) -> None:
    faults = bad_bodies()
    good = climb(len(faults), retire_at=(3,))
    bad = climb(3, retire_at=())
    async with running(tmp_path) as h:
        good_key = h.sim.script_job(good.payloads, training=good.training)
        bad_key = h.sim.script_job(bad.payloads, training=bad.training)
        await h.subscribe(good_key)
        await h.subscribe(bad_key, channel="C0BAD")
        for step, fault in enumerate(faults, start=1):
            route = f"/api/v1/training/{bad_key}/progress"
            h.sim.add_fault(dataclasses.replace(fault, path_prefix=route, count=1))
            # Then one normal answer (a zero-latency marker), so the job's error backoff
            # resets between two bad bodies and the test stays quick.
            h.sim.add_fault(Fault(kind="latency", seconds=0.0, path_prefix=route, count=1))
            h.sim.advance(good_key)
            await eventually(lambda: _consumed(h), timeout=15, what=f"bad body {step} read")
            await h.committed(good_key, step)
        h.sim.advance(bad_key, bad.steps)  # and the bad job is still watched
        await eventually(lambda: h.job(bad_key)["terminal"], timeout=20, what="bad job finished")

        def good_done() -> bool:
            rows = h.outbox()
            return len(rows) == good.steps + 1 and {r["state"] for r in rows} == {"sent"}

        await eventually(good_done, timeout=30, what="the good job delivered", every=0.05)
        h.assert_exactly_once(CHANNEL, good.expected)
        assert h.service.alive
        assert not h.service.messages(containing="unexpected error polling")
        dead = [r for r in h.outbox("C0BAD") if r["state"] == "dead"]
        assert not dead, [(r["kind"], r["last_error"]) for r in dead]


async def test_forged_and_replayed_signatures_are_refused(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        forged = await h.command("help", secret="not-the-signing-secret")
        replayed = await h.command("help", timestamp=int(time.time()) - 301)
        from_future = await h.command("help", timestamp=int(time.time()) + 301)
        fine = await h.command("help")
        assert (forged.status, replayed.status, from_future.status) == (401, 401, 401)
        assert fine.status == 200
        async with h.http.post(f"{h.service.base_url}/slack/events", data=b"text=help") as r:
            assert r.status == 401  # no signature at all
        assert h.rows("SELECT count(*) AS n FROM subscriptions") == [{"n": 0}]
        assert not h.sink.channels
