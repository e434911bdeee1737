"""Scripted MathFi timelines and the events each step must produce (the suite's oracle).

The oracle is written by construction, not by calling `bot.core.diff`: every step of `climb`
raises the best performance by `gain` (a new best), some steps retire an algorithm
(RUNNING -> NOT_COMPLETED), and the last step completes the job (status change, the
winner's status change, champion). An event is compared as (kind, algorithm, new status,
performance).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ALGORITHMS = ("BSEV01", "BSEV02", "BSIX01", "BFIF01")
MODEL_KEY = "5f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f"
TARGET = 0.95

Ev = tuple[str, str | None, str | None, float | None]


def progress(
    status: str, perfs: Mapping[str, float], statuses: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A progress payload as MathFi sends it (one entry per algorithm)."""
    jobs = [
        {
            "trainingJobKey": f"00000000-0000-4000-8000-00000000000{i}",
            "algorithm": name,
            "status": (statuses or {}).get(name, "RUNNING"),
            "latestPerformance": perfs[name],
            "recentPerformances": [perfs[name]],
        }
        for i, name in enumerate(ALGORITHMS)
    ]
    return {"status": status, "targetPerformance": TARGET, "jobs": jobs}


@dataclass(frozen=True)
class Timeline:
    payloads: list[dict[str, Any]]
    training: dict[str, Any]
    expected: list[list[Ev]]  # expected[i]: the events of moving to payloads[i + 1]

    @property
    def steps(self) -> int:
        return len(self.payloads) - 1


def climb(
    steps: int, *, start: float = 0.5, gain: float = 0.01, retire_at: Sequence[int] = (7, 14, 21)
) -> Timeline:
    """A RUNNING baseline, `steps - 1` RUNNING steps each a new best, then COMPLETED."""
    retire = {step: ALGORITHMS[-1 - n] for n, step in enumerate(retire_at) if step < steps}
    perfs = {name: round(start - 0.1 * i, 4) for i, name in enumerate(ALGORITHMS)}
    statuses = dict.fromkeys(ALGORITHMS, "RUNNING")
    payloads = [progress("RUNNING", perfs, statuses)]
    expected: list[list[Ev]] = []
    for step in range(1, steps):
        perfs["BSEV01"] = round(start + gain * step, 4)
        events: list[Ev] = []
        if step in retire:
            statuses[retire[step]] = "NOT_COMPLETED"
            events.append(("algorithm_status", retire[step], "NOT_COMPLETED", None))
        events.append(("new_best", "BSEV01", None, perfs["BSEV01"]))
        payloads.append(progress("RUNNING", perfs, statuses))
        expected.append(events)
    final = round(start + gain * steps, 4)
    perfs["BSEV01"], statuses["BSEV01"] = final, "COMPLETED"
    payloads.append(progress("COMPLETED", perfs, statuses))
    expected.append(completion(final))
    training = {
        "achievedPerformance": final,
        "trainingPerformance": round(final + 0.01, 4),
        "testPerformance": round(final - 0.01, 4),
        "modelKey": MODEL_KEY,
    }
    return Timeline(payloads, training, expected)


def completion(final: float, *, winner: str = "BSEV01") -> list[Ev]:
    """RUNNING -> COMPLETED in one reply: the job, the winner, the champion."""
    return [
        ("job_status", None, "COMPLETED", None),
        ("algorithm_status", winner, "COMPLETED", None),
        ("champion", winner, None, final),
    ]


def events_of(payload: str) -> list[Ev]:
    """The events of one outbox row's JSON payload, as comparable tuples."""
    return [
        (e["kind"], e.get("algorithm"), e.get("new_status"), e.get("performance"))
        for e in json.loads(payload).get("events", [])
    ]


def assert_exactly_once(
    rows: Sequence[Mapping[str, Any]],
    *,
    card_ids: Sequence[int],
    note_ids: Sequence[int],
    expected: Sequence[Sequence[Ev]],
) -> None:
    """The outbox holds the watch row plus exactly the expected events, all sent; Slack
    holds the card once (for the watch row) and one reply per other row, in outbox order
    within a priority (issue #18: an alert may overtake queued progress), but for progress
    a later final reply of the job carried (`carried_by`: said in the carrier's reply)."""
    assert [r["kind"] for r in rows[:1]] == ["watch_started"], rows[:1]
    got = [events_of(str(r["payload"])) for r in rows[1:]]
    assert got == [list(e) for e in expected], "outbox events differ from the script"
    assert {r["state"] for r in rows} == {"sent"}, [(r["id"], r["state"]) for r in rows]
    assert list(card_ids) == [rows[0]["id"]], card_ids
    alone = [r for r in rows[1:] if r.get("carried_by") is None]
    assert sorted(note_ids) == [r["id"] for r in alone], note_ids
    for priority in {r.get("priority") for r in alone}:
        same = [
            i for i in note_ids if i in {r["id"] for r in alone if r.get("priority") == priority}
        ]
        assert same == sorted(same), note_ids
    for row in rows[1:]:
        if row.get("carried_by") is not None:
            assert row["carried_by"] in note_ids and row["carried_by"] > row["id"], row
