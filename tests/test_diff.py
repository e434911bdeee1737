"""bot.core.diff: parametrized tables, the MathFi seed payload, and hypothesis properties."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.diff import (
    DiffOptions,
    best_reached,
    diff,
    filter_for_subscription,
    headline_kind,
    job_recovered,
    job_unreachable,
    snapshot_hash,
)
from bot.core.events import Event, EventKind
from bot.core.models import (
    ALERT_STATUSES,
    TRAINING_STATUSES,
    AlgorithmProgress,
    Snapshot,
    TrainingJob,
    TrainingProgress,
    is_terminal,
)
from tests.scripts import REFERENCE_PROGRESS

KEY = "job-1"
K = EventKind


def algo(name: str, status: str, latest: float | None = None, *recent: float) -> AlgorithmProgress:
    return AlgorithmProgress(
        algorithm=name, status=status, latest_performance=latest, recent_performances=recent
    )


def snap(status: str, *algorithms: AlgorithmProgress, **extra: Any) -> Snapshot:
    extra.setdefault("target_performance", 0.9)
    return Snapshot(job_key=KEY, status=status, algorithms=algorithms, **extra)


def job_status(old: str, new: str, target: float | None = 0.9) -> Event:
    return Event(
        kind=K.JOB_STATUS, job_key=KEY, old_status=old, new_status=new, target_performance=target
    )


def algo_status(name: str, old: str | None, new: str) -> Event:
    return Event(
        kind=K.ALGORITHM_STATUS, job_key=KEY, algorithm=name, old_status=old, new_status=new
    )


def new_best(name: str, performance: float, previous: float | None) -> Event:
    return Event(
        kind=K.NEW_BEST,
        job_key=KEY,
        algorithm=name,
        performance=performance,
        previous_performance=previous,
        target_performance=0.9,
    )


def champion(name: str | None, performance: float | None, model_key: str | None = None) -> Event:
    return Event(
        kind=K.CHAMPION,
        job_key=KEY,
        algorithm=name,
        performance=performance,
        target_performance=0.9,
        model_key=model_key,
    )


A_RUN = algo("BSEV01", "RUNNING", 0.80, 0.79, 0.80)
B_RUN = algo("BSEV02", "RUNNING", 0.70, 0.70)

CASES: list[tuple[str, Snapshot | None, Snapshot, DiffOptions, list[Event]]] = [
    ("no previous snapshot", None, snap("RUNNING", A_RUN), DiffOptions(), []),
    ("unchanged", snap("RUNNING", A_RUN), snap("RUNNING", A_RUN), DiffOptions(), []),
    (
        "pending to running",
        snap("PENDING"),
        snap("RUNNING"),
        DiffOptions(),
        [job_status("PENDING", "RUNNING")],
    ),
    (
        "running to failed with algorithms failing",
        snap("RUNNING", A_RUN),
        snap("FAILED", algo("BSEV01", "FAILED", 0.80)),
        DiffOptions(),
        [job_status("RUNNING", "FAILED"), algo_status("BSEV01", "RUNNING", "FAILED")],
    ),
    (
        "algorithm status only",
        snap("RUNNING", A_RUN, B_RUN),
        snap("RUNNING", A_RUN, algo("BSEV02", "NOT_COMPLETED", 0.70)),
        DiffOptions(),
        [algo_status("BSEV02", "RUNNING", "NOT_COMPLETED")],
    ),
    (
        "algorithm appears",
        snap("RUNNING", A_RUN),
        snap("RUNNING", A_RUN, B_RUN),
        DiffOptions(),
        [algo_status("BSEV02", None, "RUNNING")],
    ),
    (
        "an algorithm that appears without a status is not news",
        snap("RUNNING", A_RUN),
        snap("RUNNING", A_RUN, algo("BSEV02", "")),
        DiffOptions(),
        [],
    ),
    (
        "algorithm disappears",
        snap("RUNNING", A_RUN, B_RUN),
        snap("RUNNING", A_RUN),
        DiffOptions(),
        [],
    ),
    (
        "new best",
        snap("RUNNING", A_RUN, B_RUN),
        snap("RUNNING", A_RUN, algo("BSEV02", "RUNNING", 0.83)),
        DiffOptions(),
        [new_best("BSEV02", 0.83, 0.80)],
    ),
    (
        "noise below min_improvement",
        snap("RUNNING", A_RUN),
        snap("RUNNING", algo("BSEV01", "RUNNING", 0.804)),
        DiffOptions(),
        [],
    ),
    (
        "exactly min_improvement",
        snap("RUNNING", A_RUN),
        snap("RUNNING", algo("BSEV01", "RUNNING", 0.805)),
        DiffOptions(),
        [new_best("BSEV01", 0.805, 0.80)],
    ),
    (
        # 0.75 - 0.5 is exactly min_improvement less the 1e-9 float tolerance: still a gain
        "a gain at the edge of the float tolerance",
        snap("RUNNING", algo("BSEV01", "RUNNING", 0.5)),
        snap("RUNNING", algo("BSEV01", "RUNNING", 0.75)),
        DiffOptions(min_improvement=0.250000001),
        [new_best("BSEV01", 0.75, 0.5)],
    ),
    (
        "custom min_improvement",
        snap("RUNNING", A_RUN),
        snap("RUNNING", algo("BSEV01", "RUNNING", 0.83)),
        DiffOptions(min_improvement=0.05),
        [],
    ),
    (
        "zero min_improvement still needs a gain",
        snap("RUNNING", A_RUN),
        snap("RUNNING", A_RUN, algo("BSEV02", "RUNNING", 0.80)),
        DiffOptions(min_improvement=0.0),
        [algo_status("BSEV02", None, "RUNNING")],
    ),
    (
        "performance drop",
        snap("RUNNING", A_RUN),
        snap("RUNNING", algo("BSEV01", "RUNNING", 0.60)),
        DiffOptions(),
        [],
    ),
    (
        "reference_best holds back creeping gains",
        snap("RUNNING", algo("BSEV01", "RUNNING", 0.849)),
        snap("RUNNING", algo("BSEV01", "RUNNING", 0.853)),
        DiffOptions(reference_best=0.85),
        [],
    ),
    (
        "reference_best sums small steps",
        snap("RUNNING", algo("BSEV01", "RUNNING", 0.853)),
        snap("RUNNING", algo("BSEV01", "RUNNING", 0.856)),
        DiffOptions(reference_best=0.85),
        [new_best("BSEV01", 0.856, 0.85)],
    ),
    (
        "first best after no values",
        snap("RUNNING", algo("BSEV01", "RUNNING")),
        snap("RUNNING", algo("BSEV01", "RUNNING", 0.51, 0.51)),
        DiffOptions(),
        [new_best("BSEV01", 0.51, None)],
    ),
    (
        "jump running to completed",
        snap("RUNNING", A_RUN, B_RUN),
        snap(
            "COMPLETED",
            algo("BSEV01", "NOT_COMPLETED", 0.85),
            algo("BSEV02", "COMPLETED", 0.93),
            model_key="model-9",
            achieved_performance=0.931,
        ),
        DiffOptions(),
        [
            job_status("RUNNING", "COMPLETED"),
            algo_status("BSEV01", "RUNNING", "NOT_COMPLETED"),
            algo_status("BSEV02", "RUNNING", "COMPLETED"),
            champion("BSEV02", 0.931, "model-9"),
        ],
    ),
    (
        "jump pending to completed",
        snap("PENDING"),
        snap("COMPLETED", algo("BSEV01", "COMPLETED", 0.91)),
        DiffOptions(),
        [
            job_status("PENDING", "COMPLETED"),
            algo_status("BSEV01", None, "COMPLETED"),
            champion("BSEV01", 0.91),
        ],
    ),
    (
        "the COMPLETED algorithm is the champion, even when another scored higher",
        snap("RUNNING", A_RUN, B_RUN),
        snap(
            "COMPLETED",
            algo("BSEV01", "NOT_COMPLETED", 0.88),
            algo("BSEV02", "COMPLETED", 0.86),
        ),
        DiffOptions(),
        [
            job_status("RUNNING", "COMPLETED"),
            algo_status("BSEV01", "RUNNING", "NOT_COMPLETED"),
            algo_status("BSEV02", "RUNNING", "COMPLETED"),
            champion("BSEV02", 0.86),
        ],
    ),
    (
        "completed without a completed algorithm crowns the best",
        snap("RUNNING", A_RUN, B_RUN),
        snap("COMPLETED", A_RUN, B_RUN),
        DiffOptions(),
        [job_status("RUNNING", "COMPLETED"), champion("BSEV01", 0.80)],
    ),
    (
        "completed with no algorithms at all",
        snap("RUNNING"),
        snap("COMPLETED"),
        DiffOptions(),
        [job_status("RUNNING", "COMPLETED"), champion(None, None)],
    ),
    (
        "completed stays completed",
        snap("COMPLETED", algo("BSEV01", "COMPLETED", 0.91)),
        snap("COMPLETED", algo("BSEV01", "COMPLETED", 0.91)),
        DiffOptions(),
        [],
    ),
    (
        "unknown statuses are just strings",
        snap("PAUSED", algo("BSEV01", "WARMING_UP", 0.80)),
        snap("RUNNING", algo("BSEV01", "PROCESSING", 0.80)),
        DiffOptions(),
        [job_status("PAUSED", "RUNNING"), algo_status("BSEV01", "WARMING_UP", "PROCESSING")],
    ),
    (
        "no performances anywhere",
        snap("RUNNING", algo("BSEV01", "RUNNING")),
        snap("RUNNING", algo("BSEV01", "RUNNING")),
        DiffOptions(),
        [],
    ),
]


@pytest.mark.parametrize(
    ("previous", "current", "options", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_diff_table(
    previous: Snapshot | None, current: Snapshot, options: DiffOptions, expected: list[Event]
) -> None:
    assert diff(previous, current, options) == expected


@pytest.mark.parametrize(
    "entry",
    [
        {"algorithm": "BSEV01", "status": "RUNNING"},
        {"algorithm": "BSEV01", "status": "RUNNING", "recentPerformances": None},
        {"algorithm": "BSEV01", "status": "RUNNING", "recentPerformances": []},
        {"algorithm": "BSEV01", "status": "RUNNING", "latestPerformance": None},
    ],
    ids=["missing", "null", "empty", "null latest"],
)
def test_missing_or_empty_performances(entry: dict[str, Any]) -> None:
    before = Snapshot.from_api(KEY, TrainingProgress.model_validate({"status": "PENDING"}))
    progress = TrainingProgress.model_validate({"status": "RUNNING", "jobs": [entry]})
    current = Snapshot.from_api(KEY, progress)
    assert diff(before, current) == [
        job_status("PENDING", "RUNNING", target=None),
        Event(
            kind=K.ALGORITHM_STATUS,
            job_key=KEY,
            algorithm="BSEV01",
            old_status=None,
            new_status="RUNNING",
        ),
    ]
    assert diff(current, current) == []


SEED_PROGRESS = REFERENCE_PROGRESS
SEED_ORDER = ("BSEV01", "BFIF01", "BSIX01", "BSEV02")


def running_predecessor() -> Snapshot:
    values = {"BSEV01": 0.6199, "BFIF01": 0.77, "BSIX01": 0.85, "BSEV02": 0.90}
    return snap("RUNNING", *(algo(name, "RUNNING", values[name]) for name in SEED_ORDER))


@pytest.mark.parametrize("with_summary", [True, False], ids=["with summary", "progress only"])
def test_seed_payload_completed_with_champion(with_summary: bool) -> None:
    progress = TrainingProgress.model_validate(SEED_PROGRESS)
    summary = TrainingJob.model_validate(
        {
            "trainingJobKey": KEY,
            "datasetKey": "dataset-1",
            "status": "COMPLETED",
            "targetPerformance": 0.9,
            "modelKey": "model-42",
        }
    )
    current = Snapshot.from_api(KEY, progress, summary if with_summary else None)
    events = diff(running_predecessor(), current)
    target = 0.9 if with_summary else None
    assert events == [
        job_status("RUNNING", "COMPLETED", target=target),
        *(algo_status(name, "RUNNING", "NOT_COMPLETED") for name in SEED_ORDER[:3]),
        algo_status("BSEV02", "RUNNING", "COMPLETED"),
        Event(
            kind=K.CHAMPION,
            job_key=KEY,
            algorithm="BSEV02",
            performance=0.92,
            target_performance=target,
            model_key="model-42" if with_summary else None,
        ),
    ]
    assert headline_kind(events) is K.CHAMPION


# -- filter_for_subscription ------------------------------------------------------------

WATCH = Event(kind=K.WATCH_STARTED, job_key=KEY)
TO_RUNNING = job_status("PENDING", "RUNNING")
TO_FAILED = job_status("RUNNING", "FAILED")
TO_CANCELLED = job_status("RUNNING", "CANCELLED")
ALGO = algo_status("BSEV01", "RUNNING", "NOT_COMPLETED")
BEST = new_best("BSEV01", 0.9, 0.8)
CHAMP = champion("BSEV01", 0.9)
DOWN = job_unreachable(KEY, "HTTP 503")
UP = job_recovered(KEY)
ALL = [WATCH, TO_RUNNING, TO_FAILED, TO_CANCELLED, ALGO, BEST, CHAMP, DOWN, UP]


@pytest.mark.parametrize(
    ("events_filter", "muted_until", "expected"),
    [
        ("all", None, ALL),
        ("status", None, [WATCH, TO_RUNNING, TO_FAILED, TO_CANCELLED, CHAMP, DOWN, UP]),
        ("failures", None, [WATCH, TO_FAILED, DOWN, UP]),  # told it is down, told it is back
        ("all", 2000.0, [WATCH, TO_FAILED, TO_CANCELLED, CHAMP, DOWN, UP]),  # mute: progress
        ("status", 2000.0, [WATCH, TO_FAILED, TO_CANCELLED, CHAMP, DOWN, UP]),
        ("failures", 2000.0, [WATCH, TO_FAILED, DOWN, UP]),
        ("all", 1000.0, ALL),  # a mute ending now is over
        ("all", 10.0, ALL),
    ],
)
def test_filter_for_subscription(
    events_filter: str, muted_until: float | None, expected: list[Event]
) -> None:
    got = filter_for_subscription(
        ALL, events_filter=events_filter, muted_until=muted_until, now=1000.0
    )
    assert got == expected


def test_filter_rejects_unknown_filter() -> None:
    with pytest.raises(ValueError, match="bogus"):
        filter_for_subscription(ALL, events_filter="bogus", muted_until=None, now=0.0)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (ALL, K.JOB_STATUS),  # the job FAILED: an alert heads even the champion
        ([CHAMP, TO_RUNNING, DOWN], K.CHAMPION),
        ([TO_RUNNING, DOWN], K.UNREACHABLE),  # losing the job is an alert
        ([ALGO, BEST, TO_RUNNING], K.JOB_STATUS),
        ([UP, DOWN, WATCH], K.UNREACHABLE),
        ([WATCH, UP], K.RECOVERED),
        ([ALGO, BEST], K.NEW_BEST),
        ([ALGO, WATCH], K.WATCH_STARTED),
        ([ALGO], K.ALGORITHM_STATUS),
        ([WATCH], K.WATCH_STARTED),
    ],
)
def test_headline_kind(events: list[Event], expected: EventKind) -> None:
    assert headline_kind(events) is expected


def test_headline_kind_needs_events() -> None:
    with pytest.raises(ValueError, match=r"^headline_kind needs at least one event$"):
        headline_kind([])


def test_unreachable_and_recovered_events() -> None:
    assert job_unreachable("j", "HTTP 404") == Event(
        kind=K.UNREACHABLE, job_key="j", reason="HTTP 404"
    )
    assert job_recovered("j") == Event(kind=K.RECOVERED, job_key="j")


def test_snapshot_hash_follows_content() -> None:
    one = snap("RUNNING", A_RUN)
    assert snapshot_hash(one) == snapshot_hash(snap("RUNNING", A_RUN))
    assert len(snapshot_hash(one)) == 64
    assert snapshot_hash(one) != snapshot_hash(snap("RUNNING", algo("BSEV01", "RUNNING", 0.81)))


# -- properties ---------------------------------------------------------------------------

STATUSES = st.sampled_from([*TRAINING_STATUSES, "PAUSED", "PROCESSING"])
PERFORMANCE = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
ALGORITHMS = st.builds(
    AlgorithmProgress,
    algorithm=st.sampled_from(SEED_ORDER),
    status=STATUSES,
    latest_performance=st.none() | PERFORMANCE,
    recent_performances=st.lists(PERFORMANCE, max_size=5).map(tuple),
)
SNAPSHOTS = st.builds(
    Snapshot,
    job_key=st.just(KEY),
    status=STATUSES,
    target_performance=st.none() | PERFORMANCE,
    algorithms=st.lists(ALGORITHMS, max_size=4).map(tuple),
    model_key=st.none() | st.just("model-1"),
    achieved_performance=st.none() | PERFORMANCE,
)
OPTIONS = st.builds(
    DiffOptions,
    min_improvement=st.floats(min_value=0.0, max_value=0.1, allow_nan=False),
    reference_best=st.none() | PERFORMANCE,
)
KIND_RANK = {K.JOB_STATUS: 0, K.ALGORITHM_STATUS: 1, K.NEW_BEST: 2, K.CHAMPION: 2}


@given(SNAPSHOTS, st.floats(min_value=0.0, max_value=0.1, allow_nan=False))
def test_same_snapshot_has_no_events(snapshot: Snapshot, min_improvement: float) -> None:
    assert diff(snapshot, snapshot, DiffOptions(min_improvement=min_improvement)) == []


@given(SNAPSHOTS, SNAPSHOTS, OPTIONS)
def test_diff_is_deterministic_and_ordered(
    previous: Snapshot, current: Snapshot, options: DiffOptions
) -> None:
    events = diff(previous, current, options)
    assert events == diff(previous, current, options)
    assert diff(None, current, options) == []
    ranks = [KIND_RANK[event.kind] for event in events]
    assert ranks == sorted(ranks)
    kinds = [event.kind for event in events]
    assert not (K.NEW_BEST in kinds and K.CHAMPION in kinds)
    assert kinds.count(K.JOB_STATUS) <= 1
    assert kinds.count(K.CHAMPION) <= 1


@settings(max_examples=150)
@given(st.lists(SNAPSHOTS, min_size=2, max_size=8))
def test_transitions_reported_once_and_job_statuses_chain(snapshots: list[Snapshot]) -> None:
    job_events: list[Event] = []
    for previous, current in pairwise(snapshots):
        events = diff(previous, current)
        transitions = [
            (event.kind, event.algorithm, event.old_status, event.new_status)
            for event in events
            if event.kind in (K.JOB_STATUS, K.ALGORITHM_STATUS)
        ]
        assert len(transitions) == len(set(transitions))
        assert all(old != new for _, _, old, new in transitions)
        job_events.extend(event for event in events if event.kind is K.JOB_STATUS)
    if not job_events:
        assert {snapshot.status for snapshot in snapshots} == {snapshots[0].status}
        return
    assert job_events[0].old_status == snapshots[0].status
    assert job_events[-1].new_status == snapshots[-1].status
    for before, after in pairwise(job_events):
        assert before.new_status == after.old_status


EVENTS = st.lists(st.sampled_from(ALL), max_size=12)
FILTERS = st.sampled_from(["all", "status", "failures"])


@given(EVENTS, FILTERS, st.none() | st.floats(min_value=0.0, max_value=2000.0))
def test_filter_properties(events: list[Event], events_filter: str, muted: float | None) -> None:
    now = 1000.0
    got = filter_for_subscription(events, events_filter=events_filter, muted_until=muted, now=now)
    remaining = iter(events)
    assert all(any(event is other for other in remaining) for event in got)  # a subsequence
    unmuted = filter_for_subscription(
        events, events_filter=events_filter, muted_until=None, now=now
    )
    if muted is None or muted <= now:
        assert got == unmuted
    else:
        assert [e for e in unmuted if e in got] == got
        for event in got:
            if event.kind is K.JOB_STATUS:
                assert event.new_status is not None and is_terminal(event.new_status)
            else:
                assert event.kind in (K.CHAMPION, K.WATCH_STARTED, K.UNREACHABLE, K.RECOVERED)
    by_filter = {
        name: filter_for_subscription(events, events_filter=name, muted_until=muted, now=now)
        for name in ("all", "status", "failures")
    }
    assert all(event in by_filter["status"] for event in by_filter["failures"])
    assert all(event in by_filter["all"] for event in by_filter["status"])
    for event in by_filter["failures"]:
        if event.kind is K.JOB_STATUS:
            assert event.new_status in ALERT_STATUSES


@pytest.mark.parametrize(
    ("algorithms", "achieved", "expected"),
    [
        ((), None, None),  # nothing measured yet: no best to advise from
        ((algo("A", "NOT_COMPLETED", None),), None, None),
        (
            (algo("A", "NOT_COMPLETED", 0.70, 0.72, 0.71),),
            None,
            0.72,
        ),  # a recent value beats the latest
        ((algo("A", "TIMED_OUT", 0.70), algo("B", "NOT_COMPLETED", 0.75)), None, 0.75),
        ((algo("A", "COMPLETED", 0.80),), 0.86, 0.86),  # MathFi's achieved value counts
        ((algo("A", "COMPLETED", 0.90),), 0.86, 0.90),
    ],
)
def test_best_reached_is_the_highest_value_any_algorithm_reached(
    algorithms: tuple[AlgorithmProgress, ...], achieved: float | None, expected: float | None
) -> None:
    snapshot = Snapshot(
        job_key="J", status="NOT_COMPLETED", algorithms=algorithms, achieved_performance=achieved
    )
    assert best_reached(snapshot) == expected
