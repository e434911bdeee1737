"""`bot.core.priority`, pure: how urgent a notification is and whether it tells the job's
end, for every kind of event and their mixtures (issue #20: the module under mutation
testing; the outbox's use of it is in tests/test_priorities.py)."""

from __future__ import annotations

import pytest

from bot.core.diff import headline_kind
from bot.core.events import Event, EventKind
from bot.core.notification import Notification
from bot.core.priority import Priority, is_final, priority_of


def note(*events: Event) -> Notification:
    return Notification(
        channel_id="C1",
        job_key="J1",
        subscription_id=None,
        events=events,
        snapshot=None,
        headline=headline_kind(events),
        mention=None,
        dedupe_key="k",
    )


def job(new: str | None, old: str | None = "RUNNING") -> Event:
    return Event(kind=EventKind.JOB_STATUS, job_key="J1", old_status=old, new_status=new)


def algorithm(new: str | None) -> Event:
    return Event(
        kind=EventKind.ALGORITHM_STATUS,
        job_key="J1",
        algorithm="BSEV01",
        old_status="RUNNING",
        new_status=new,
    )


BEST = Event(kind=EventKind.NEW_BEST, job_key="J1", algorithm="BSEV01", performance=0.8)
ACTION = Event(kind=EventKind.ACTION_TAKEN, job_key="J1", act="cancel", outcome="done", actor="U1")
LOST = Event(kind=EventKind.UNREACHABLE, job_key="J1", reason="404")
CHAMPION = Event(kind=EventKind.CHAMPION, job_key="J1", algorithm="BSEV01")


@pytest.mark.parametrize(
    ("events", "priority", "final"),
    [
        # alerts: any alerting event, whatever comes with it
        ((job("FAILED"),), Priority.ALERT, True),
        ((BEST, job("TIMED_OUT")), Priority.ALERT, True),
        ((BEST, LOST), Priority.ALERT, False),
        # a person's action is an alert by its headline, not by its event
        ((ACTION,), Priority.ALERT, False),
        # progress: every event is progress
        ((BEST,), Priority.PROGRESS, False),
        ((algorithm("FAILED"), algorithm(None)), Priority.PROGRESS, False),
        ((job("RUNNING", old="PENDING"), BEST), Priority.PROGRESS, False),
        # anything else is normal: an end that is no alert, a status without its value,
        # progress mixed with something that is not
        ((job("COMPLETED"), BEST), Priority.NORMAL, True),
        ((job("CANCELLED"),), Priority.NORMAL, True),
        ((job(None),), Priority.NORMAL, False),
        ((BEST, CHAMPION), Priority.NORMAL, False),
        ((Event(kind=EventKind.WATCH_STARTED, job_key="J1"),), Priority.NORMAL, False),
    ],
)
def test_priority_and_final(events: tuple[Event, ...], priority: Priority, final: bool) -> None:
    notification = note(*events)
    assert (priority_of(notification), is_final(notification)) == (priority, final)


def test_an_algorithm_ending_is_not_the_jobs_end() -> None:
    assert not is_final(note(algorithm("COMPLETED")))
    assert is_final(note(algorithm("COMPLETED"), job("NOT_COMPLETED")))


def test_the_order_and_the_metric_labels() -> None:
    assert Priority.ALERT < Priority.NORMAL < Priority.PROGRESS
    assert [p.label for p in Priority] == ["alert", "normal", "progress"]
