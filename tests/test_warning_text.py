"""`bot.slack.warning_text`: the forecast's warnings and MathFi's advice, word for word,
with each optional part present and absent."""

from __future__ import annotations

import pytest

from bot.core.events import Event, EventKind
from bot.slack.warning_text import (
    advice,
    at_risk,
    back_on_track,
    missed,
    stall,
    summary_notes,
    warning_line,
)

LONG = "a" * 80  # an algorithm name over MAX_NAME (60)
LONG_SHOWN = "`" + "a" * 59 + "…`"


def event(kind: EventKind, **fields: object) -> Event:
    return Event.model_validate({"kind": kind, "job_key": "job-1"} | fields)


def test_advice() -> None:
    assert advice(0.8) == "MathFi's advice: retrain at 0.80, then raise in 0.05 steps"


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({}, "⚠️ At risk: no algorithm is projected to reach the target"),
        (
            {"target_performance": 0.85, "best_projected": 0.812, "algorithm": "BSEV02"},
            "⚠️ At risk: no algorithm is projected to reach 0.85 (best projected 0.812 by `BSEV02`)",
        ),
        (
            {"target_performance": 0.85, "best_projected": 0.81},
            "⚠️ At risk: no algorithm is projected to reach 0.85 (best projected 0.81)",
        ),
        (
            {"best_projected": 0.81, "algorithm": LONG},
            "⚠️ At risk: no algorithm is projected to reach the target (best projected 0.81 "
            f"by {LONG_SHOWN})",
        ),
        (
            {"target_performance": 0.85, "retry_at": 0.8},
            "⚠️ At risk: no algorithm is projected to reach 0.85. MathFi's advice: retrain at "
            "0.80, then raise in 0.05 steps",
        ),
        (
            {"target_performance": 0.85, "stall_algorithm": LONG, "seconds_left": 600.0},
            "⚠️ At risk: no algorithm is projected to reach 0.85. "
            f"{LONG_SHOWN} may be stopped by the stall rule in about 10 min",
        ),
        # the stall part needs both the algorithm and the time left
        ({"target_performance": 0.85, "seconds_left": 600.0}, None),
        ({"target_performance": 0.85, "stall_algorithm": "BSEV01"}, None),
    ],
)
def test_at_risk(fields: dict[str, object], line: str | None) -> None:
    warning = event(EventKind.AT_RISK, **fields)
    expected = line or "⚠️ At risk: no algorithm is projected to reach 0.85"
    assert at_risk(warning) == expected
    assert warning_line(warning) == expected


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({}, "✅ Back on track: an algorithm is projected to reach the target"),
        (
            {"target_performance": 0.85, "algorithm": "BSEV02", "eta": 600.0},
            "✅ Back on track: `BSEV02` is projected to reach 0.85 (ETA ≈ 10 min)",
        ),
        (
            {"algorithm": LONG, "eta": 600.0, "best_projected": 0.9},
            f"✅ Back on track: {LONG_SHOWN} is projected to reach the target (ETA ≈ 10 min)",
        ),
        (
            {"target_performance": 0.85, "best_projected": 0.862},
            "✅ Back on track: an algorithm is projected to reach 0.85 (best projected 0.862)",
        ),
    ],
)
def test_back_on_track(fields: dict[str, object], line: str) -> None:
    warning = event(EventKind.BACK_ON_TRACK, **fields)
    assert back_on_track(warning) == line
    assert warning_line(warning) == line


WINDOW = {"gained": 0.004, "needed": 0.01, "window": 900.0}


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({}, "⏳ Stall ahead: `?` may be stopped soon"),
        (
            {"algorithm": LONG, "seconds_left": 45.0},
            f"⏳ Stall ahead: {LONG_SHOWN} may be stopped in about 45 s",
        ),
        (
            {"algorithm": "BSEV01", "seconds_left": 45.0} | WINDOW,
            "⏳ Stall ahead: `BSEV01` may be stopped in about 45 s (gained 0.004 of the 0.01 "
            "it needs over 15 min)",
        ),
        # the gain needs all three of gained, needed and window
        ({"algorithm": "BSEV01", "gained": 0.004, "needed": 0.01}, None),
        ({"algorithm": "BSEV01", "gained": 0.004, "window": 900.0}, None),
        ({"algorithm": "BSEV01", "needed": 0.01, "window": 900.0}, None),
    ],
)
def test_stall(fields: dict[str, object], line: str | None) -> None:
    warning = event(EventKind.STALL_WARNING, **fields)
    expected = line or "⏳ Stall ahead: `BSEV01` may be stopped soon"
    assert stall(warning) == expected
    assert warning_line(warning) == expected


def test_warning_line_is_none_for_other_kinds() -> None:
    assert warning_line(event(EventKind.NEW_BEST)) is None


def test_missed_adds_the_best_reached_and_the_advice() -> None:
    status = event(EventKind.JOB_STATUS, new_status="NOT_COMPLETED", performance=0.8123)
    assert missed(status) == ""
    assert missed(status.model_copy(update={"retry_at": 0.8})) == (
        ". Best reached 0.8123. MathFi's advice: retrain at 0.80, then raise in 0.05 steps"
    )


def test_summary_notes_in_order() -> None:
    events = [
        event(EventKind.BACK_ON_TRACK),
        event(EventKind.STALL_WARNING),
        event(EventKind.AT_RISK),
        event(EventKind.NEW_BEST),
        event(EventKind.JOB_STATUS, new_status="TIMED_OUT", retry_at=0.75),
        event(EventKind.JOB_STATUS, new_status="TIMED_OUT", retry_at=0.7),
    ]
    assert summary_notes(events) == [
        "⚠️ at risk",
        "⏳ stall ahead",
        "✅ on track",
        "retry at 0.75",
    ]
    assert summary_notes([event(EventKind.NEW_BEST)]) == []
    # the first status event tells the retry threshold
    assert summary_notes([event(EventKind.JOB_STATUS, new_status="FAILED"), *events[-2:]]) == []
