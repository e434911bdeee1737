"""Isolation: a channel sees and changes only its own subscriptions, another Slack team is
refused, and no secret reaches a log line, a Slack message or the database file."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from simulator.mathfi import Simulator
from simulator.slack import SlackFault, SlackSink
from tests.reliability.harness import (
    CHANNEL,
    NOTE_EVENT,
    TEAM,
    USERNAME,
    Harness,
    eventually,
    running,
)
from tests.reliability.timeline import climb

pytestmark = pytest.mark.reliability

A, B = "C0AAA", "C0BBB"


def active(h: Harness, channel: str) -> list[str]:
    rows = h.rows(
        "SELECT job_key FROM subscriptions WHERE channel_id = ? AND active = 1 ORDER BY id",
        (channel,),
    )
    return [r["job_key"] for r in rows]


async def test_a_channel_sees_and_changes_only_its_own(tmp_path: Path) -> None:
    timeline = climb(2, retire_at=())
    async with running(tmp_path) as h:
        a1, a2, b1 = (
            h.sim.script_job(timeline.payloads, training=timeline.training) for _ in "abc"
        )
        for key, channel in ((a1, A), (a2, A), (b1, B)):
            await h.subscribe(key, channel=channel)
        listing = (await h.command("list", channel=B)).body["text"]
        assert b1 in listing and a1 not in listing and a2 not in listing
        for text in (f"unsubscribe {a1}", f"mute {a1} 1h", f"unmute {a2}"):
            answer = await h.command(text, channel=B)
            assert "not watching" in answer.body["text"], (text, answer.body)
        done = await h.command("unsubscribe all", channel=B)
        assert "Stopped watching 1 job(s)" in done.body["text"]
        listing = (await h.command("list", channel=A)).body["text"]
        assert a1 in listing and a2 in listing and b1 not in listing
        assert active(h, A) == [a1, a2] and active(h, B) == []
        muted = h.rows("SELECT count(*) AS n FROM subscriptions WHERE muted_until IS NOT NULL")
        assert muted == [{"n": 0}]

        stranger = await h.command(f"subscribe {a1}", channel="C0EVIL", team="T0STRANGER")
        assert "another Slack workspace" in str(stranger.body), stranger
        for text in ("list", "unsubscribe all"):
            answer = await h.command(text, channel=A, team="T0STRANGER")
            assert "another Slack workspace" in str(answer.body), answer
        assert active(h, A) == [a1, a2] and active(h, "C0EVIL") == []
        assert not h.responses(stranger.response_url)
        assert "C0EVIL" not in h.sink.channels


def leaks(secret_values: dict[str, str], places: dict[str, bytes]) -> list[str]:
    return [
        f"{name} in {place}"
        for name, value in secret_values.items()
        for place, data in places.items()
        if value.encode() in data
    ]


def database_files(h: Harness) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(h.tmp.glob("bot.db*"))}


def slack_side(h: Harness) -> dict[str, bytes]:
    """Everything the sink received, except the Authorization header (which it never keeps)."""
    sink = h.sink
    return {
        "slack messages": repr(sink.channels).encode(),
        "slack ephemerals": repr(sink.ephemerals).encode(),
        "slack calls": repr(sink.calls).encode(),
        "slack responses": repr(sink.responses).encode(),
    }


async def test_secrets_reach_no_log_message_or_database(tmp_path: Path) -> None:
    password, signing = f"pw-{secrets.token_hex(12)}", f"sign-{secrets.token_hex(16)}"
    token = f"xoxb-{secrets.token_hex(16)}"
    sim = Simulator(seed=11, users={USERNAME: password})
    sink = SlackSink(token=token, team_id=TEAM)
    timeline = climb(4, retire_at=(2,))
    async with running(
        tmp_path,
        sim=sim,
        sink=sink,
        password=password,
        signing_secret=signing,
        LOG_LEVEL="DEBUG",
        MATHFI_LOGIN_COOLDOWN="0.5",
    ) as h:
        key = h.sim.script_job(timeline.payloads, training=timeline.training)
        await h.subscribe(key)
        await h.reply((await h.command(f"status {key}")).response_url)
        issued = set(h.sim._tokens)  # every MathFi token, read from the simulator's memory
        h.sim.revoke_tokens()  # a 401, then a fresh login
        h.sink.add_fault(SlackFault(kind="status", method="chat.postMessage", count=1))
        h.sim.advance(key)
        await eventually(lambda: h.outbox_ids(CHANNEL, NOTE_EVENT), timeout=15, what="a reply")
        h.sim.users[USERNAME] = "rotated"  # a refused login, logged
        issued |= set(h.sim._tokens)
        h.sim.revoke_tokens()
        h.sim.advance(key)
        await eventually(
            lambda: h.service.messages(containing="refused the login"), timeout=10, what="refusal"
        )
        h.sim.users[USERNAME] = password
        await h.command("list", secret="forged-secret")  # a bad signature, logged by bolt
        h.sim.advance(key, 2)
        await eventually(lambda: h.job(key)["terminal"], timeout=30, what="the job completed")
        before_stop = database_files(h)
        assert await h.service.terminate() == 0
        issued |= set(h.sim._tokens)
        assert len(issued) == h.sim.stats.logins >= 3
        known = {"MATHFI_PASSWORD": password, "SLACK_SIGNING_SECRET": signing}
        known |= {"SLACK_BOT_TOKEN": token}
        for i, value in enumerate(sorted(issued)):
            known |= {f"MathFi token {i}": value, f"MathFi token {i} tail": value[-20:]}
        places = {"the log": h.service.log_path.read_bytes(), **slack_side(h)}
        places |= {f"{name} (running)": data for name, data in before_stop.items()}
        places |= {f"{name} (stopped)": data for name, data in database_files(h).items()}
        # The search is only worth something if it looked at the debug log and at the WAL.
        assert any(r["level"] == "DEBUG" for r in h.service.records())
        assert {"bot.db (running)", "bot.db-wal (running)", "bot.db (stopped)"} <= places.keys()
        # ... and it finds what is meant to be there (the job key) in each kind of place.
        found = leaks({"key": key}, places)
        assert {"key in the log", "key in slack messages", "key in bot.db (stopped)"} <= set(found)
        assert not leaks(known, places)
