"""Security (issue #11): each hole reproduced against `mathfi-bot run` as a process.

A careless or hostile channel member (silent re-subscribe, broadcast mentions, a burst of
subscribes past the limit, an unsubscribed channel still edited), a request captured on
the wire and sent again, and what the public listener and the database file expose. The
hostile MathFi answers (redirects, huge bodies, nesting) are in test_hostile_mathfi.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import stat
from pathlib import Path
from urllib.parse import urlencode

import pytest

from simulator.faults import Fault
from tests.conftest import sign
from tests.reliability.harness import (
    CARD_EVENT,
    CHANNEL,
    TEAM,
    Harness,
    eventually,
    running,
)
from tests.reliability.timeline import climb

pytestmark = pytest.mark.reliability

OTHER = "C0OTHER"
BOB, MALLORY = "U0BOB", "U0MALLORY"


def subscription(h: Harness, key: str, channel: str = CHANNEL) -> dict[str, object]:
    (row,) = h.rows(
        "SELECT * FROM subscriptions WHERE channel_id = ? AND job_key = ?", (channel, key)
    )
    return row


def thread(h: Harness, channel: str = CHANNEL) -> list[str]:
    """The texts of the replies in the channel's first card's thread."""
    card = h.posted(channel, CARD_EVENT)[0]
    return [m.text for m in h.sink.replies(channel, card.ts)]


def audit_lines(h: Harness) -> list[dict[str, object]]:
    return [r for r in h.service.records() if r.get("logger") == "bot.audit"]


async def test_resubscribe_keeps_the_mention_and_every_change_is_seen(tmp_path: Path) -> None:
    """Hole 3: a re-subscribe without options wiped `--mention` (on-call paging off), and
    nobody saw who changed what. Now the options stay, and each change is a line in the
    job's thread naming who, plus a `bot.audit` log line."""
    timeline = climb(2, retire_at=())
    async with running(tmp_path) as h:
        key = h.sim.script_job(timeline.payloads, training=timeline.training)
        await h.subscribe(key, options=f"--mention <@{BOB}> --events failures")
        await eventually(lambda: h.posted(CHANNEL, CARD_EVENT), timeout=10, what="the card")
        card = h.posted(CHANNEL, CARD_EVENT)[0]
        assert "watched in this channel by <@U0ALICE>" in json.dumps(card.blocks)

        again = await h.command(f"subscribe {key}", user=MALLORY)  # no options
        assert "already watches" in str((await h.reply(again.response_url))["text"])
        row = subscription(h, key)
        assert (row["mention"], row["events"]) == (f"<@{BOB}>", "failures")

        changed = await h.command(f"subscribe {key} --events all", user=MALLORY)
        await h.reply(changed.response_url)
        muted = await h.command(f"mute {key} 2h", user=MALLORY)
        assert "muted for 2h" in str(muted.body["text"])
        await eventually(lambda: len(thread(h)) >= 2, timeout=10, what="two lines in the thread")
        lines = thread(h)
        assert lines[0].startswith(f"🔧 <@{MALLORY}> changed this job's options: events")
        assert "`failures` → `all`" in lines[0], lines
        assert lines[1].startswith(f"🔧 <@{MALLORY}> muted this job for 2h"), lines
        assert not any(BOB in line for line in lines)  # the handle is not pinged again

        # Nothing of the re-subscribe without options reached the thread (nothing changed),
        # but every command is in the audit log.
        results = [(r["user"], r["result"]) for r in audit_lines(h)]
        assert results == [
            ("U0ALICE", f"subscribed to {key}"),
            (MALLORY, f"options of {key}: unchanged"),
            (MALLORY, f"options of {key}: events failures -> all"),
            (MALLORY, f"muted {key} for 7200 s"),
        ], results
        assert all(r["team"] == TEAM and r["channel"] == CHANNEL for r in audit_lines(h))


async def test_broadcast_mentions_are_refused(tmp_path: Path) -> None:
    """Hole 4: `--mention @channel` made the bot ping the whole channel for any member."""
    async with running(tmp_path) as h:
        key = h.sim.script_job(climb(1, retire_at=()).payloads)
        for handle in ("@channel", "<!here>", "@everyone"):
            answer = await h.command(f"subscribe {key} --mention {handle}")
            text = str(answer.body["text"]) if isinstance(answer.body, dict) else ""
            assert "ping everyone" in text, (handle, answer.body)
        assert h.rows("SELECT * FROM subscriptions") == []
        await asyncio.sleep(0.5)
        assert CHANNEL not in h.sink.channels


async def test_ten_concurrent_subscribes_with_a_limit_of_three(tmp_path: Path) -> None:
    """Hole 5: the limit was read before the MathFi call and the insert came after it:
    ten concurrent subscribes with a limit of 3 gave 10."""
    async with running(tmp_path, SUBSCRIPTION_LIMIT="3") as h:
        keys = [h.sim.script_job(climb(1, retire_at=()).payloads) for _ in range(10)]
        answers = await asyncio.gather(*(h.command(f"subscribe {k}") for k in keys))
        texts = [str((await h.reply(a.response_url))["text"]) for a in answers]
        assert sum("Now watching" in t for t in texts) == 3, texts
        assert sum("SUBSCRIPTION_LIMIT" in t for t in texts) == 7, texts
        active = h.rows("SELECT count(*) AS n FROM subscriptions WHERE active = 1")
        assert active == [{"n": 3}]


async def test_an_unsubscribed_channel_card_is_edited_once_then_left(tmp_path: Path) -> None:
    """Hole 6: a channel that unsubscribed kept getting its old card edited as the job
    moved. Now: one last edit that says so (no buttons), then nothing, while the channel
    that still watches keeps its card live; a re-subscribe brings the same card back."""
    timeline = climb(4, retire_at=())
    async with running(tmp_path) as h:
        key = h.sim.script_job(timeline.payloads, training=timeline.training)
        await h.subscribe(key, channel=CHANNEL)
        await h.subscribe(key, channel=OTHER)
        await eventually(
            lambda: h.posted(CHANNEL, CARD_EVENT) and h.posted(OTHER, CARD_EVENT),
            timeout=10,
            what="both cards",
        )
        gone = await h.command(f"unsubscribe {key}", channel=OTHER, user=MALLORY)
        assert "Stopped watching" in str(gone.body["text"])
        card = h.posted(OTHER, CARD_EVENT)[0]
        await eventually(lambda: "No longer watched" in card.text, timeout=10, what="last edit")
        assert f"<@{MALLORY}>" in card.text and '"actions"' not in json.dumps(card.blocks)
        await eventually(lambda: thread(h, OTHER), timeout=10, what="the unsubscribe line")
        assert thread(h, OTHER) == [f"🔕 <@{MALLORY}> stopped watching this job in this channel"]
        edits_after_unsubscribe = card.edits

        live = h.posted(CHANNEL, CARD_EVENT)[0]
        before, version = live.edits, h.version(key)
        for step in range(1, 4):
            h.sim.advance(key)
            await h.committed(key, version + step, timeout=10)
        await eventually(lambda: live.edits >= before + 1, timeout=10, what="live card edits")
        await asyncio.sleep(1.0)  # time for any stray edit of the old card
        assert card.edits == edits_after_unsubscribe, "the unsubscribed card was edited"
        assert len(thread(h, OTHER)) == 1  # and its thread got nothing of the job

        await h.subscribe(key, channel=OTHER)  # back: the same card, live again
        await eventually(lambda: "No longer watched" not in card.text, timeout=10, what="revive")
        assert '"actions"' in json.dumps(card.blocks)
        assert len(h.posted(OTHER, CARD_EVENT)) == 1


async def test_the_unreachable_alert_names_the_trouble_not_the_host(tmp_path: Path) -> None:
    """Hole 7: the "unreachable" alert posted the raw connection error into the channel
    (host names, ports, addresses). Now it says what kind of trouble; the log has the rest."""
    timeline = climb(2, retire_at=())
    async with running(tmp_path, UNREACHABLE_AFTER="1") as h:
        key = h.sim.script_job(timeline.payloads, training=timeline.training)
        await h.subscribe(key)
        await eventually(lambda: h.posted(CHANNEL, CARD_EVENT), timeout=10, what="the card")
        h.sim.add_fault(Fault(kind="status", status=503, path_prefix=f"/api/v1/training/{key}"))
        await eventually(
            lambda: any("cannot reach" in line for line in thread(h)),
            timeout=20,
            what="the unreachable alert",
        )
        (alert,) = [line for line in thread(h) if "cannot reach" in line]
        assert "HTTP 503" in alert
        port = h.sim_url.rsplit(":", 1)[-1]
        for detail in ("127.0.0.1", "localhost", port, "http", "/api/v1/training"):
            assert detail not in alert, alert
        logged = " ".join(str(r.get("message")) for r in h.service.records())
        assert f"/api/v1/training/{key}/progress" in logged  # the details stay in the log


async def test_a_replayed_unsubscribe_all_is_refused(tmp_path: Path) -> None:
    """Hole 9: a captured signed request was accepted again within Slack's 5 minutes (a
    replayed `unsubscribe all` ran twice)."""
    async with running(tmp_path) as h:
        key = h.sim.script_job(climb(1, retire_at=()).payloads)
        await h.subscribe(key)
        form = {
            "command": "/mathfi",
            "text": "unsubscribe all",
            "team_id": TEAM,
            "channel_id": CHANNEL,
            "user_id": "U0ALICE",
            "response_url": h.sink.new_response_url(),
            "trigger_id": "1.2.3",
            "api_app_id": "A0REL",
        }
        body = urlencode(form)
        headers = sign(body, secret=h.signing_secret)  # captured once, sent twice
        url = f"{h.service.base_url}/slack/events"
        async with h.http.post(url, data=body.encode(), headers=headers) as first:
            assert first.status == 200, await first.text()
        assert subscription(h, key)["active"] == 0
        await h.subscribe(key)  # the channel watches again
        async with h.http.post(url, data=body.encode(), headers=headers) as replay:
            assert replay.status == 401, await replay.text()
        assert subscription(h, key)["active"] == 1
        assert h.service.messages(containing="refused a replayed Slack request")


async def test_metrics_off_the_public_listener_and_an_owner_only_database(
    tmp_path: Path,
) -> None:
    """Hole 10: /metrics was served next to /slack/events, and the database file was
    created world-readable (0644)."""
    async with running(tmp_path, METRICS_PORT="0") as h:
        async with h.http.get(f"{h.service.base_url}/metrics") as public:
            assert public.status == 404
        found = await eventually(
            lambda: [
                m
                for line in h.service.lines()
                if (m := re.search(r"serving metrics on http://127\.0\.0\.1:(\d+)/metrics", line))
            ],
            timeout=10,
            what="the metrics listener's line",
        )
        port = int(found[-1].group(1))
        assert port != h.service.port
        async with h.http.get(f"http://127.0.0.1:{port}/metrics") as private:
            assert private.status == 200
            assert "mathfi_polls_total" in await private.text()
        async with h.http.get(f"http://127.0.0.1:{port}/healthz") as other:
            assert other.status == 404  # the metrics listener serves /metrics alone
        code, _ = await h.health()
        assert code in (200, 503)  # /healthz stays on the main listener
        mode = stat.S_IMODE(h.db_path.stat().st_mode)
        assert mode == 0o600, oct(mode)
