"""What the poller knows of a job between polls, when it polls it next, and what a poll writes.

The poller (`bot.engine.poller`) runs the loop; this module holds its pieces that need no
loop: the per-job state, the schedule (`next_due`), and the store records a poll becomes
(`poll_record`, `outbox_row`, and `recipient`, which hands a subscription to the core's
fan-out).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.core.events import EventsFilter
from bot.core.fanout import Recipient
from bot.core.models import PENDING, Snapshot, TrainingJob, TrainingProgress
from bot.core.notification import Notification
from bot.core.priority import priority_of
from bot.errors import MathFiAuthError, MathFiError, MathFiUnavailable, TrainingJobNotFound
from store import HistoryPoint, NewOutboxRow, Subscription
from store.db import PollRecord


class ProgressSource(Protocol):
    async def get_progress(self, key: str) -> TrainingProgress: ...
    async def get_training(self, key: str) -> TrainingJob: ...


@dataclass
class JobState:
    """What the poller remembers of a job between polls (the store has the durable copy)."""

    key: str
    snapshot: Snapshot | None
    hash: str | None
    version: int = 0
    errors: int = 0
    failing_since: float | None = None
    unreachable: bool = False
    due_at: float = 0.0
    slot: float | None = None  # the due time of the last poll taken: the job's grid


@dataclass(frozen=True)
class PollerConfig:
    interval: float = 30.0
    concurrency: int = 50
    jitter: float = 0.1  # +/- this fraction of a failing job's backoff
    max_backoff: float = 600.0
    unreachable_after: float = 300.0
    resync_every: float = 10.0
    # The loop sleeps at least this long: jobs falling due meanwhile start together (a
    # little late, never early), so at 1,000 polls/s it wakes 20 times a second, not 1,000.
    batch_window: float = 0.05


def next_due(config: PollerConfig, state: JobState, now: float, rng: random.Random) -> float:
    """When to poll the job next.

    Healthy: the next slot of the job's own grid (the slot just polled plus the
    interval), so neither the poll's latency nor a late wake-up stretches the
    interval: N jobs cost N/interval polls a second and a change waits at most one
    interval. A job more than an interval behind skips the slots it missed. Failing:
    exponential backoff from now, with jitter so that failing jobs spread out.
    """
    base = config.interval
    if state.errors:
        base = min(base * 2.0 ** min(state.errors, 16), config.max_backoff)
        spread = base * config.jitter
        return now + base + rng.uniform(-spread, spread)
    if state.snapshot is not None and state.snapshot.status == PENDING:
        base *= 2
    slot = now if state.slot is None else state.slot
    if slot + base > now:
        return slot + base
    return slot + base * (math.floor((now - slot) / base) + 1)


def lost_for_good(config: PollerConfig, state: JobState, err: MathFiError, now: float) -> bool:
    """This failure makes the job unreachable: it has failed at least 3 times in a row for
    `unreachable_after` seconds (a refused login is our credentials, not the job)."""
    return (
        not state.unreachable
        and not isinstance(err, MathFiAuthError)
        and state.errors >= 3
        and state.failing_since is not None
        and now - state.failing_since >= config.unreachable_after
    )


def error_kind(err: MathFiError) -> str:
    """The `kind` label of the poll_errors metric."""
    if isinstance(err, TrainingJobNotFound):
        return "not_found"
    if isinstance(err, MathFiUnavailable):
        return "unavailable"
    return type(err).__name__.removeprefix("MathFi").lower() or "error"


def recipient(sub: Subscription) -> Recipient:
    """A store subscription as the fan-out sees it (ValueError for an unknown filter)."""
    return Recipient(
        id=sub.id,
        channel_id=sub.channel_id,
        events=EventsFilter(sub.events),
        min_improvement=sub.min_improvement,
        last_best=sub.last_best,
        muted_until=sub.muted_until,
        mention=sub.mention,
    )


def outbox_row(notification: Notification) -> NewOutboxRow:
    """The outbox row that carries `notification` (its kind is the headline's)."""
    return NewOutboxRow(
        dedupe_key=notification.dedupe_key,
        channel_id=notification.channel_id,
        job_key=notification.job_key,
        kind=notification.headline.value,
        payload=notification.to_json(),
        priority=int(priority_of(notification)),
    )


def poll_record(
    previous: Snapshot | None,
    snapshot: Snapshot,
    *,
    digest: str,
    now: float,
    next_poll_at: float,
    notifications: Sequence[Notification],
) -> PollRecord:
    """Everything a changed poll writes, in one transaction: the snapshot, its history
    points, the outbox rows and each told subscription's new last-announced best."""
    best_now = snapshot.best()
    best_before = previous.best() if previous else None
    improved = best_now is not None and (
        best_before is None
        or (best_now.latest_performance or 0.0) > (best_before.latest_performance or 0.0)
    )
    last_best = {
        n.subscription_id: n.new_best
        for n in notifications
        if n.subscription_id is not None and n.new_best is not None
    }
    return PollRecord(
        job_key=snapshot.job_key,
        snapshot_json=snapshot.canonical_json(),
        snapshot_hash=digest,
        status=snapshot.status,
        best_performance=best_now.latest_performance if best_now else None,
        best_algorithm=best_now.algorithm if best_now else None,
        terminal=snapshot.terminal,
        next_poll_at=next_poll_at,
        history=history_points(previous, snapshot, now),
        outbox=[outbox_row(n) for n in notifications],
        last_best=last_best,
        improved=improved,
    )


def history_points(previous: Snapshot | None, current: Snapshot, now: float) -> list[HistoryPoint]:
    """One point per algorithm whose latest performance changed since the last snapshot."""
    before = {a.algorithm: a.latest_performance for a in previous.algorithms} if previous else {}
    return [
        HistoryPoint(algorithm=a.algorithm, at=now, value=a.latest_performance)
        for a in current.algorithms
        if a.latest_performance is not None and before.get(a.algorithm) != a.latest_performance
    ]
