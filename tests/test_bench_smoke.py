"""Smoke runs of the benchmarks (each runs a second or two, prints ONE JSON object and
leaves no process behind), and the hot-path changes the benchmarks led to: the poller's
fixed grid, group commit, and history pruning. No timing thresholds: timings are noise."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from bench import ceiling, latency, poll_scale, slack_burst
from bench import forecast as forecast_bench
from bench import retention as retention_bench
from bench import signal as signal_bench
from bench.common import percentile, spread
from bot.engine.group_commit import GroupCommit
from store import AsyncStore, HistoryPoint, NewOutboxRow, Store, StoreUnavailable
from store.db import PRUNE_EVERY, PollRecord
from tests.conftest import Env
from tests.scripts import LIFECYCLE

Main = Callable[[Sequence[str]], None]


def run(capsys: pytest.CaptureFixture[str], main: Main, argv: Sequence[str]) -> Any:
    main(argv)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines
    assert multiprocessing.active_children() == []  # the servers' process is gone
    return json.loads(lines[0])


# --------------------------------------------------------------------- the benchmarks
def test_poll_scale_runs_every_phase(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--jobs", "20", "--interval", "0.5", "--duration", "1", "--warmup", "0.5"]
    result = run(capsys, poll_scale.main, [*argv, "--references", "0.5", "--tick", "0.5"])
    assert result["benchmark"] == "poll_scale"
    assert result["ideal_polls_per_s"] == 40.0
    for phase in ("steady", "saturated", "ceiling", "naive"):
        assert result[phase]["polls"] > 0, phase
    steady = result["steady"]
    assert steady["poll_errors"] == 0, steady
    assert steady["rss_end_mb"] > 0, steady
    assert steady["fetch_latency_ms"]["n"] > 0, steady
    assert steady["changed_poll_fraction"] > 0, steady
    assert set(result["ratios"]) == {
        "achieved_over_ideal",
        "ours_over_naive",
        "ours_over_ceiling",
        "ours_over_ceiling_cpu",
    }
    assert result["ratios"]["ours_over_ceiling_cpu"] > 0
    assert set(result["met"]) == {
        "achieved_over_ideal",
        "bot_core_fraction",
        "rss_end_mb",
        "ours_over_ceiling",
    }


def test_latency_measures_every_change(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--jobs", "2", "--interval", "0.5", "--changes", "1", "--settle", "0.5"]
    result = run(capsys, latency.main, argv)
    assert result["benchmark"] == "latency"
    assert result["changes"] == result["delivered"] == 2
    assert result["latency_s"]["p50"] > 0 and result["detect_s"]["n"] == 2


def test_slack_burst_tells_every_failure_once(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, slack_burst.main, ["--jobs", "4", "--channels", "2", "--gap", "1.5"])
    assert result["alert_latency_s"]["n"] == 4  # one FAILED reply per job
    assert (result["duplicates"], result["lost"], result["cards_final"]) == (0, 0, 4)
    assert result["physical_limit_s"] == 2.0


def test_ceiling_runs_alone(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, ceiling.main, ["--jobs", "5", "--concurrency", "4", "--duration", "0.3"])
    assert result["benchmark"] == "ceiling" and result["polls"] > 0
    assert result["latency_ms"]["n"] == result["polls"]


def test_forecast_bench_prints_a_line_per_job_then_summaries(
    capsys: pytest.CaptureFixture[str],
) -> None:
    forecast_bench.main(["--jobs", "12", "--seed", "3", "--cooldown", "600"])
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    jobs = [row for row in rows if row["record"] == "job"]
    summaries = {row["family"]: row for row in rows if row["record"] == "summary"}
    assert len(jobs) == 12 and rows[-1]["family"] == "all"
    overall = summaries["all"]
    assert overall["jobs"] == 12 and sum(overall["outcomes"].values()) == 12
    assert overall["cooldown_honoured"] is True
    assert set(overall["eta_mdape_pct"]) == {"0.25", "0.5", "0.75"}
    assert overall["warnings_per_job"]["max"] == max(len(job["warnings"]) for job in jobs)
    assert sum(s["jobs"] for f, s in summaries.items() if f != "all") == 12


def test_retention_bench_prunes_and_prints_a_line_per_day_then_a_verdict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--days", "4", "--jobs-per-day", "24", "--channels", "5", "--polls-per-job", "8"]
    retention_bench.main([*argv, "--outbox-retention", "1d", "--job-retention", "1h"])
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    days, (verdict,) = rows[:-1], rows[-1:]
    assert [day["day"] for day in days] == [1, 2, 3, 4]
    assert all(day["file_bytes"] >= day["database_bytes"] > 0 for day in days)
    last = days[-1]
    assert last["outbox_pruned"] > 0 and last["jobs_pruned"] > 0 and last["pages_vacuumed"] > 0
    assert last["rows"]["jobs"] < 4 * 24  # the unwatched ones were forgotten
    assert verdict["record"] == "verdict" and verdict["window_days"] == 3
    assert verdict["level"] is False  # a 3-day window is too short to call it level
    assert verdict["final_file_mb"] == round(last["file_bytes"] / 1e6, 1)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([], 50, None), ([3.0], 99, 3.0), ([1, 2, 3, 4], 50, 2), ([*range(1, 101)], 99, 99)],
)
def test_percentile_is_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


def test_spread_scales_and_counts() -> None:
    assert spread([0.001, 0.002], scale=1000) == {"p50": 1.0, "p99": 2.0, "max": 2.0, "n": 2}


# --------------------------------------------------------------------- the poller's grid
async def test_a_late_poll_does_not_push_the_next_one_back(env: Env) -> None:
    key = env.sim.script_job([LIFECYCLE[1]])
    status, _, url = await env.command(f"subscribe {key}")
    assert status == 200
    await env.reply(url)
    await env.cycle()  # polled now (t = 0): the job's grid is 10, 20, 30 ...
    polls = env.sim.stats.progress_polls
    await env.cycle(13.0)  # the loop woke 3 s late for slot 10
    assert env.sim.stats.progress_polls == polls + 1
    await env.cycle(7.0)  # t = 20: the next slot, not 13 + 10
    assert env.sim.stats.progress_polls == polls + 2
    await env.cycle(25.0)  # t = 45: slots 30 and 40 were missed; one poll, not two
    await env.cycle(4.0)  # t = 49: nothing due before 50
    assert env.sim.stats.progress_polls == polls + 3


# --------------------------------------------------------------------- group commit
def changed_poll(key: str, *, outbox: Sequence[NewOutboxRow] = ()) -> PollRecord:
    return PollRecord(
        job_key=key,
        snapshot_json='{"status": "RUNNING"}',
        snapshot_hash="h1",
        status="RUNNING",
        best_performance=0.6,
        best_algorithm="A",
        terminal=False,
        next_poll_at=0.0,
        history=[HistoryPoint("A", 1.0, 0.6)],
        outbox=outbox,
        last_best={},
        improved=True,
    )


@pytest.fixture
def store(tmp_path: Path) -> Any:
    opened = Store(tmp_path / "bot.db", clock=lambda: 1000.0, history_keep=3, busy_timeout_ms=50)
    for key in ("J1", "J2", "J3"):
        opened.subscribe(
            team_id="T1",
            channel_id=f"C{key}",
            job_key=key,
            user_id="U1",
            min_improvement=0.005,
            mention=None,
            events="all",
            snapshot_json="{}",
            snapshot_hash="h0",
            status="RUNNING",
            best_performance=None,
            best_algorithm=None,
            terminal=False,
            next_poll_at=0.0,
            watch_row=NewOutboxRow(f"watch:{key}", f"C{key}", key, "watch_started", "{}"),
        )
    yield opened
    opened.close()


@pytest.fixture
async def on_thread(store: Store, tmp_path: Path) -> AsyncIterator[AsyncStore]:
    """The same database as `store`, as the poller has it: on the store's own thread."""
    opened = await AsyncStore.open(tmp_path / "bot.db", clock=lambda: 1000.0, busy_timeout_ms=50)
    yield opened
    await opened.close()


def given(poll: PollRecord) -> Callable[[Store], PollRecord]:
    return lambda _: poll


async def test_polls_of_one_turn_share_a_transaction_and_a_bad_one_fails_alone(
    store: Store, on_thread: AsyncStore
) -> None:
    writer = GroupCommit(on_thread)
    written: dict[str, int] = {}
    refused: dict[str, StoreUnavailable] = {}
    bad_row = NewOutboxRow("bad", "CJ2", "J2", "new_best", "not json")

    async def record(key: str, poll: PollRecord) -> None:
        await writer.record(
            given(poll),
            written=lambda version: written.__setitem__(key, version),
            refused=lambda err: refused.__setitem__(key, err),
        )

    polls = {"J1": changed_poll("J1"), "J2": changed_poll("J2", outbox=[bad_row])}
    polls["J3"] = changed_poll("J3")
    await asyncio.gather(*(record(key, poll) for key, poll in polls.items()))
    assert written == {"J1": 1, "J3": 1} and set(refused) == {"J2"}
    assert "outbox row refused" in str(refused["J2"])
    job = store.get_job("J2")
    assert job is not None and job.version == 0  # nothing of the bad poll was written
    assert store.record_polls([changed_poll("J1"), changed_poll("J3")]) == [2, 2]


async def test_a_locked_database_refuses_the_whole_batch_and_then_recovers(
    on_thread: AsyncStore, tmp_path: Path
) -> None:
    writer = GroupCommit(on_thread)
    refused: dict[str, str] = {}
    written: dict[str, int] = {}

    async def record(key: str) -> None:
        await writer.record(
            given(changed_poll(key)),
            written=lambda version: written.__setitem__(key, version),
            refused=lambda err: refused.__setitem__(key, str(err)),
        )

    other = sqlite3.connect(tmp_path / "bot.db", timeout=0)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        await asyncio.gather(*(record(key) for key in ("J1", "J2", "J3")))
    finally:
        other.rollback()
        other.close()
    assert written == {} and refused == dict.fromkeys(("J1", "J2", "J3"), "database is locked")
    await record("J1")
    assert written == {"J1": 1}


# --------------------------------------------------------------------- history pruning
def test_history_keeps_the_newest_points_of_each_algorithm(store: Store) -> None:
    for version in range(1, PRUNE_EVERY + 1):
        points = [HistoryPoint("A", float(version), 0.5), HistoryPoint("B", float(version), 0.4)]
        poll = changed_poll("J1")
        store.record_polls([PollRecord(**{**_fields(poll), "history": points})])
        kept = len(store.history("J1"))
        assert kept == (2 * version if version < PRUNE_EVERY else 6)
    newest = [float(v) for v in range(PRUNE_EVERY - 2, PRUNE_EVERY + 1)]
    assert [p.at for p in store.history("J1", algorithm="A")] == newest
    assert [p.at for p in store.history("J1", algorithm="B")] == newest
    assert store.history("J2") == []


def _fields(poll: PollRecord) -> dict[str, Any]:
    return {name: getattr(poll, name) for name in PollRecord.__dataclass_fields__}


def test_signal_counts_each_lifecycle(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--speed", "600", "--interval", "0.2", "--pace", "0.05", "--algorithms", "12"]
    signal_bench.main([*argv, "--fates", "FAILED", "--max-seconds", "60"])
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [row["record"] for row in rows] == ["job", "job", "summary"]
    forced, scripted = rows[0], rows[1]
    assert forced["final_status"] == scripted["final_status"] == "FAILED"
    assert scripted["algorithms"] == 12 and scripted["cards"] == 1
    # PENDING -> RUNNING -> three rises -> a quarter stalls -> FAILED: five polls told
    assert scripted["thread_replies"] == 5 and scripted["job_status_changes"] == 2
    assert scripted["posted"] == scripted["cards"] + scripted["thread_replies"]
    assert scripted["broadcasts"] == 1 and scripted["channel_level"] == 2
    assert scripted["card_edits"] >= 1 and scripted["longest_lines"] >= scripted["card_lines"]
    assert rows[-1]["jobs"] == 2 and multiprocessing.active_children() == []


def test_shown_lines_lays_out_blocks_as_slack_does() -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Title"}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": t} for t in ("*A*\n1", "*B*\n2", "*C*\n3")],
        },
        {"type": "divider"},
        {"type": "section", "text": {"type": "mrkdwn", "text": "a &lt;b&gt;\n<@U1|ann>"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "<!date^1^{ago}|now>"}]},
        {"type": "actions", "elements": [{"type": "button", "text": {"text": "Mute"}}]},
    ]
    assert signal_bench.shown_lines("fallback", blocks) == [
        "Title",
        "*A*" + " " * 27 + "*B*",
        "1" + " " * 29 + "2",
        "*C*",
        "3",
        "a <b>",
        "ann",
        "now",
        "[Mute]",
    ]
    assert signal_bench.shown_lines("just <!here> text", []) == ["just @here text"]
