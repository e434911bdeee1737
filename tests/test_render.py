"""Pure rendering: sparklines, the job card, notifications, errors; Block Kit limits hold.

Longer than 300 lines: one table per kind of message, and the properties over all of them.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block, ButtonElement

from bench.signal import shown_lines
from bot.core.events import Event, EventKind
from bot.core.forecast import Verdict
from bot.core.forecast_state import ForecastSummary
from bot.core.models import (
    TERMINAL_STATUSES,
    TRAINING_STATUSES,
    AlgorithmProgress,
    Snapshot,
    TrainingJob,
    TrainingProgress,
)
from bot.core.sparkline import sparkline
from bot.slack.card import CARD_ALGORITHMS, forecast_line, progress_bar
from bot.slack.render import (
    ACTION_MUTE,
    ACTION_REFRESH,
    ACTION_UNSUBSCRIBE,
    Message,
    _one_line,
    escape_mrkdwn,
    render_card,
    render_error,
    render_notification,
    render_status,
)
from bot.slack.text import (
    ago,
    context,
    cut,
    fold,
    here,
    perf,
    section,
    span,
    target_text,
    to_message,
    utc_stamp,
)
from tests.scripts import REFERENCE_PROGRESS

NOW = 1_700_000_000.0
JOB = "5f0c2b1e-0000-4000-8000-00000000cafe"
MODEL = "9a9a9a9a-1111-4222-8333-444444444444"
EMOJI = {
    "PENDING": "⏳",
    "RUNNING": "🏃",
    "COMPLETED": "🏆",
    "TIMED_OUT": "⌛",
    "NOT_COMPLETED": "🛑",
    "CANCELLED": "🚫",
    "FAILED": "❌",
}


def reference_snapshot() -> Snapshot:
    job = TrainingJob.model_validate(
        {
            "trainingJobKey": JOB,
            "datasetKey": "d0d0d0d0-0000-4000-8000-000000000000",
            "status": "COMPLETED",
            "targetPerformance": 0.85,
            "achievedPerformance": 0.92,
            "modelKey": MODEL,
        }
    )
    return Snapshot.from_api(JOB, TrainingProgress.model_validate(REFERENCE_PROGRESS), job)


def snapshot(status: str = "RUNNING", *, algorithms: int = 2, **extra: Any) -> Snapshot:
    algos = tuple(
        AlgorithmProgress(
            algorithm=f"ALG{i:03d}",
            status="RUNNING",
            latest_performance=0.5 + i / 10_000,
            recent_performances=(0.5, 0.5 + i / 10_000),
        )
        for i in range(algorithms)
    )
    fields: dict[str, Any] = {"job_key": JOB, "status": status, "target_performance": 0.85}
    return Snapshot(**(fields | {"algorithms": algos} | extra))


def texts(message: Message) -> list[str]:
    """Every piece of text in the blocks (section text and fields, context, header, buttons)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(message.blocks)
    return found


def everything(message: Message) -> str:
    return "\n".join([message.text, *texts(message)])


def assert_valid(message: Message) -> None:
    """What Slack would accept: slack_sdk validators plus message-level limits."""
    assert message.text.strip() and len(message.text) <= 40_000
    assert 1 <= len(message.blocks) <= 50
    for block, parsed in zip(message.blocks, Block.parse_all(message.blocks), strict=True):
        assert parsed is not None, f"slack_sdk does not know the block {block}"
        assert parsed.to_dict()["type"] == block["type"]  # runs slack_sdk's validators
    for block in message.blocks:
        if block["type"] == "section":
            assert len(block.get("text", {}).get("text", "")) <= 3000
            assert len(block.get("fields", [])) <= 10
            assert all(len(f["text"]) <= 2000 for f in block.get("fields", []))
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
    assert sum(len(text) for text in texts(message)) < 12_000  # margin for msg_blocks_too_long


def sections(message: Message) -> list[dict[str, Any]]:
    return [b for b in message.blocks if b["type"] == "section"]


# ---- sparkline --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "width", "expected"),
    [
        ([], 12, ""),
        ([0.5], 12, "▄"),
        ([0.62] * 5, 12, "▄▄▄▄▄"),
        ([1, 2, 3, 4, 5, 6, 7, 8], 12, "▁▂▃▄▅▆▇█"),
        ([8, 7, 6, 5, 4, 3, 2, 1], 12, "█▇▆▅▄▃▂▁"),
        ([0, 1], 12, "▁█"),
        (list(range(20)), 3, "▁▄█"),
        (list(range(20)), 12, "▁▂▂▃▄▄▅▅▆▇▇█"),
        ([math.nan, 0, math.inf, 1], 12, "▁█"),
        ([-1e308, 1e308], 12, "▁█"),
    ],
)
def test_sparkline(values: list[float], width: int, expected: str) -> None:
    assert sparkline(values, width=width) == expected


def test_sparkline_min_span_keeps_noise_near_the_middle() -> None:
    assert sparkline([0.9194, 0.92, 0.9197], min_span=0.01) == "▄▅▄"
    assert sparkline([0.0, 1.0], min_span=0.01) == "▁█"


def test_sparkline_refuses_zero_width() -> None:
    with pytest.raises(ValueError, match="width"):
        sparkline([1.0], width=0)


# ---- the card ---------------------------------------------------------------------------


def test_card_of_the_reference_payload_states_the_key_facts() -> None:
    message = render_card(reference_snapshot(), now=NOW, last_improvement_at=NOW - 250)
    assert_valid(message)
    assert message.text == f"Training {JOB}: COMPLETED, best 0.9200 (BSEV02) of target 0.85"
    body = everything(message)
    for fact in (
        JOB,
        "🏆 COMPLETED",
        "0.85",
        "0.9200 by `BSEV02`",
        MODEL,
    ):
        assert fact in body
    assert "▰▰▰▰▰▰▰▰▰▰ 100%" in body
    lines = [
        line for s in sections(message) for line in s.get("text", {}).get("text", "").split("\n")
    ]
    algorithm_lines = [line for line in lines if line.startswith("`") and "·" in line]
    assert [line.split("`")[3] for line in algorithm_lines] == [
        "BSEV02",
        "BSIX01",
        "BFIF01",
        "BSEV01",
    ]
    assert algorithm_lines[0].endswith("*0.9200* · 🏆 COMPLETED")
    assert algorithm_lines[3].startswith("`▄▄▄▄▄`") and "🛑 NOT_COMPLETED" in algorithm_lines[3]


def test_card_buttons_carry_the_job_key() -> None:
    message = render_card(snapshot(), now=NOW)
    [actions] = [b for b in message.blocks if b["type"] == "actions"]
    buttons = {b["action_id"]: b for b in actions["elements"]}
    assert list(buttons) == [ACTION_MUTE, ACTION_UNSUBSCRIBE, ACTION_REFRESH]
    assert [b["text"]["text"] for b in buttons.values()] == ["Mute 1 h", "Unsubscribe", "Refresh"]
    assert all(b["value"] == JOB for b in buttons.values())
    unsubscribe = buttons[ACTION_UNSUBSCRIBE]
    assert unsubscribe["style"] == "danger" and JOB in unsubscribe["confirm"]["text"]["text"]


def test_status_reply_is_the_card_without_buttons() -> None:
    message = render_status(snapshot(), now=NOW, history={"ALG001": [1.0, 2.0, 3.0]})
    assert_valid(message)
    assert all(b["type"] != "actions" for b in message.blocks)
    assert "`▁▄█` `ALG001`" in everything(message)


@pytest.mark.parametrize("status", TRAINING_STATUSES)
def test_every_status_has_its_emoji(status: str) -> None:
    message = render_card(snapshot(status), now=NOW)
    assert f"{EMOJI[status]} {status}" in everything(message)
    assert message.blocks[0]["text"]["text"].startswith(EMOJI[status])


def test_unknown_status_is_shown_raw_with_a_question_mark() -> None:
    message = render_card(snapshot("PAUSED_BY_OPS"), now=NOW)
    assert "❔ PAUSED_BY_OPS" in everything(message)
    assert message.blocks[0]["text"]["text"] == "❔ MathFi training · unknown status"


def test_progress_bar_and_missing_numbers() -> None:
    algos = (AlgorithmProgress(algorithm="A", status="RUNNING", latest_performance=0.74),)
    snap = Snapshot(job_key=JOB, status="RUNNING", target_performance=0.85, algorithms=algos)
    running = render_card(snap, now=NOW)
    assert "▰▰▰▰▰▰▰▰▱▱ 87%" in everything(running)
    empty = render_card(Snapshot(job_key=JOB, status="PENDING"), now=NOW)
    assert_valid(empty)
    assert empty.text == f"Training {JOB}: PENDING, no performance yet"
    assert "No algorithm has reported yet" in everything(empty)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-5, "just now"),
        (42, "42 s ago"),
        (250, "4 min ago"),
        (3600, "1 h ago"),
        (3 * 3600 + 120, "3 h 2 min ago"),
        (2 * 86400 + 3600, "2 d 1 h ago"),
    ],
)
def test_time_since_last_improvement(seconds: float, expected: str) -> None:
    """A running job: Slack's `{ago}` keeps the age true between edits; the fallback is the
    age at drawing time."""
    message = render_card(snapshot(), now=NOW, last_improvement_at=NOW - seconds)
    at = int(NOW - max(seconds, 0))
    assert f"last improvement <!date^{at}^{{ago}}|{expected}>" in everything(message)


def test_a_finished_card_dates_its_last_improvement_instead_of_an_age() -> None:
    """Issue 19: the final card kept "last improvement 0 s ago" for good."""
    for status in ("COMPLETED", "FAILED", "CANCELLED"):
        message = render_card(snapshot(status), now=NOW, last_improvement_at=NOW - 0.4)
        body = everything(message)
        assert " ago" not in body and "{ago}" not in body
        stamp = "2023-11-14 22:13 UTC"
        expected = f"last improvement <!date^{int(NOW - 0.4)}^{{date_short_pretty}} {{time}}|"
        assert expected + stamp + ">" in body


def test_a_change_less_than_a_second_old_is_just_now() -> None:
    message = render_card(snapshot(), now=NOW, last_improvement_at=NOW - 0.4)
    assert "|just now>" in everything(message) and "0 s ago" not in everything(message)


def muted_line(message: Message) -> str | None:
    found = [t for t in texts(message) if "🔕" in t]
    assert len(found) <= 1
    return found[0] if found else None


def test_a_muted_card_says_until_when() -> None:
    until = NOW + 3600
    line = muted_line(render_card(snapshot(), now=NOW, muted_until=until))
    assert line == (
        f"🔕 muted until <!date^{int(until)}^{{date_short_pretty}} {{time}}|2023-11-14 23:13 UTC>"
        ": only terminal statuses are posted"
    )
    assert muted_line(render_card(snapshot(), now=NOW)) is None


def test_a_mute_that_has_ended_is_not_on_the_card() -> None:
    """Issue 19: the card kept "🔕 muted" after the mute ended. Drawn after the end, no line;
    drawn before it, the line names the end, so it stays true until the next edit."""
    until = NOW - 1
    assert muted_line(render_card(snapshot(), now=NOW, muted_until=until)) is None
    assert muted_line(render_card(snapshot(), now=NOW, muted_until=NOW)) is None


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_a_job_that_finished_while_muted_shows_no_mute(status: str) -> None:
    """The final card is drawn while the mute lasts, and is never redrawn."""
    message = render_card(snapshot(status), now=NOW, muted_until=NOW + 86400)
    assert muted_line(message) is None


def test_history_replaces_recent_performances() -> None:
    message = render_card(snapshot(), now=NOW, history={"ALG000": [3.0, 2.0, 1.0]})
    assert "`█▄▁` `ALG000`" in everything(message)


@pytest.mark.parametrize("count", [CARD_ALGORITHMS + 1, 120])
def test_the_card_shows_the_best_few_algorithms_and_counts_the_rest(count: int) -> None:
    message = render_card(snapshot(algorithms=count), now=NOW)
    assert_valid(message)
    body = everything(message)
    shown = [i for i in range(count) if f"`ALG{i:03d}`" in body]
    kept = CARD_ALGORITHMS - 1  # and the count: CARD_ALGORITHMS lines in all
    assert shown == list(range(count - kept, count))  # the highest performers
    assert f"… and {count - kept} more algorithms" in body


@pytest.mark.parametrize(
    ("status", "extra"),
    [
        ("COMPLETED", {"model_key": "m" * 36, "achieved_performance": 0.86,
                       "training_performance": 0.88, "test_performance": 0.85}),
        ("FAILED", {}),
        ("RUNNING", {}),
    ],
)  # fmt: skip
def test_a_card_of_120_algorithms_is_at_most_15_lines_as_slack_shows_it(
    status: str, extra: dict[str, Any]
) -> None:
    forecast = ForecastSummary(at=NOW, verdict=Verdict.ON_TRACK, eta=3600.0, eta_algorithm="A")
    message = render_card(
        snapshot(status, algorithms=120, **extra),
        now=NOW,
        last_improvement_at=NOW - 60,
        muted_until=NOW + 600,
        forecast=forecast,
    )
    assert len(shown_lines(message.text, message.blocks)) <= 15  # issue #14


def test_a_card_with_few_algorithms_shows_them_all() -> None:
    body = everything(render_card(snapshot(algorithms=CARD_ALGORITHMS), now=NOW))
    assert all(f"`ALG{i:03d}`" in body for i in range(CARD_ALGORITHMS))
    assert "more algorithm" not in body


def test_status_lists_fifty_algorithms_all() -> None:
    message = render_status(snapshot(algorithms=50), now=NOW)
    assert_valid(message)
    body = everything(message)
    assert all(f"`ALG{i:03d}`" in body for i in range(50)) and "more algorithm" not in body


def test_status_of_five_hundred_algorithms_is_cut_with_a_count() -> None:
    message = render_status(snapshot(algorithms=500), now=NOW)
    assert_valid(message)
    body = everything(message)
    shown = sum(f"`ALG{i:03d}`" in body for i in range(500))
    assert 50 < shown < 500
    assert f"… and {500 - shown} more algorithms" in body
    assert "`ALG499`" in body  # best first: the highest performers are the ones kept


def test_hostile_strings_are_escaped() -> None:
    hostile = "<!channel> *bold* & co"
    algos = (AlgorithmProgress(algorithm=hostile, status="<!here>", latest_performance=0.9),)
    snap = Snapshot(job_key="<@U999>&", status="<!everyone>", algorithms=algos)
    card = render_card(snap, now=NOW)
    assert_valid(card)
    body = everything(card)
    for raw in ("<!channel>", "<!here>", "<@U999>", "<!everyone>", "& co"):
        assert raw not in body
    assert "`&lt;!channel&gt; *bold* &amp; co`" in body  # in code: the stars stay literal
    assert "&lt;@U999&gt;&amp;" in card.text and "❔ &lt;!here&gt;" in body


def test_foreign_line_breaks_cannot_break_the_layout() -> None:
    algos = (AlgorithmProgress(algorithm="A\nB\x00C", status="RUNNING", latest_performance=0.5),)
    body = everything(
        render_card(Snapshot(job_key=JOB, status="RUNNING", algorithms=algos), now=NOW)
    )
    assert "`A B C` *0.5000*" in body


def test_escape_mrkdwn_touches_only_the_three_characters() -> None:
    assert escape_mrkdwn("a & <b> *c* _d_ `e`") == "a &amp; &lt;b&gt; *c* _d_ `e`"


# ---- notifications ----------------------------------------------------------------------


def event(kind: EventKind, **fields: Any) -> Event:
    return Event(kind=kind, job_key=JOB, **fields)


@pytest.mark.parametrize(
    ("happened", "headline"),
    [
        (
            event(
                EventKind.CHAMPION,
                algorithm="BSEV02",
                performance=0.92,
                target_performance=0.85,
                model_key=MODEL,
            ),
            f"🏆 Champion: `BSEV02` reached 0.9200 (target 0.85) — model `{MODEL}`",
        ),
        (
            event(EventKind.JOB_STATUS, old_status="RUNNING", new_status="FAILED"),
            "❌ Job FAILED (was RUNNING)",
        ),
        (
            event(
                EventKind.NEW_BEST,
                algorithm="BSIX01",
                performance=0.8123,
                previous_performance=0.7973,
            ),
            "📈 New best 0.8123 by `BSIX01` (+0.0150)",
        ),
        (
            event(
                EventKind.ALGORITHM_STATUS,
                algorithm="BSEV01",
                old_status="RUNNING",
                new_status="NOT_COMPLETED",
            ),
            "⚙️ `BSEV01`: RUNNING → NOT_COMPLETED",
        ),
        (
            event(EventKind.UNREACHABLE, reason="HTTP 503 <b>"),
            "🔌 MathFi cannot reach this job: HTTP 503 &lt;b&gt;",
        ),
        (event(EventKind.RECOVERED), "✅ Reachable again"),
        (event(EventKind.WATCH_STARTED), f"👀 Watching `{JOB}` (🏃 RUNNING)"),
    ],
)
def test_notification_headline_for_every_event_kind(happened: Event, headline: str) -> None:
    message = render_notification([happened], snapshot=snapshot())
    assert_valid(message)
    assert message.text == headline
    assert message.blocks[0]["text"]["text"] == headline


def test_one_notification_per_poll_puts_the_weightiest_event_first() -> None:
    events = [
        event(
            EventKind.ALGORITHM_STATUS,
            algorithm="BSEV02",
            old_status="RUNNING",
            new_status="COMPLETED",
        ),
        event(EventKind.JOB_STATUS, old_status="RUNNING", new_status="COMPLETED"),
        event(EventKind.CHAMPION, algorithm="BSEV02", performance=0.92),
    ]
    message = render_notification(events, snapshot=reference_snapshot())
    assert_valid(message)
    first, second = (s["text"]["text"] for s in sections(message))
    assert first.startswith("🏆 Champion: `BSEV02` reached 0.9200 (target 0.85)")
    assert second.split("\n") == [
        "🏆 Job COMPLETED (was RUNNING)",
        "⚙️ `BSEV02`: RUNNING → COMPLETED",
    ]
    assert message.text.endswith("(and 2 more updates)")


def test_many_events_are_cut_with_a_count() -> None:
    # 400 different (unknown) statuses: 400 summary lines, more than one reply can hold
    events = [
        event(
            EventKind.ALGORITHM_STATUS,
            algorithm=f"A{i:04d}",
            old_status="RUNNING",
            new_status=f"STATUS_{i:04d}",
        )
        for i in range(400)
    ]
    message = render_notification(events, snapshot=snapshot())
    assert_valid(message)
    assert "more updates" in everything(message)


@pytest.mark.parametrize(
    ("happened", "alerts"),
    [
        (event(EventKind.JOB_STATUS, old_status="RUNNING", new_status="FAILED"), True),
        (event(EventKind.JOB_STATUS, old_status="RUNNING", new_status="TIMED_OUT"), True),
        (event(EventKind.JOB_STATUS, old_status="RUNNING", new_status="NOT_COMPLETED"), True),
        (event(EventKind.UNREACHABLE, reason="timeout"), True),
        (event(EventKind.JOB_STATUS, old_status="RUNNING", new_status="COMPLETED"), False),
        (event(EventKind.JOB_STATUS, old_status="RUNNING", new_status="CANCELLED"), False),
        (event(EventKind.ALGORITHM_STATUS, algorithm="A", new_status="FAILED"), False),
        (event(EventKind.NEW_BEST, performance=0.9), False),
        (event(EventKind.RECOVERED), False),
    ],
)
@pytest.mark.parametrize("mention", ["<@U123>", "<!subteam^S1>", "<!here>"])
def test_mention_only_on_alerts(happened: Event, alerts: bool, mention: str) -> None:
    calm = event(EventKind.NEW_BEST, performance=0.8)
    message = render_notification([calm, happened], snapshot=snapshot(), mention=mention)
    assert_valid(message)
    if alerts:
        assert message.text.startswith(mention + " ")
        assert message.blocks[0]["text"]["text"].startswith(mention + " ")
    else:
        assert mention not in everything(message)


def test_notification_needs_an_event() -> None:
    with pytest.raises(ValueError, match="event"):
        render_notification([], snapshot=snapshot())


# ---- summaries: one line per new algorithm status (issue #14) ---------------------------


def changes(count: int, new: str, *, old: str = "RUNNING", first: int = 0) -> list[Event]:
    return [
        event(
            EventKind.ALGORITHM_STATUS,
            algorithm=f"ALG{i:03d}",
            old_status=old,
            new_status=new,
        )
        for i in range(first, first + count)
    ]


def body_lines(message: Message) -> list[str]:
    """The lines the blocks show (sections and context; notifications have no fields)."""
    lines: list[str] = []
    for block in message.blocks:
        if block["type"] == "section":
            lines += block["text"]["text"].split("\n")
        elif block["type"] == "context":
            lines += "  ".join(e["text"] for e in block["elements"]).split("\n")
    return lines


@pytest.mark.parametrize(
    ("count", "new", "old", "line"),
    [
        (1, "RUNNING", "PENDING", "⚙️ `ALG000`: PENDING → RUNNING"),
        (2, "RUNNING", "PENDING", "▶️ 2 algorithms started"),
        (4, "RUNNING", "PENDING", "▶️ 4 algorithms started"),
        (
            4,
            "NOT_COMPLETED",
            "RUNNING",
            "🛑 4 algorithms stopped (NOT_COMPLETED): `ALG003` 0.5003 · `ALG002` 0.5002 · "
            "`ALG001` 0.5001 · `ALG000` 0.5000",
        ),
        (
            6,
            "TIMED_OUT",
            "RUNNING",
            "⌛ 6 algorithms stopped (TIMED_OUT): `ALG005` 0.5005 · `ALG004` 0.5004 · "
            "`ALG003` 0.5003 · `ALG002` 0.5002 · `ALG001` 0.5001 … and 1 more",
        ),
        (
            120,
            "FAILED",
            "RUNNING",
            "❌ 120 algorithms failed: `ALG119` 0.5119 · `ALG118` 0.5118 · `ALG117` 0.5117 · "
            "`ALG116` 0.5116 · `ALG115` 0.5115 … and 115 more",
        ),
        (2, "COMPLETED", "RUNNING", "🏁 2 algorithms finished: `ALG001` 0.5001 · `ALG000` 0.5000"),
        (2, "CANCELLED", "RUNNING", "🚫 2 algorithms cancelled: `ALG001` 0.5001 · `ALG000` 0.5000"),
        (3, "PENDING", "RUNNING", "⏳ 3 algorithms pending"),
        (
            2,
            "WARMING_UP",
            "RUNNING",
            "❔ 2 algorithms WARMING_UP: `ALG001` 0.5001 · `ALG000` 0.5000",
        ),
    ],
)
def test_algorithm_changes_of_one_poll_are_one_line_per_status(
    count: int, new: str, old: str, line: str
) -> None:
    message = render_notification(changes(count, new, old=old), snapshot=snapshot(algorithms=120))
    assert_valid(message)
    assert message.text == line
    assert body_lines(message) == [line, f"Job `{JOB}` · 🏃 RUNNING · best 0.5119 · target 0.85"]


def test_the_issue_example_names_the_best_first_with_the_snapshot_performance() -> None:
    perfs = {"BSEV01": 0.61, "BSEV02": 0.72, "BSIX01": 0.73, "BFIF01": 0.71}
    snap = Snapshot(
        job_key=JOB,
        status="RUNNING",
        algorithms=tuple(
            AlgorithmProgress(algorithm=n, status="NOT_COMPLETED", latest_performance=v)
            for n, v in perfs.items()
        ),
    )
    stopped = [
        event(
            EventKind.ALGORITHM_STATUS,
            algorithm=n,
            old_status="RUNNING",
            new_status="NOT_COMPLETED",
        )
        for n in ("BSEV02", "BFIF01", "BSIX01")
    ]
    message = render_notification(stopped, snapshot=snap)
    assert message.text == (
        "🛑 3 algorithms stopped (NOT_COMPLETED): `BSIX01` 0.7300 · `BSEV02` 0.7200 · "
        "`BFIF01` 0.7100"
    )


def test_mixed_statuses_worst_news_first_and_a_lone_change_keeps_its_wording() -> None:
    happened = [
        *changes(3, "RUNNING", old="PENDING"),
        *changes(1, "FAILED", first=3),
        *changes(2, "NOT_COMPLETED", first=4),
        *changes(2, "ODD", first=6),
        event(EventKind.NEW_BEST, algorithm="ALG005", performance=0.9, previous_performance=0.8),
    ]
    message = render_notification(happened, snapshot=snapshot(algorithms=8))
    assert_valid(message)
    assert body_lines(message)[:-1] == [
        "📈 New best 0.9000 by `ALG005` (+0.1000)",
        "⚙️ `ALG003`: RUNNING → FAILED",
        "🛑 2 algorithms stopped (NOT_COMPLETED): `ALG005` 0.5005 · `ALG004` 0.5004",
        "▶️ 3 algorithms started",
        "❔ 2 algorithms ODD: `ALG007` 0.5007 · `ALG006` 0.5006",
    ]
    assert message.text == "📈 New best 0.9000 by `ALG005` (+0.1000) (and 4 more updates)"


def test_an_algorithm_without_a_performance_is_named_last_without_one() -> None:
    snap = Snapshot(
        job_key=JOB,
        status="RUNNING",
        algorithms=(
            AlgorithmProgress(algorithm="ALG000", status="FAILED"),
            AlgorithmProgress(algorithm="ALG001", status="FAILED", latest_performance=0.4),
        ),
    )
    message = render_notification(changes(3, "FAILED"), snapshot=snap)
    assert message.text == "❌ 3 algorithms failed: `ALG001` 0.4000 · `ALG000` · `ALG002`"


HOSTILE = ["<!channel>", "*bold* _it_ ~s~", "a`b`c", "line\nbreak\u2028x", "&amp; <@U1>", "x" * 500]


@pytest.mark.parametrize("broadcast", [False, True])
def test_hostile_algorithm_names_and_statuses_stay_escaped_on_summary_lines(
    broadcast: bool,
) -> None:
    snap = Snapshot(
        job_key=JOB,
        status="FAILED",
        algorithms=tuple(
            AlgorithmProgress(algorithm=n, status="FAILED", latest_performance=0.5) for n in HOSTILE
        ),
    )
    happened = [
        event(EventKind.ALGORITHM_STATUS, algorithm=n, old_status="RUNNING", new_status=status)
        for n in HOSTILE
        for status in ("FAILED", "<!here> *x*\n")
    ]
    message = render_notification(happened, snapshot=snap, broadcast=broadcast)
    assert_valid(message)
    body = everything(message)
    for raw in ("<!channel>", "<!here>", "<@U1>"):
        assert raw not in body
    assert "\u2028" not in body
    lines = body_lines(message)
    assert len(lines) == 3  # a line break in a name or a status breaks no line
    assert lines[1].startswith("❔ 6 algorithms &lt;!here&gt; *x*")  # shown as it is, escaped
    if not broadcast:
        assert "`aˋbˋc`" in lines[0] and "`&lt;!channel&gt;`" in lines[0]


# ---- the broadcast form -----------------------------------------------------------------


def test_a_broadcast_reply_is_the_headline_one_summary_line_and_the_job() -> None:
    happened = [
        event(EventKind.JOB_STATUS, old_status="RUNNING", new_status="FAILED"),
        *changes(90, "FAILED"),
        *changes(30, "NOT_COMPLETED", first=90),
        event(EventKind.NEW_BEST, algorithm="ALG119", performance=0.9, previous_performance=0.8),
    ]
    mention = "<!subteam^S1|@oncall>"
    full = render_notification(
        happened, snapshot=snapshot("FAILED", algorithms=120), mention=mention
    )
    short = render_notification(
        happened, snapshot=snapshot("FAILED", algorithms=120), mention=mention, broadcast=True
    )
    assert_valid(short)
    assert body_lines(short) == [
        f"{mention} ❌ Job FAILED (was RUNNING)",
        "📈 New best 0.9000 by `ALG119` (+0.1000) · ❌ 90 algorithms failed · "
        "🛑 30 algorithms stopped (NOT_COMPLETED)",
        f"Job `{JOB}` · ❌ FAILED · best 0.5119 · target 0.85",
    ]
    assert short.text == full.text  # the same notification text
    assert len(body_lines(full)) == 5 and "`ALG089` 0.5089" in everything(full)


def test_a_broadcast_of_one_event_is_the_headline_and_the_job() -> None:
    happened = [event(EventKind.JOB_STATUS, old_status="RUNNING", new_status="COMPLETED")]
    message = render_notification(happened, snapshot=snapshot("COMPLETED"), broadcast=True)
    assert body_lines(message) == [
        "🏆 Job COMPLETED (was RUNNING)",
        f"Job `{JOB}` · 🏆 COMPLETED · best 0.5001 · target 0.85",
    ]


def test_a_broadcast_with_too_much_to_say_counts_the_rest_on_its_one_line() -> None:
    happened = [
        event(EventKind.JOB_STATUS, old_status="RUNNING", new_status="FAILED"),
        *[
            event(EventKind.ALGORITHM_STATUS, algorithm="x" * 100, new_status=f"S{i}" * 20)
            for i in range(50)
        ],
    ]
    message = render_notification(happened, snapshot=snapshot(), broadcast=True)
    assert_valid(message)
    lines = body_lines(message)
    assert len(lines) == 3 and len(lines[1]) <= 600
    assert lines[1].endswith("more updates")


# ---- errors -----------------------------------------------------------------------------


def test_error_reply_escapes_and_shows_usage_and_reference() -> None:
    message = render_error(
        "Unknown job <!channel>", usage="/mathfi subscribe <trainingJobKey>", reference="req-42"
    )
    assert_valid(message)
    assert message.text == "⚠️ Unknown job &lt;!channel&gt;"
    body = everything(message)
    assert "`/mathfi subscribe &lt;trainingJobKey&gt;`" in body and "`req-42`" in body
    assert len(render_error("x").blocks) == 1


# ---- properties -------------------------------------------------------------------------

floats = st.floats(allow_nan=False, allow_infinity=False)
performances = st.none() | floats | st.floats(0, 1)
statuses = st.sampled_from(TRAINING_STATUSES) | st.text(max_size=80)
names = st.text(min_size=1, max_size=120)
algorithms = st.builds(
    AlgorithmProgress,
    algorithm=names,
    status=statuses,
    latest_performance=performances,
    recent_performances=st.lists(floats | st.floats(0, 1), max_size=15).map(tuple),
)
snapshots = st.builds(
    Snapshot,
    job_key=st.text(min_size=1, max_size=300),
    status=statuses,
    target_performance=performances,
    algorithms=st.lists(algorithms, max_size=80).map(tuple),
    model_key=st.none() | st.text(max_size=300),
    achieved_performance=performances,
    test_performance=performances,
)
events = st.builds(
    Event,
    kind=st.sampled_from(list(EventKind)),
    job_key=st.text(min_size=1, max_size=300),
    old_status=st.none() | statuses,
    new_status=st.none() | statuses,
    algorithm=st.none() | names,
    performance=performances,
    previous_performance=performances,
    target_performance=performances,
    model_key=st.none() | st.text(max_size=300),
    reason=st.none() | st.text(max_size=1000),
)
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(
    snap=snapshots,
    now=st.floats(0, 4e9),
    since=st.none() | st.floats(0, 4e9),
    muted_until=st.none() | st.floats(allow_nan=True, allow_infinity=True),
)
def test_any_snapshot_renders_within_limits(
    snap: Snapshot, now: float, since: float | None, muted_until: float | None
) -> None:
    message = render_card(snap, now=now, last_improvement_at=since, muted_until=muted_until)
    assert_valid(message)
    assert_valid(render_status(snap, now=now))


@PROPERTY_SETTINGS
@given(
    snap=snapshots,
    happened=st.lists(events, min_size=1, max_size=40),
    mention=st.none() | st.sampled_from(["<@U1>", "<!here>"]),
    broadcast=st.booleans(),
)
def test_any_poll_renders_within_limits(
    snap: Snapshot, happened: list[Event], mention: str | None, broadcast: bool
) -> None:
    message = render_notification(happened, snapshot=snap, mention=mention, broadcast=broadcast)
    assert_valid(message)
    lines = body_lines(message)
    if broadcast:  # the channel sees at most three lines (the budget is 15), and a button
        shown = [b for b in message.blocks if b["type"] != "actions"]
        assert len(lines) <= 3 and len(shown) <= 3 and len(message.blocks) - len(shown) <= 1
    else:  # a headline, at most a line per event, a count of the rest, the job
        assert len(lines) <= len(happened) + 2


# ---- the forecast (issue #12): the card's line and the thread's warnings -----------------


def summary(verdict: Verdict, **fields: Any) -> ForecastSummary:
    return ForecastSummary(at=NOW, verdict=verdict, target=0.85, **fields)


ON_TRACK = summary(
    Verdict.ON_TRACK, eta=720.0, eta_low=700.0, eta_high=740.0, eta_algorithm="BSEV01",
    rate=0.004 / 60, best_projected=0.9, best_algorithm="BSEV01",
)  # fmt: skip
AT_RISK = summary(Verdict.AT_RISK, best_projected=0.8123, best_algorithm="BSIX01")


def forecast_lines(message: Message) -> list[str]:
    return [t for t in texts(message) if t.startswith(("🎯", "⚠️ At risk", "🔮"))]


@pytest.mark.parametrize(
    ("status", "forecast", "drawn_at", "expected"),
    [
        ("RUNNING", ON_TRACK, NOW, ["🎯 ETA ≈ 12 min (`BSEV01`, +0.004/min)"]),
        (
            "RUNNING",
            ON_TRACK.model_copy(update={"eta_low": 480.0, "eta_high": 1200.0}),
            NOW,
            ["🎯 ETA ≈ 12 min, likely 8 min to 20 min (`BSEV01`, +0.004/min)"],
        ),
        (  # a range 30 times wide says nothing: left out
            "RUNNING",
            ON_TRACK.model_copy(update={"eta_low": 60.0, "eta_high": 1800.0}),
            NOW,
            ["🎯 ETA ≈ 12 min (`BSEV01`, +0.004/min)"],
        ),
        (  # drawn two minutes after the poll: counted from the poll
            "RUNNING",
            ON_TRACK,
            NOW + 120,
            ["🎯 ETA ≈ 10 min (`BSEV01`, +0.004/min)"],
        ),
        (
            "RUNNING",
            AT_RISK,
            NOW,
            ["⚠️ At risk: no algorithm is projected to reach 0.85 (best projected 0.812, `BSIX01`)"],
        ),
        ("RUNNING", summary(Verdict.NOT_ENOUGH_HISTORY), NOW, []),
        ("RUNNING", None, NOW, []),
        ("COMPLETED", ON_TRACK, NOW, []),  # a finished job: nothing
        ("NOT_COMPLETED", AT_RISK, NOW, []),
    ],
    ids=[
        "eta",
        "eta-with-range",
        "range-too-wide",
        "eta-ages",
        "at-risk",
        "not-enough-history",
        "none",
        "completed",
        "not-completed",
    ],
)
def test_the_card_shows_the_engine_forecast_in_one_line(
    status: str, forecast: ForecastSummary | None, drawn_at: float, expected: list[str]
) -> None:
    message = render_card(snapshot(status), now=drawn_at, forecast=forecast)
    assert_valid(message)
    assert forecast_lines(message) == expected


def test_status_shows_the_forecast_or_why_there_is_none() -> None:
    assert forecast_lines(render_status(snapshot(), now=NOW, forecast=ON_TRACK)) == [
        "🎯 ETA ≈ 12 min (`BSEV01`, +0.004/min)"
    ]
    note = "🔮 Not watched: no forecast"
    assert forecast_lines(render_status(snapshot(), now=NOW, forecast=note)) == [note]
    assert forecast_lines(render_status(snapshot(), now=NOW)) == []


WARNINGS = [
    (
        event(
            EventKind.AT_RISK, algorithm="BSIX01", best_projected=0.81,
            target_performance=0.85, retry_at=0.8,
        ),
        "⚠️ At risk: no algorithm is projected to reach 0.85 (best projected 0.81 by `BSIX01`)."
        " MathFi's advice: retrain at 0.80, then raise in 0.05 steps",
    ),
    (
        event(
            EventKind.AT_RISK, algorithm="BSIX01", best_projected=0.81,
            target_performance=0.85, retry_at=0.8, stall_algorithm="BSEV01", seconds_left=50.0,
        ),
        "⚠️ At risk: no algorithm is projected to reach 0.85 (best projected 0.81 by `BSIX01`)."
        " MathFi's advice: retrain at 0.80, then raise in 0.05 steps."
        " `BSEV01` may be stopped by the stall rule in about 50 s",
    ),
    (
        event(
            EventKind.BACK_ON_TRACK, algorithm="BSEV01", best_projected=0.9,
            target_performance=0.85, eta=720.0,
        ),
        "✅ Back on track: `BSEV01` is projected to reach 0.85 (ETA ≈ 12 min)",
    ),
    (
        event(
            EventKind.BACK_ON_TRACK, algorithm="BSEV01", best_projected=0.87,
            target_performance=0.85,
        ),
        "✅ Back on track: `BSEV01` is projected to reach 0.85 (best projected 0.87)",
    ),
    (
        event(
            EventKind.STALL_WARNING, algorithm="BSEV01", seconds_left=170.0, gained=0.004,
            needed=0.02, window=300.0,
        ),
        "⏳ Stall ahead: `BSEV01` may be stopped in about 3 min"
        " (gained 0.004 of the 0.02 it needs over 5 min)",
    ),
    (
        event(
            EventKind.JOB_STATUS, old_status="RUNNING", new_status="NOT_COMPLETED",
            performance=0.768, retry_at=0.75,
        ),
        "🛑 Job NOT_COMPLETED (was RUNNING). Best reached 0.7680."
        " MathFi's advice: retrain at 0.75, then raise in 0.05 steps",
    ),
    (
        event(
            EventKind.JOB_STATUS, old_status="RUNNING", new_status="TIMED_OUT",
            performance=0.85, retry_at=0.85,
        ),
        "⌛ Job TIMED_OUT (was RUNNING). Best reached 0.8500."
        " MathFi's advice: retrain at 0.85, then raise in 0.05 steps",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("happened", "headline"), WARNINGS, ids=[w[0].kind for w in WARNINGS])
def test_the_thread_lines_of_warnings_and_of_a_miss(happened: Event, headline: str) -> None:
    message = render_notification([happened], snapshot=snapshot())
    assert_valid(message)
    assert message.text == headline
    assert message.blocks[0]["text"]["text"] == headline


@pytest.mark.parametrize(
    ("happened", "note"),
    [
        (WARNINGS[0][0], " · ⚠️ at risk"),
        (WARNINGS[4][0], " · ⏳ stall ahead"),
        (WARNINGS[2][0], " · ✅ on track"),
        (WARNINGS[5][0], " · retry at 0.75"),
        (event(EventKind.RECOVERED), ""),
    ],
    ids=["at-risk", "stall", "back-on-track", "missed", "other"],
)
def test_the_summary_line_notes_the_forecast(happened: Event, note: str) -> None:
    message = render_notification([happened], snapshot=snapshot())
    assert message.blocks[-1]["elements"][0]["text"].endswith(f"target 0.85{note}")


def test_a_hostile_algorithm_name_in_a_warning_stays_code() -> None:
    hostile = "<!channel> *x*`"
    message = render_notification(
        [event(EventKind.STALL_WARNING, algorithm=hostile, seconds_left=10.0)],
        snapshot=snapshot(),
    )
    assert "<!channel>" not in everything(message)


# ---- word for word: what the snapshot fills in, the summary lines, the broadcast line ----
LONG_NAME = "n" * 80
LONG_SHOWN = "`" + "n" * 59 + "…`"


def scored(*algorithms: tuple[str, float | None], **fields: Any) -> Snapshot:
    return Snapshot.model_validate(
        {
            "job_key": "k",
            "status": "RUNNING",
            "algorithms": [
                {"algorithm": name, "status": "RUNNING", "latest_performance": value}
                for name, value in algorithms
            ],
        }
        | fields
    )


@pytest.mark.parametrize(
    ("event", "snapshot", "line"),
    [
        (  # all from the snapshot: its best algorithm and value, its target and model
            {},
            scored(("A", 0.8), ("B", 0.9), target_performance=0.85, model_key="m"),
            "🏆 Champion: `B` reached 0.9000 (target 0.85) — model `m`",
        ),
        (  # MathFi's achieved performance wins over the best latest one
            {},
            scored(("B", 0.9), achieved_performance=0.91),
            "🏆 Champion: `B` reached 0.9100",
        ),
        (  # the event's own facts win
            {"algorithm": LONG_NAME, "performance": 0.7, "target_performance": 0.8},
            scored(("B", 0.9), target_performance=0.85, achieved_performance=0.91),
            f"🏆 Champion: {LONG_SHOWN} reached 0.7000 (target 0.8)",
        ),
        ({}, scored(), "🏆 Champion reached —"),
    ],
)
def test_the_champion_line(event: dict[str, Any], snapshot: Snapshot, line: str) -> None:
    champion = Event.model_validate({"kind": EventKind.CHAMPION, "job_key": "k"} | event)
    assert render_notification([champion], snapshot=snapshot).text == line


@pytest.mark.parametrize(
    ("event", "snapshot", "line"),
    [
        ({"performance": 0.95}, scored(("A", 0.8), ("B", 0.9)), "📈 New best 0.9500 by `B`"),
        ({"performance": 0.95}, scored(), "📈 New best 0.9500"),
        (
            {"performance": 0.95, "algorithm": LONG_NAME},
            scored(("B", 0.9)),
            f"📈 New best 0.9500 by {LONG_SHOWN}",
        ),
    ],
)
def test_the_new_best_line_names_the_snapshots_best_when_the_event_does_not(
    event: dict[str, Any], snapshot: Snapshot, line: str
) -> None:
    best = Event.model_validate({"kind": EventKind.NEW_BEST, "job_key": "k"} | event)
    assert render_notification([best], snapshot=snapshot).text == line


def moved(name: str | None, status: str | None) -> Event:
    return Event(kind=EventKind.ALGORITHM_STATUS, job_key="k", algorithm=name, new_status=status)


def summary(events: list[Event], snapshot: Snapshot) -> str:
    """The summary line of the algorithms' changes (after a headline that is not one)."""
    headline = Event(kind=EventKind.RECOVERED, job_key="k")
    message = render_notification([headline, *events], snapshot=snapshot)
    return str(message.blocks[1]["text"]["text"])


@pytest.mark.parametrize(
    ("events", "snapshot", "line"),
    [
        (  # best first; no performance last; 0.0 is a performance
            [moved("A", "FAILED"), moved("B", "FAILED"), moved("C", "FAILED")],
            scored(("A", 0.0), ("B", 0.5), ("C", None)),
            "❌ 3 algorithms failed: `B` 0.5000 · `A` 0.0000 · `C`",
        ),
        (  # a negative performance still ranks before none
            [moved("A", "FAILED"), moved("B", "FAILED")],
            scored(("A", None), ("B", -0.5)),
            "❌ 2 algorithms failed: `B` -0.5000 · `A`",
        ),
        (
            [moved(None, "FAILED"), moved(LONG_NAME, "FAILED")],
            scored(),
            f"❌ 2 algorithms failed: `?` · {LONG_SHOWN}",
        ),
        (  # a status we do not know, and none at all
            [moved("A", "WEIRD"), moved("B", "WEIRD")],
            scored(),
            "❔ 2 algorithms WEIRD: `A` · `B`",
        ),
        ([moved("A", None), moved("B", None)], scored(), "❔ 2 algorithms —: `A` · `B`"),
        (  # five names, no "and more"
            [moved(n, "FAILED") for n in "ABCDE"],
            scored(),
            "❌ 5 algorithms failed: `A` · `B` · `C` · `D` · `E`",
        ),
        (
            [moved(n, "FAILED") for n in "ABCDEFG"],
            scored(),
            "❌ 7 algorithms failed: `A` · `B` · `C` · `D` · `E` … and 2 more",
        ),
    ],
)
def test_an_algorithm_summary_line(events: list[Event], snapshot: Snapshot, line: str) -> None:
    assert summary(events, snapshot) == line


@pytest.mark.parametrize(
    ("lines", "budget", "text"),
    [
        # room = budget - len(" · … and 9999 more updates") (26); each line costs len + 3
        (["aaaa", "bbb"], 36, "aaaa · … and 1 more update"),
        (["aaaaaaa"], 36, "aaaaaaa"),  # exactly the room
        (["aaaaaaaa"], 36, "… 1 more update"),
        (["a", "bbb"], 36, "a · bbb"),  # 4 + 6: exactly the room
        (["a", "bbbb"], 36, "a · … and 1 more update"),
        (["a" * 20, "b", "c"], 36, "… 3 more updates"),
    ],
)
def test_the_broadcast_line_keeps_what_fits(lines: list[str], budget: int, text: str) -> None:
    assert _one_line(lines, budget=budget) == text


def test_an_errors_usage_is_cut_at_2900() -> None:
    message = render_error("bad", usage="u" * 3000)
    assert message.blocks[1]["text"]["text"] == "*Usage:* `" + "u" * 2899 + "…`"


# ---- the card's small texts at their edges ---------------------------------------------
@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "just now"),
        (math.nan, "just now"),
        (1.0, "1 s ago"),
        (1.5, "1 s ago"),
        (59.9, "59 s ago"),
        (60.0, "1 min ago"),
        (60.5, "1 min ago"),
        (3599.0, "59 min ago"),
        (3600.0, "1 h ago"),
        (3660.0, "1 h 1 min ago"),
        (86399.0, "23 h 59 min ago"),
        (86400.0, "1 d ago"),
        (88000.0, "1 d ago"),
        (90000.0, "1 d 1 h ago"),
    ],
)
def test_ago(seconds: float, text: str) -> None:
    assert ago(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "1 s"),
        (59.4, "59 s"),
        (59.5, "1 min"),
        (60.0, "1 min"),
        (60.4, "1 min"),
        (3540.0, "59 min"),
        (3600.0, "1 h"),
        (3629.0, "1 h"),
        (3900.0, "1 h 5 min"),
    ],
)
def test_span(seconds: float, text: str) -> None:
    assert span(seconds) == text


def test_progress_bar_has_ten_cells() -> None:
    assert progress_bar(0.5, 1.0) == "▰▰▰▰▰▱▱▱▱▱ 50%"


def card_texts(message: Message) -> str:
    return str(message.blocks)


def test_a_running_jobs_last_improvement_that_is_no_time_is_just_now() -> None:
    running = scored(("A", 0.5), target_performance=1.0)
    card = render_card(running, now=NOW, last_improvement_at=math.nan)
    assert "*Progress* ▰▰▰▰▰▱▱▱▱▱ 50% · last improvement just now" in section_texts(card)


def section_texts(message: Message) -> list[str]:
    return [b["text"]["text"] for b in message.blocks if b["type"] == "section" and "text" in b]


def test_the_champion_line_lists_the_scores_mathfi_gave() -> None:
    done = scored(
        ("A", 0.9),
        status="COMPLETED",
        model_key="m",
        achieved_performance=0.91,
        test_performance=0.88,
    )
    assert "🏆 *Champion model* `m`\nachieved 0.9100 · test 0.8800" in section_texts(
        render_card(done, now=NOW)
    )
    trained = done.model_copy(update={"test_performance": None, "training_performance": 0.9})
    assert "🏆 *Champion model* `m`\nachieved 0.9100 · training 0.9000" in section_texts(
        render_card(trained, now=NOW)
    )
    bare = scored(("A", 0.9), status="COMPLETED", model_key="m")
    assert "🏆 *Champion model* `m`" in section_texts(render_card(bare, now=NOW))


def test_an_algorithm_line_draws_small_moves_nearly_flat_and_cuts_a_long_name() -> None:
    values = [0.5, 0.501, 0.502]
    algorithm = AlgorithmProgress(algorithm=LONG_NAME, status="RUNNING", latest_performance=0.502)
    card = render_card(
        scored(target_performance=0.9).model_copy(update={"algorithms": (algorithm,)}),
        now=NOW,
        history={LONG_NAME: values},
    )
    spark = sparkline(values, min_span=0.01)
    assert spark != sparkline(values)
    assert f"`{spark}` {LONG_SHOWN} *0.5020* · 🏃 RUNNING" in card_texts(card)


# ---- the card's forecast line, folding, facts and buttons, word for word ----------------
def summary_at(verdict: Verdict, **fields: Any) -> ForecastSummary:
    return ForecastSummary.model_validate({"at": NOW, "verdict": verdict} | fields)


RUNNING_JOB = scored(("A", 0.5), target_performance=0.85)


@pytest.mark.parametrize(
    ("forecast", "line"),
    [
        (None, ""),
        (
            summary_at(Verdict.AT_RISK, target=0.85, best_projected=0.81, best_algorithm=LONG_NAME),
            "⚠️ At risk: no algorithm is projected to reach 0.85 "
            f"(best projected 0.81, {LONG_SHOWN})",
        ),
        (
            summary_at(Verdict.AT_RISK, target=0.85, best_projected=0.81),
            "⚠️ At risk: no algorithm is projected to reach 0.85 (best projected 0.81)",
        ),
        (summary_at(Verdict.ON_TRACK), ""),
        (summary_at(Verdict.NOT_ENOUGH_HISTORY, eta=600.0), ""),
        (summary_at(Verdict.ON_TRACK, eta=60.0), "🎯 ETA ≈ 1 min"),  # counted from `at` = now
        (summary_at(Verdict.ON_TRACK, eta=60.0, eta_high=600.0), "🎯 ETA ≈ 1 min"),
        (
            summary_at(Verdict.ON_TRACK, eta=120.0, eta_low=60.0, eta_high=240.0),
            "🎯 ETA ≈ 2 min, likely 1 min to 4 min",  # high exactly 4 x low
        ),
        (summary_at(Verdict.ON_TRACK, eta=120.0, eta_low=60.0, eta_high=300.0), "🎯 ETA ≈ 2 min"),
        (summary_at(Verdict.ON_TRACK, eta=120.0, eta_low=30.0, eta_high=242.0), "🎯 ETA ≈ 2 min"),
        (
            summary_at(Verdict.ON_TRACK, eta=120.0, eta_algorithm=LONG_NAME, rate=0.001),
            f"🎯 ETA ≈ 2 min ({LONG_SHOWN}, +0.06/min)",
        ),
    ],
)
def test_the_cards_forecast_line(forecast: ForecastSummary | None, line: str) -> None:
    assert forecast_line(RUNNING_JOB, forecast, now=NOW) == line


def test_no_forecast_line_once_the_job_is_not_running() -> None:
    done = RUNNING_JOB.model_copy(update={"status": "FAILED"})
    assert forecast_line(done, summary_at(Verdict.ON_TRACK, eta=60.0), now=NOW) == ""


@pytest.mark.parametrize(
    ("lines", "budget", "limit", "folded"),
    [
        # each line costs its length + 1 of the budget; a text holds at most `limit` chars
        (["aaa", "bb"], 7, 3000, (["aaa\nbb"], 2)),  # exactly the budget
        (["aaa", "bbb"], 7, 3000, (["aaa"], 1)),
        (["aa", "bb"], 100, 5, (["aa\nbb"], 2)),  # exactly the limit
        (["aa", "bbb"], 100, 5, (["aa", "bbb"], 2)),
    ],
)
def test_fold(lines: list[str], budget: int, limit: int, folded: tuple[list[str], int]) -> None:
    assert fold(lines, budget=budget, limit=limit) == folded


def facts(message: Message) -> list[str]:
    return [field["text"] for field in message.blocks[1]["fields"]]


def test_the_cards_header_and_facts() -> None:
    card = render_card(scored(status="WEIRD"), now=NOW)
    assert card.blocks[0]["text"]["text"] == "❔ MathFi training · unknown status"
    assert facts(card) == [
        "*Job*\n`k`",
        "*Status*\n❔ WEIRD",
        "*Target*\n—",
        "*Best*\nno performance yet",
    ]
    card = render_card(scored((LONG_NAME, 0.5), target_performance=0.85), now=NOW)
    assert card.blocks[0]["text"]["text"] == "🏃 MathFi training · RUNNING"
    assert facts(card)[2:] == ["*Target*\n0.85", f"*Best*\n0.5000 by {LONG_SHOWN}"]


def test_only_a_completed_job_shows_its_champion() -> None:
    failed = scored(("A", 0.5), status="FAILED", model_key="m")
    assert not any("Champion model" in t for t in section_texts(render_card(failed, now=NOW)))


def test_the_cards_buttons() -> None:
    key = "k" * 2100
    extra = ButtonElement(text="Extra", action_id="extra", value="x")
    card = render_card(scored().model_copy(update={"job_key": key}), now=NOW, buttons=[extra])
    mute, unsubscribe, refresh, more = card.blocks[-1]["elements"]
    assert [b["value"] for b in (mute, unsubscribe, refresh)] == ["k" * 2000] * 3
    assert more["action_id"] == "extra"
    assert unsubscribe["confirm"] == {
        "title": {"type": "plain_text", "text": "Unsubscribe?", "emoji": True},
        "text": {"type": "mrkdwn", "text": f"Stop watching `{'k' * 59}…` in this channel?"},
        "confirm": {"type": "plain_text", "text": "Unsubscribe", "emoji": True},
        "deny": {"type": "plain_text", "text": "Keep watching", "emoji": True},
    }


@pytest.mark.parametrize(("channel", "place"), [("D0ALICE", "this DM"), ("C0TEST", "this channel")])
def test_the_cards_unsubscribe_asks_about_the_dm_or_the_channel(channel: str, place: str) -> None:
    card = render_card(scored(), now=NOW, channel_id=channel)
    unsubscribe = card.blocks[-1]["elements"][1]
    assert unsubscribe["confirm"]["text"]["text"] == f"Stop watching `k` in {place}?"


# ---- the card's building blocks at their edges ----------------------------------------
@pytest.mark.parametrize(
    ("escaped", "limit", "shown"),
    [
        ("abcdef", 6, "abcdef"),
        ("abcdefg", 6, "abcde…"),
        ("ab&amp;cdef", 5, "ab…"),  # never inside an entity
        ("&amp;x", 4, "…"),
        ("ab&lt;cd", 7, "ab&lt;…"),  # a whole entity stays
    ],
)
def test_cut(escaped: str, limit: int, shown: str) -> None:
    assert cut(escaped, limit) == shown


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "—"), (0.81234, "0.8123"), (999999.5, "999999.5000"), (1e6, "1e+06"),
     (1000000.5, "1e+06")],
)  # fmt: skip
def test_perf(value: float | None, text: str) -> None:
    assert perf(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.85, "0.85"), (0.8, "0.8"), (1.0, "1"), (999999.0, "999999"), (1e6, "1e+06"),
     (1000000.5, "1e+06")],
)  # fmt: skip
def test_target_text(value: float, text: str) -> None:
    assert target_text(value) == text


@pytest.mark.parametrize(
    ("channel_id", "start", "text"),
    [
        ("D0123ABCD", False, "this DM"),
        ("D0123ABCD", True, "This DM"),
        ("C0123ABCD", False, "this channel"),
        ("C0123ABCD", True, "This channel"),
        ("G0123ABCD", True, "This channel"),
        ("", False, "this channel"),
    ],
)
def test_here_names_a_dm_or_a_channel(channel_id: str, start: bool, text: str) -> None:
    assert here(channel_id, start=start) == text


def test_utc_stamp_is_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert utc_stamp(NOW) == "2023-11-14 22:13 UTC"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_context_and_message_limits() -> None:
    block = context(*["a" * 2500] * 12).to_dict()
    assert len(block["elements"]) == 10
    assert block["elements"][0]["text"] == "a" * 1999 + "…"
    message = to_message("t" * 3500, [section("s")] * 60)
    assert message.text == "t" * 2999 + "…"
    assert len(message.blocks) == 50


def test_algorithms_without_a_performance_come_last() -> None:
    snapshot = scored(("A", None), ("B", 0.0))
    lines = [t for t in section_texts(render_card(snapshot, now=NOW)) if "RUNNING" in t]
    assert lines[-1].index("`B`") < lines[-1].index("`A`")
    empty = render_card(scored(), now=NOW)
    assert "_No algorithm has reported yet._" in section_texts(empty)


def footer(message: Message) -> list[str]:
    (last,) = [b for b in message.blocks if b["type"] == "context"][-1:]
    return [element["text"] for element in last["elements"]]


def test_the_cards_footer() -> None:
    updated = "updated <!date^1700000000^{date_short_pretty} {time}|2023-11-14 22:13 UTC>"
    assert footer(render_card(RUNNING_JOB, now=NOW)) == [updated]
    assert footer(render_card(RUNNING_JOB, now=NOW, muted_until=NOW + 3600)) == [
        "🔕 muted until <!date^1700003600^{date_short_pretty} {time}|2023-11-14 23:13 UTC>: "
        "only terminal statuses are posted",
        updated,
    ]
    assert footer(render_card(RUNNING_JOB, now=NOW, muted_until=math.inf)) == [
        "🔕 muted: only terminal statuses are posted",
        updated,
    ]
    assert footer(render_card(RUNNING_JOB, now=math.nan)) == ["MathFi training job"]


# ---- the last survivors of render.py / card.py, word for word ---------------------------
def only(event: Event, snapshot: Snapshot | None = None) -> str:
    return render_notification([event], snapshot=snapshot or scored()).text


def test_single_event_lines() -> None:
    assert only(Event(kind=EventKind.JOB_STATUS, job_key="k", new_status="FAILED")) == (
        "❌ Job FAILED"
    )
    assert only(Event(kind=EventKind.ALGORITHM_STATUS, job_key="k", algorithm="A")) == ("⚙️ `A`: ")
    assert only(Event(kind=EventKind.ALGORITHM_STATUS, job_key="k", new_status="FAILED")) == (
        "⚙️ `?`: FAILED"
    )
    assert (
        only(
            Event(kind=EventKind.ALGORITHM_STATUS, job_key="k", algorithm=LONG_NAME, new_status="X")
        )
        == f"⚙️ {LONG_SHOWN}: X"
    )
    assert only(Event(kind=EventKind.UNREACHABLE, job_key="k")) == (
        "🔌 MathFi cannot reach this job"
    )


@pytest.mark.parametrize(
    ("performance", "previous", "delta"),
    [(0.9, 0.8, "+0.1000"), (2e6, 0.0, "+2e+06"), (1e6, 0.0, "+1e+06"), (1000000.5, 0.0, "+1e+06")],
)
def test_a_new_best_shows_its_gain(performance: float, previous: float, delta: str) -> None:
    event = Event(
        kind=EventKind.NEW_BEST,
        job_key="k",
        algorithm="A",
        performance=performance,
        previous_performance=previous,
    )
    assert only(event).endswith(f" by `A` ({delta})")


def test_no_events_no_notification() -> None:
    with pytest.raises(ValueError, match=r"^render_notification needs at least one event$"):
        render_notification([], snapshot=scored())


def test_updates_over_the_budget_are_counted() -> None:
    events = [
        Event(
            kind=EventKind.ALGORITHM_STATUS,
            job_key="k",
            algorithm=f"{n:02d}" + "a" * 70,
            new_status=f"S{n:02d}",
        )
        for n in range(60)
    ]
    headline = Event(kind=EventKind.RECOVERED, job_key="k")
    message = render_notification([headline, *events], snapshot=scored())
    shown = sum(text.count("\n") + 1 for text in section_texts(message)[1:])
    assert 0 < shown < 60
    notes = [e["text"] for b in message.blocks if b["type"] == "context" for e in b["elements"]]
    assert notes[0] == f"… and {60 - shown} more updates"


def test_a_miss_offers_the_retrain_button() -> None:
    missed = Event(kind=EventKind.JOB_STATUS, job_key="k", new_status="NOT_COMPLETED")
    message = render_notification([missed], snapshot=scored())
    assert [b["type"] for b in message.blocks] == ["section", "actions", "context"]
    assert render_notification([missed], snapshot=scored(), acting=True) == message


@pytest.mark.parametrize("broadcast", [False, True])
def test_a_miss_offers_no_retrain_when_acting_is_off(broadcast: bool) -> None:
    missed = Event(kind=EventKind.JOB_STATUS, job_key="k", new_status="NOT_COMPLETED")
    warned = Event(kind=EventKind.AT_RISK, job_key="k", target_performance=0.85, retry_at=0.75)
    for events in ([missed], [warned]):
        on = render_notification(events, snapshot=scored(), broadcast=broadcast)
        off = render_notification(events, snapshot=scored(), broadcast=broadcast, acting=False)
        assert [b for b in on.blocks if b["type"] != "actions"] == off.blocks
        assert "actions" in [b["type"] for b in on.blocks]
        assert off.text == on.text


def test_a_finished_jobs_last_improvement_that_is_no_time_is_a_dash() -> None:
    done = scored(("A", 0.5), status="FAILED", target_performance=1.0)
    card = render_card(done, now=NOW, last_improvement_at=math.nan)
    assert "*Progress* ▰▰▰▰▰▱▱▱▱▱ 50% · last improvement —" in section_texts(card)


def test_a_zero_performance_ranks_as_zero_and_no_history_draws_a_dot() -> None:
    card = render_card(scored(("A", 0.0), ("B", 0.5)), now=NOW)
    (lines,) = [t for t in section_texts(card) if "RUNNING" in t and "`B`" in t]
    assert lines.index("`B`") < lines.index("`A`")
    assert "`·` `A` *0.0000* · 🏃 RUNNING" in lines
