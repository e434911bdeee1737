"""bot.core.fanout: who hears what after one poll. Pure tables: no simulator, no Slack sink."""

from __future__ import annotations

import pytest

from bot.core.events import Event, EventKind, EventsFilter
from bot.core.fanout import Recipient, Unreachable, fan_out, watch_started
from bot.core.models import AlgorithmProgress, Snapshot
from bot.core.notification import Notification, read_notification
from store.migrations import EVENT_FILTERS as STORE_EVENT_FILTERS

KEY = "job-1"
NOW = 1000.0
K = EventKind
ONCALL = "<!subteam^S0ONCALL|@oncall>"


def snap(status: str, best: float | None = None, *, algo_status: str = "RUNNING") -> Snapshot:
    algorithms = (
        AlgorithmProgress(algorithm="BSEV01", status=algo_status, latest_performance=best),
    )
    return Snapshot(job_key=KEY, status=status, target_performance=0.9, algorithms=algorithms)


def sub(
    id: int,
    channel: str,
    *,
    events: EventsFilter = EventsFilter.ALL,
    min_improvement: float = 0.005,
    last_best: float | None = None,
    muted_until: float | None = None,
    mention: str | None = None,
) -> Recipient:
    return Recipient(
        id=id,
        channel_id=channel,
        events=events,
        min_improvement=min_improvement,
        last_best=last_best,
        muted_until=muted_until,
        mention=mention,
    )


def heard(notifications: list[Notification]) -> dict[str, list[EventKind]]:
    """channel -> the kinds of the events it is told, in order."""
    return {n.channel_id: [e.kind for e in n.events] for n in notifications}


RUN_80 = snap("RUNNING", 0.80)
RUN_82 = snap("RUNNING", 0.82)
RUN_90 = snap("RUNNING", 0.90)
FAILED_82 = snap("FAILED", 0.82, algo_status="FAILED")
CANCELLED_80 = snap("CANCELLED", 0.80)
MUTED = NOW + 600.0

CASES: list[
    tuple[str, Snapshot | None, Snapshot, list[Recipient], bool, dict[str, list[EventKind]]]
] = [
    (
        "two channels, different --min-improvement: only the patient one misses +0.02",
        RUN_80,
        RUN_82,
        [sub(1, "C1", min_improvement=0.01), sub(2, "C2", min_improvement=0.05)],
        False,
        {"C1": [K.NEW_BEST]},
    ),
    (
        "both hear a gain above both thresholds",
        RUN_80,
        RUN_90,
        [sub(1, "C1", min_improvement=0.01), sub(2, "C2", min_improvement=0.05)],
        False,
        {"C1": [K.NEW_BEST], "C2": [K.NEW_BEST]},
    ),
    (
        "a muted channel still hears FAILED, not the algorithm's progress",
        RUN_80,
        FAILED_82,
        [sub(1, "C1"), sub(2, "C2", muted_until=MUTED)],
        False,
        {"C1": [K.JOB_STATUS, K.ALGORITHM_STATUS, K.NEW_BEST], "C2": [K.JOB_STATUS]},
    ),
    (
        "a mute that has ended is over",
        RUN_80,
        RUN_90,
        [sub(1, "C1", muted_until=NOW)],
        False,
        {"C1": [K.NEW_BEST]},
    ),
    (
        "a muted channel hears nothing of progress",
        RUN_80,
        RUN_90,
        [sub(1, "C1", muted_until=MUTED)],
        False,
        {},
    ),
    (
        "--events: status hears the status, failures the failure, all everything",
        RUN_80,
        FAILED_82,
        [
            sub(1, "CALL", events=EventsFilter.ALL),
            sub(2, "CSTATUS", events=EventsFilter.STATUS),
            sub(3, "CFAIL", events=EventsFilter.FAILURES),
        ],
        False,
        {
            "CALL": [K.JOB_STATUS, K.ALGORITHM_STATUS, K.NEW_BEST],
            "CSTATUS": [K.JOB_STATUS],
            "CFAIL": [K.JOB_STATUS],
        },
    ),
    (
        "--events failures: a cancelled job is no failure",
        RUN_80,
        CANCELLED_80,
        [
            sub(1, "CSTATUS", events=EventsFilter.STATUS),
            sub(2, "CFAIL", events=EventsFilter.FAILURES),
        ],
        False,
        {"CSTATUS": [K.JOB_STATUS]},
    ),
    (
        "last-announced best: measured from what the channel was told, not the last poll",
        RUN_82,
        RUN_90,
        [sub(1, "C1", last_best=0.80), sub(2, "C2", last_best=0.897), sub(3, "C3")],
        False,
        {"C1": [K.NEW_BEST], "C3": [K.NEW_BEST]},
    ),
    (
        "last-announced best: slow gains add up to an announcement",
        RUN_82,
        snap("RUNNING", 0.84),
        [sub(1, "C1", min_improvement=0.03, last_best=0.80)],
        False,
        {"C1": [K.NEW_BEST]},
    ),
    (
        "recovered: told first, whatever the filter or the mute",
        RUN_80,
        RUN_80,
        [
            sub(1, "C1"),
            sub(2, "CFAIL", events=EventsFilter.FAILURES),
            sub(3, "CMUTED", muted_until=MUTED),
        ],
        True,
        {"C1": [K.RECOVERED], "CFAIL": [K.RECOVERED], "CMUTED": [K.RECOVERED]},
    ),
    (
        "recovered with news: the news follows the recovery",
        RUN_80,
        RUN_90,
        [sub(1, "C1"), sub(2, "CMUTED", muted_until=MUTED)],
        True,
        {"C1": [K.RECOVERED, K.NEW_BEST], "CMUTED": [K.RECOVERED]},
    ),
    ("no previous snapshot: nothing to tell", None, RUN_90, [sub(1, "C1")], False, {}),
]


@pytest.mark.parametrize(
    ("previous", "current", "subs", "recovered", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_who_hears_what(
    previous: Snapshot | None,
    current: Snapshot,
    subs: list[Recipient],
    recovered: bool,
    expected: dict[str, list[EventKind]],
) -> None:
    told = fan_out(previous, current, subs, NOW, version=7, recovered=recovered)
    assert heard(told) == expected
    for notification in told:
        assert notification.snapshot == current  # the reply is drawn from what the poll saw
        assert notification.dedupe_key == f"{KEY}:v7:{notification.channel_id}"


def test_each_notification_names_its_subscription_mention_headline_and_new_best() -> None:
    subs = [sub(1, "C1", mention=ONCALL), sub(2, "C2", min_improvement=0.05)]
    one, two = fan_out(RUN_80, FAILED_82, subs, NOW, version=3)
    assert (one.subscription_id, one.channel_id, one.job_key, one.mention) == (1, "C1", KEY, ONCALL)
    assert one.headline is K.JOB_STATUS  # FAILED heads the algorithm and the new best
    assert one.new_best == 0.82
    assert (two.subscription_id, two.mention, two.new_best) == (2, None, None)
    assert [e.kind for e in two.events] == [K.JOB_STATUS, K.ALGORITHM_STATUS]


@pytest.mark.parametrize(
    "recipient",
    [
        sub(1, "C1"),
        sub(1, "C1", events=EventsFilter.STATUS),
        sub(1, "C1", events=EventsFilter.FAILURES),
        sub(1, "C1", muted_until=MUTED),
    ],
    ids=["all", "status", "failures", "muted"],
)
def test_unreachable_reaches_every_filter_and_mute(recipient: Recipient) -> None:
    lost = Unreachable(KEY, "HTTP 503")
    (notification,) = fan_out(RUN_80, lost, [recipient], NOW, version=4)
    assert notification.events == (Event(kind=K.UNREACHABLE, job_key=KEY, reason="HTTP 503"),)
    assert notification.headline is K.UNREACHABLE
    assert notification.snapshot is None  # nothing new was seen: drawn from the store
    assert notification.dedupe_key == f"{KEY}:v4:unreachable:C1"


def test_unreachable_does_not_diff_against_the_last_announced_best() -> None:
    # The last poll's best (0.90) is far above what C1 was last told (0.80): a diff would
    # announce a new best, but an unreachable job has shown nothing new.
    told = fan_out(
        RUN_90, Unreachable(KEY, "timeout"), [sub(1, "C1", last_best=0.80)], NOW, version=2
    )
    assert heard(told) == {"C1": [K.UNREACHABLE]}


def test_the_first_card() -> None:
    card = watch_started(KEY, "C1", mention=ONCALL, now=1234.5, nonce="ab12")
    assert card.events == (Event(kind=K.WATCH_STARTED, job_key=KEY),)
    assert card.headline is K.WATCH_STARTED and card.snapshot is None
    assert card.subscription_id is None and card.mention == ONCALL
    assert card.dedupe_key == f"{KEY}:watch:C1:1234.500000:ab12"


def test_the_store_accepts_exactly_the_core_filters() -> None:
    # The store cannot import the core; its CHECK constraint keeps its own list.
    assert set(STORE_EVENT_FILTERS) == {f.value for f in EventsFilter}


# --- the forecast's warnings (issue #12): the job's, told through each filter and mute ---
AT_RISK = Event(
    kind=K.AT_RISK, job_key=KEY, algorithm="BSIX01", best_projected=0.81,
    target_performance=0.9, retry_at=0.8,
)  # fmt: skip
BACK = Event(kind=K.BACK_ON_TRACK, job_key=KEY, algorithm="BSEV01", target_performance=0.9)
STALL = Event(
    kind=K.STALL_WARNING, job_key=KEY, algorithm="BSEV01", seconds_left=170.0,
    gained=0.004, needed=0.02, window=300.0,
)  # fmt: skip
ALL, STATUS, FAILURES = EventsFilter.ALL, EventsFilter.STATUS, EventsFilter.FAILURES

# (warning, filter, muted, what the channel hears of a poll that only brought the warning)
WARNING_CASES = [
    (warning, events_filter, muted, [warning.kind] if heard_it else [])
    for warning in (AT_RISK, BACK, STALL)
    for events_filter, muted, heard_it in (
        (ALL, False, True),
        (FAILURES, False, True),
        (STATUS, False, False),
        (ALL, True, False),  # progress, for mute: at_risk, stall, and back_on_track alike
        (FAILURES, True, False),
    )
]


@pytest.mark.parametrize(
    ("warning", "events_filter", "muted", "expected"),
    WARNING_CASES,
    ids=[f"{w.kind}-{f}-{'muted' if m else 'open'}" for w, f, m, _ in WARNING_CASES],
)
def test_warnings_through_filters_and_mute(
    warning: Event, events_filter: EventsFilter, muted: bool, expected: list[EventKind]
) -> None:
    recipient = sub(1, "C1", events=events_filter, muted_until=MUTED if muted else None)
    # 0.80 -> 0.802: below --min-improvement, so the poll's own diff says nothing
    told = fan_out(RUN_80, snap("RUNNING", 0.802), [recipient], NOW, version=9, warnings=[warning])
    assert heard(told) == ({"C1": expected} if expected else {})
    for notification in told:
        assert notification.events == (warning,)  # carried whole, for the thread's line
        assert notification.headline is warning.kind
        assert notification.dedupe_key == f"{KEY}:v9:C1"  # the poll's one row: exactly once
        stored = read_notification(
            notification.to_json(), channel_id="C1", job_key=KEY, kind="x", dedupe_key="k"
        )
        assert stored == notification  # the outbox keeps every field the line needs


def test_a_warning_follows_the_diff_and_heads_a_new_best_but_not_a_failure() -> None:
    subs = [sub(1, "C1"), sub(2, "C2", events=FAILURES)]
    one, two = fan_out(RUN_80, RUN_90, subs, NOW, version=2, warnings=[AT_RISK])
    assert [e.kind for e in one.events] == [K.NEW_BEST, K.AT_RISK]
    assert one.headline is K.AT_RISK
    assert [e.kind for e in two.events] == [K.AT_RISK]
    (failed,) = fan_out(RUN_80, FAILED_82, [sub(1, "C1")], NOW, version=3, warnings=[STALL])
    assert failed.headline is K.JOB_STATUS


def test_no_warning_reaches_an_unreachable_poll() -> None:
    lost = Unreachable(KEY, "HTTP 503")
    (notification,) = fan_out(RUN_80, lost, [sub(1, "C1")], NOW, version=4, warnings=[AT_RISK])
    assert [e.kind for e in notification.events] == [K.UNREACHABLE]


@pytest.mark.parametrize(
    ("status", "best", "retry_at"),
    [("NOT_COMPLETED", 0.768, 0.75), ("TIMED_OUT", 0.85, 0.85), ("FAILED", 0.768, None)],
)
def test_a_missed_job_status_carries_the_best_reached_and_the_retry_threshold(
    status: str, best: float, retry_at: float | None
) -> None:
    (told,) = fan_out(
        RUN_80, snap(status, best, algo_status=status), [sub(1, "C1")], NOW, version=5
    )
    (event,) = [e for e in told.events if e.kind is K.JOB_STATUS]
    assert event.retry_at == retry_at
    assert event.performance == (best if retry_at is not None else None)
