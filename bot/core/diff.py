"""What changed between two snapshots of a training job, as events. Pure: no I/O.

Within one diff the events come in this order: the job's status change, each algorithm's
status change (in the current snapshot's order), then either the new best performance or,
when the job has just reached COMPLETED, the champion (which states the best itself).

Also here, because they decide what a subscription makes of those events: the `--events`
filter and the mute (`filter_for_subscription`) and which event heads the reply
(`headline_rank`, the one ranking the outbox row's kind and the rendered reply share).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from bot.core.events import STATUS_KINDS, WARNING_KINDS, Event, EventKind, EventsFilter, is_alert
from bot.core.forecast import retry_threshold
from bot.core.models import (
    ALERT_STATUSES,
    COMPLETED,
    NOT_COMPLETED,
    TIMED_OUT,
    AlgorithmProgress,
    Snapshot,
    is_terminal,
)

# Float noise must not hide an improvement of exactly `min_improvement`; a new best
# is always strictly higher than the reference, even with `min_improvement=0`.
_EPSILON = 1e-9

# Which event of a poll heads its reply: lower first; ties keep the diff's order. A job
# that failed (or cannot be reached) is an alert and outranks everything else.
_HEADLINE_RANK = {
    EventKind.CHAMPION: 0,
    EventKind.UNREACHABLE: 1,
    EventKind.JOB_STATUS: 2,
    EventKind.RECOVERED: 3,
    EventKind.AT_RISK: 4,
    EventKind.STALL_WARNING: 5,
    EventKind.BACK_ON_TRACK: 6,
    EventKind.NEW_BEST: 7,
    EventKind.WATCH_STARTED: 8,
    EventKind.ALGORITHM_STATUS: 9,
    EventKind.SUBSCRIPTION_CHANGED: 10,
    EventKind.ACTION_TAKEN: 11,
}
# A job MathFi stopped short of its target: the final notification carries the advice.
_MISSED = frozenset({NOT_COMPLETED, TIMED_OUT})


@dataclass(frozen=True)
class DiffOptions:
    min_improvement: float = 0.005
    # Best already announced to this subscription; None -> the previous snapshot's best.
    reference_best: float | None = None


def diff(
    previous: Snapshot | None, current: Snapshot, options: DiffOptions = DiffOptions()
) -> list[Event]:
    """Events worth telling about the move from `previous` to `current`.

    No previous snapshot gives no events: the watch-started card covers the first one.
    """
    if previous is None:
        return []
    events: list[Event] = []
    if previous.status != current.status:
        reached = best_reached(current) if current.status in _MISSED else None
        events.append(
            Event(
                kind=EventKind.JOB_STATUS,
                job_key=current.job_key,
                old_status=previous.status,
                new_status=current.status,
                target_performance=current.target_performance,
                performance=reached,
                retry_at=retry_threshold(reached) if reached is not None else None,
            )
        )
    events.extend(_algorithm_changes(previous, current))
    if current.status == COMPLETED and previous.status != COMPLETED:
        events.append(_champion(current))
    else:
        events.extend(_new_best(previous, current, options))
    return events


def best_reached(snapshot: Snapshot) -> float | None:
    """The best value any algorithm of the job reached (its latest or a recent one)."""
    values = [
        value
        for algorithm in snapshot.algorithms
        for value in (algorithm.latest_performance, *algorithm.recent_performances)
        if value is not None
    ]
    if snapshot.achieved_performance is not None:
        values.append(snapshot.achieved_performance)
    return max(values) if values else None


def _by_name(snapshot: Snapshot) -> dict[str, AlgorithmProgress]:
    """Algorithms by name, in snapshot order; a repeated name keeps its first entry."""
    named: dict[str, AlgorithmProgress] = {}
    for algorithm in snapshot.algorithms:
        named.setdefault(algorithm.algorithm, algorithm)
    return named


def _algorithm_changes(previous: Snapshot, current: Snapshot) -> list[Event]:
    before = _by_name(previous)
    events = []
    for name, now in _by_name(current).items():
        old = before.get(name)
        old_status = old.status if old is not None else None
        if old_status == now.status or (old is None and not now.status):
            continue
        events.append(
            Event(
                kind=EventKind.ALGORITHM_STATUS,
                job_key=current.job_key,
                algorithm=name,
                old_status=old_status,
                new_status=now.status,
            )
        )
    return events


def _new_best(previous: Snapshot, current: Snapshot, options: DiffOptions) -> list[Event]:
    best = current.best()
    if best is None or best.latest_performance is None:
        return []
    reference = options.reference_best
    if reference is None:
        previous_best = previous.best()
        reference = previous_best.latest_performance if previous_best else None
    if reference is not None:
        gain = best.latest_performance - reference
        if gain <= 0 or gain < options.min_improvement - _EPSILON:
            return []
    return [
        Event(
            kind=EventKind.NEW_BEST,
            job_key=current.job_key,
            algorithm=best.algorithm,
            performance=best.latest_performance,
            previous_performance=reference,
            target_performance=current.target_performance,
        )
    ]


def _champion(current: Snapshot) -> Event:
    winner = next((a for a in current.algorithms if a.status == COMPLETED), None)
    if winner is None:
        winner = current.best()
    performance = current.achieved_performance
    if performance is None and winner is not None:
        performance = winner.latest_performance
    return Event(
        kind=EventKind.CHAMPION,
        job_key=current.job_key,
        algorithm=winner.algorithm if winner is not None else None,
        performance=performance,
        target_performance=current.target_performance,
        model_key=current.model_key,
    )


def job_unreachable(job_key: str, reason: str) -> Event:
    return Event(kind=EventKind.UNREACHABLE, job_key=job_key, reason=reason)


def job_recovered(job_key: str) -> Event:
    return Event(kind=EventKind.RECOVERED, job_key=job_key)


def _passes_filter(event: Event, events_filter: EventsFilter) -> bool:
    if events_filter is EventsFilter.ALL:
        return True
    if events_filter is EventsFilter.STATUS:
        return event.kind in STATUS_KINDS
    if event.kind is EventKind.JOB_STATUS:  # EventsFilter.FAILURES
        return event.new_status in ALERT_STATUSES
    if event.kind in WARNING_KINDS:  # a warning is a failure foretold
        return True
    # whoever was told a job is unreachable is told when it is back
    return event.kind in (EventKind.UNREACHABLE, EventKind.RECOVERED, EventKind.WATCH_STARTED)


def _passes_mute(event: Event) -> bool:
    """What a muted subscription still hears: terminal statuses, the champion, and whether
    MathFi can reach the job at all (an alert, like a failure); mute silences progress,
    the forecast's warnings included."""
    if event.kind is EventKind.JOB_STATUS:
        return event.new_status is not None and is_terminal(event.new_status)
    return event.kind in (
        EventKind.CHAMPION,
        EventKind.WATCH_STARTED,
        EventKind.UNREACHABLE,
        EventKind.RECOVERED,
    )


def filter_for_subscription(
    events: Sequence[Event],
    *,
    events_filter: EventsFilter | str,
    muted_until: float | None,
    now: float,
) -> list[Event]:
    """The events one subscription receives, given its `--events` filter and mute.

    An unknown filter is a ValueError."""
    chosen = EventsFilter(events_filter)
    muted = muted_until is not None and muted_until > now
    return [
        event
        for event in events
        if _passes_filter(event, chosen) and (not muted or _passes_mute(event))
    ]


def headline_rank(event: Event) -> int:
    """Sort key: the event with the lowest rank heads the reply (`sorted` keeps ties)."""
    if event.kind is EventKind.JOB_STATUS and is_alert(event):
        return -1
    return _HEADLINE_RANK[event.kind]


def headline_kind(events: Sequence[Event]) -> EventKind:
    """The kind of the event that heads the reply (`events` must not be empty)."""
    if not events:
        raise ValueError("headline_kind needs at least one event")
    return min(events, key=headline_rank).kind


def snapshot_hash(snapshot: Snapshot) -> str:
    """sha256 of the snapshot's canonical JSON: equal snapshots, equal hashes."""
    return json_hash(snapshot.canonical_json())


def json_hash(canonical_json: str) -> str:
    """`snapshot_hash` of a snapshot whose canonical JSON is already at hand."""
    return hashlib.sha256(canonical_json.encode()).hexdigest()
