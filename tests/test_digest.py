"""The daily digest (issue #14 point 3): `/mathfi digest daily HH:MM [--tz]` / `off`, the
loop that queues one digest per channel and local day (at the hour, in the channel's zone,
never twice, not at all on a quiet day), and the message the sender posts in the channel."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.core.digest import DailyDigest, DigestLine, WatchedJob, build_digest
from bot.core.forecast import Verdict
from bot.core.forecast_state import ForecastSummary
from bot.core.models import AlgorithmProgress, Snapshot
from bot.engine.digest import DigestConfig, DigestLoop, due_day
from bot.slack.command_text import CommandError, Digest, help_text, parse_command
from bot.slack.digest_render import render_digest
from bot.slack.render import Message
from store import DigestSetting
from tests.conftest import Env
from tests.scripts import CHAMPION_TRAINING, LIFECYCLE


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# ---- parsing --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("digest daily 09:00", Digest("09:00", "UTC")),
        ("digest daily 9:05", Digest("09:05", "UTC")),
        ("digest daily 23:59 --tz Europe/Paris", Digest("23:59", "Europe/Paris")),
        ("digest DAILY 07h30 --tz america/new_york", Digest("07:30", "America/New_York")),
        ("digest daily 00:00 --tz=utc", Digest("00:00", "UTC")),
        ("digest off", Digest(None)),
        ("digest OFF", Digest(None)),
    ],
)
def test_digest_parses(text: str, expected: Digest) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("digest", "Say `digest daily 09:00`"),
        ("digest weekly 09:00", "Say `digest daily 09:00`"),
        ("digest daily", "Missing the time of day"),
        ("digest daily 24:00", "`24:00` is not a time of day"),
        ("digest daily 9:60", "`9:60` is not a time of day"),
        ("digest daily 9am", "`9am` is not a time of day"),
        ("digest daily 09:00 10:00", "Unexpected argument `10:00`"),
        ("digest daily 09:00 --tz Mars/Olympus", "`Mars/Olympus` is not a time zone"),
        ("digest daily 09:00 --tz Europe/Pariss", "Did you mean `Europe/Paris`?"),
        ("digest daily 09:00 --tz ../../etc/passwd", "is not a time zone"),
        ("digest daily 09:00 --tz localtime", "`localtime` is not a time zone"),
        ("digest daily 09:00 --zone UTC", "Unknown option `--zone`. Options: --tz."),
        ("digest off --tz UTC", "`digest off` takes no options."),
    ],
)
def test_bad_digest_commands_are_explained(text: str, message: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(text)
    assert message in caught.value.message
    assert len(caught.value.message) <= 200


def test_help_shows_the_digest() -> None:
    assert "/mathfi digest daily &lt;HH:MM&gt; [--tz Europe/Paris] | off" in help_text()


# ---- when a digest is due --------------------------------------------------------------
def setting(daily_at: str = "09:00", tz: str = "UTC", last: str | None = None) -> DigestSetting:
    return DigestSetting("C1", "T1", daily_at, tz, last, None, True, "U1", 0.0)


@pytest.mark.parametrize(
    ("tz", "now", "last", "due"),
    [
        ("UTC", "2027-01-15 08:59:59", None, None),
        ("UTC", "2027-01-15 09:00:00", None, "2027-01-15"),
        ("UTC", "2027-01-15 23:59:00", None, "2027-01-15"),  # late (the bot was down): once
        ("UTC", "2027-01-15 10:00:00", "2027-01-15", None),  # already sent today
        ("UTC", "2027-01-16 09:00:00", "2027-01-15", "2027-01-16"),
        # Paris is UTC+1 in winter: 09:00 there is 08:00 UTC
        ("Europe/Paris", "2027-01-15 07:59:59", None, None),
        ("Europe/Paris", "2027-01-15 08:00:00", None, "2027-01-15"),
        # and UTC+2 in summer: 07:00 UTC
        ("Europe/Paris", "2027-07-15 06:59:00", None, None),
        ("Europe/Paris", "2027-07-15 07:00:00", None, "2027-07-15"),
        # New York (UTC-5 in winter): 09:00 there is 14:00 UTC, still the 15th
        ("America/New_York", "2027-01-15 13:59:00", None, None),
        ("America/New_York", "2027-01-15 14:00:00", "2027-01-14", "2027-01-15"),
        # Tokyo (UTC+9): 09:00 on the 16th there is 00:00 UTC on the 16th
        ("Asia/Tokyo", "2027-01-15 23:59:00", "2027-01-15", None),
        ("Asia/Tokyo", "2027-01-16 00:00:00", "2027-01-15", "2027-01-16"),
    ],
)
def test_due_day(tz: str, now: str, last: str | None, due: str | None) -> None:
    assert due_day(setting(tz=tz, last=last), utc(now)) == due


def test_a_digest_at_an_hour_the_clocks_skip_still_comes_that_day() -> None:
    # 2027-03-28: Paris jumps from 02:00 to 03:00; 02:30 never happens there
    at = setting(daily_at="02:30", tz="Europe/Paris")
    assert due_day(at, utc("2027-03-28 00:59:00")) is None  # 01:59 local
    assert due_day(at, utc("2027-03-28 01:00:00")) == "2027-03-28"  # 03:00 local


# ---- what a digest says ----------------------------------------------------------------
def algos(*values: tuple[str, float, str]) -> tuple[AlgorithmProgress, ...]:
    return tuple(
        AlgorithmProgress(algorithm=name, status=status, latest_performance=value)
        for name, value, status in values
    )


def job(key: str, status: str, changed_at: float, **fields: object) -> WatchedJob:
    forecast = fields.pop("forecast", None)
    assert forecast is None or isinstance(forecast, ForecastSummary)
    snapshot = Snapshot.model_validate(
        {"job_key": key, "status": status, "target_performance": 0.85, **fields}
    )
    return WatchedJob(snapshot=snapshot, changed_at=changed_at, forecast=forecast)


def shown(message: Message) -> str:
    """The text of the message's blocks (sections and contexts), one line each."""
    texts = []
    for block in message.blocks:
        if block.get("text"):
            texts.append(block["text"]["text"])
        texts += [element["text"] for element in block.get("elements", [])]
    return "\n".join(texts)


NOW = utc("2027-01-15 08:00:00")
SINCE = NOW - 86400


def test_a_digest_tells_finished_and_running_jobs() -> None:
    jobs = [
        job(
            "done",
            "COMPLETED",
            NOW - 3600,
            algorithms=algos(("BSEV02", 0.86, "COMPLETED"), ("BSEV01", 0.6, "NOT_COMPLETED")),
            model_key="model-1",
            achieved_performance=0.86,
        ),
        job("broke", "FAILED", NOW - 7200, algorithms=algos(("BSIX01", 0.71, "FAILED"))),
        job("short", "NOT_COMPLETED", NOW - 60, algorithms=algos(("BFIF01", 0.73, "STOPPED"))),
        job("old", "COMPLETED", SINCE - 1, algorithms=algos(("X", 0.9, "COMPLETED"))),
        job(
            "going",
            "RUNNING",
            NOW - 60,
            algorithms=algos(("A", 0.8, "RUNNING"), ("B", 0.7, "RUNNING"), ("C", 0.5, "FAILED")),
            forecast=ForecastSummary(at=NOW - 600, verdict=Verdict.ON_TRACK, eta=7800.0),
        ),
        job("waiting", "PENDING", NOW - 60),
    ]
    digest = build_digest("C1", jobs, day="2027-01-15", tz="UTC", since=SINCE, now=NOW)
    assert digest is not None
    assert [line.job_key for line in digest.finished] == ["done", "broke", "short"]
    assert [line.job_key for line in digest.running] == ["going", "waiting"]
    assert DailyDigest.read(digest.to_json()) == digest  # what the outbox keeps
    message = render_digest(digest)
    assert message.text == "📰 Daily digest · 2027-01-15: 3 finished, 2 still running"
    text = shown(message)
    lines = text.split("\n")
    assert lines[0] == "📰 *Daily digest* · 2027-01-15 (UTC)"
    done = next(line for line in lines if "`done`" in line)
    assert "champion `model-1`" in done and "best 0.8600 of target 0.85" in done
    broke = next(line for line in lines if "`broke`" in line)
    assert "FAILED" in broke and "best 0.7100 (BSIX01) of target 0.85" in broke
    short = next(line for line in lines if "`short`" in line)
    assert "NOT_COMPLETED" in short and "best 0.7300 (BFIF01) of target 0.85" in short
    going = next(line for line in lines if "`going`" in line)
    assert "2/3 algorithms running" in going and "ETA ≈ 2 h" in going
    assert "`old`" not in text  # finished before the last digest


def test_nothing_to_tell_is_no_digest() -> None:
    jobs = [job("old", "FAILED", SINCE - 1)]
    assert build_digest("C1", jobs, day="d", tz="UTC", since=SINCE, now=NOW) is None
    assert build_digest("C1", [], day="d", tz="UTC", since=SINCE, now=NOW) is None


def test_a_big_digest_stays_within_block_kit_limits() -> None:
    line = DigestLine(job_key="k" * 100, status="FAILED", best=0.5, best_algorithm="A" * 200)
    digest = DailyDigest(
        channel_id="C1",
        day="2027-01-15",
        tz="UTC",
        at=NOW,
        since=SINCE,
        set_by="U0ALICE",
        finished=(line,) * 40,
        running=(line.model_copy(update={"status": "RUNNING"}),) * 25,
    )
    message = render_digest(digest)
    assert len(message.blocks) <= 50 and len(message.text) <= 3000
    for block in message.blocks:
        assert len(str((block.get("text") or {}).get("text", ""))) <= 3000
    text = shown(message)
    assert "… and 30 more" in text and "… and 15 more" in text
    assert len(text.split("\n")) <= 30
    assert "<@U0ALICE>" in text


# ---- through the service ---------------------------------------------------------------
async def watch_to_the_end(env: Env, script: list[dict[str, object]], channel: str) -> str:
    key = env.sim.script_job(script, training=CHAMPION_TRAINING)
    _, _, url = await env.command(f"subscribe {key}", channel=channel)
    await env.reply(url)
    await env.cycle()
    for _ in range(1, len(script)):
        env.sim.advance(key)
        await env.cycle(10.0)
        await env.cycle(1.0)
    return key


def digests(env: Env, channel: str) -> list[str]:
    """The digests posted in `channel` (what their blocks say): channel-level messages."""
    return [
        str(m.blocks)
        for m in env.sink.channels.get(channel, [])
        if "Daily digest" in m.text and m.thread_ts is None
    ]


async def test_the_digest_comes_once_at_the_hour_in_the_channels_zone(env: Env) -> None:
    env.clock.now = utc("2027-01-15 07:00:00")  # 08:00 in Paris
    done = await watch_to_the_end(env, LIFECYCLE[1:], "C0TEST")
    running = await watch_to_the_end(env, LIFECYCLE[1:3], "C0TEST")
    _, ack, _ = await env.command("digest daily 09:00 --tz Europe/Paris")
    assert "daily digest at 09:00 (Europe/Paris), the first today" in ack["text"]
    loop = env.service.digests
    env.clock.now = utc("2027-01-15 07:59:59")
    assert await loop.round() == []
    env.clock.now = utc("2027-01-15 08:00:00")  # 09:00 in Paris
    assert await loop.round() == ["C0TEST"]
    assert await loop.round() == []
    await env.cycle(5.0)
    (digest,) = digests(env, "C0TEST")
    assert "2027-01-15 (Europe/Paris)" in digest
    assert f"`{done}`" in digest and CHAMPION_TRAINING["modelKey"] in digest
    assert f"`{running}`" in digest and "4/4 algorithms running" in digest
    # A restart: a new loop on the same store finds the day marked.
    restarted = DigestLoop(env.service.store, config=DigestConfig(), clock=env.clock)
    env.clock.now = utc("2027-01-15 15:00:00")
    assert await restarted.round() == []
    await env.cycle(5.0)
    assert len(digests(env, "C0TEST")) == 1
    # The next day: only what is new (the finished job was told yesterday).
    env.clock.now = utc("2027-01-16 08:00:00")
    assert await restarted.round() == ["C0TEST"]
    await env.cycle(5.0)
    _, second = digests(env, "C0TEST")
    assert f"`{done}`" not in second and f"`{running}`" in second
    rows = [r.dedupe_key for r in await env.service.store.rows_in_state("sent")]
    assert "digest:C0TEST:2027-01-15" in rows and "digest:C0TEST:2027-01-16" in rows


async def test_a_quiet_day_posts_nothing_and_counts_as_sent(env: Env) -> None:
    env.clock.now = utc("2027-01-15 08:00:00")
    _, ack, _ = await env.command("digest daily 10:00", channel="C0QUIET")
    assert "the first today" in ack["text"]
    env.clock.now = utc("2027-01-15 10:00:00")
    assert await env.service.digests.round() == ["C0QUIET"]
    await env.cycle(5.0)
    assert env.sink.channels.get("C0QUIET", []) == []
    stored = await env.service.store.get_digest(channel_id="C0QUIET")
    assert stored is not None and stored.last_sent_day == "2027-01-15"
    # Something happens later that day: it waits for tomorrow's digest.
    await watch_to_the_end(env, LIFECYCLE[1:], "C0QUIET")
    assert await env.service.digests.round() == []
    env.clock.now = utc("2027-01-16 10:00:00")
    assert await env.service.digests.round() == ["C0QUIET"]
    await env.cycle(5.0)
    assert len(digests(env, "C0QUIET")) == 1


async def test_set_after_the_hour_the_first_digest_is_tomorrow(env: Env) -> None:
    env.clock.now = utc("2027-01-15 12:00:00")
    await watch_to_the_end(env, LIFECYCLE[1:3], "C0TEST")
    _, ack, _ = await env.command("digest daily 09:00")
    assert "the first tomorrow" in ack["text"]
    assert await env.service.digests.round() == []
    env.clock.now = utc("2027-01-16 09:00:00")
    assert await env.service.digests.round() == ["C0TEST"]


async def test_off_stops_it_and_list_shows_the_setting(env: Env) -> None:
    env.clock.now = utc("2027-01-15 06:00:00")
    await watch_to_the_end(env, LIFECYCLE[1:3], "C0TEST")
    _, listing, _ = await env.command("list")
    assert "No daily digest" in listing["text"]
    await env.command("digest daily 7:30 --tz europe/london")
    _, listing, _ = await env.command("list")
    assert "Daily digest at 07:30 (Europe/London)" in listing["text"]
    _, ack, _ = await env.command("digest off")
    assert "Daily digest off (it was at 07:30, Europe/London)" in ack["text"]
    _, ack, _ = await env.command("digest off")
    assert "has no daily digest" in ack["text"]
    env.clock.now = utc("2027-01-15 08:00:00")
    assert await env.service.digests.round() == []


async def test_the_loop_runs_on_its_injected_clock_once_a_day(env: Env) -> None:
    env.clock.now = utc("2027-01-15 06:00:00")
    await watch_to_the_end(env, LIFECYCLE[1:3], "C0TEST")
    await env.command("digest daily 09:00")
    rounds = 0

    async def sleep(seconds: float) -> None:
        nonlocal rounds
        rounds += 1
        env.clock.advance(seconds)
        if rounds == 3 * 24 * 2:  # three days of half-hour rounds
            loop.stop()

    loop = DigestLoop(
        env.service.store, config=DigestConfig(every=1800.0), clock=env.clock, sleep=sleep
    )
    await loop.run()
    for _ in range(3):
        await env.cycle(5.0)
    assert [row.dedupe_key for row in await env.service.store.rows_in_state("sent")
            if row.kind == "digest"] == [
        "digest:C0TEST:2027-01-15", "digest:C0TEST:2027-01-16", "digest:C0TEST:2027-01-17"
    ]  # fmt: skip
