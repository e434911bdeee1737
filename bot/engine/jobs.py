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
from dataclasses import dataclass, field
from typing import Protocol

from bot.core.broadcast import BroadcastMode
from bot.core.events import Event, EventsFilter
from bot.core.fanout import Recipient
from bot.core.forecast import ForecastRules
from bot.core.forecast_state import ForecastState, advance
from bot.core.models import PENDING, RUNNING, Snapshot, TrainingJob, TrainingProgress
from bot.core.notification import Notification
from bot.core.priority import priority_of
from bot.engine.oncall import alert_of
from bot.errors import MathFiAuthError, MathFiError, MathFiUnavailable, TrainingJobNotFound
from store import HistoryPoint, NewOutboxRow, Store, Subscription
from store.db import PollRecord


class ProgressAnswer(Protocol):
    """One progress poll (`MathFiClient.get_progress_if_changed`): the raw body's digest and
    the parsed progress, None when the body was byte-identical to the previous one."""

    @property
    def digest(self) -> bytes: ...
    @property
    def progress(self) -> TrainingProgress | None: ...


class ProgressSource(Protocol):
    async def get_progress_if_changed(
        self, key: str, previous_digest: bytes | None
    ) -> ProgressAnswer: ...
    async def get_training(self, key: str) -> TrainingJob: ...


@dataclass(slots=True)
class JobState:
    """What the poller remembers of a job between polls (the store has the durable copy).

    The last snapshot is kept as its canonical JSON, one string the garbage collector never
    scans (a `Snapshot` is ~20 tracked objects: at 10,000 jobs they made every full
    collection long); `previous()` parses it when a poll changed and needs the diff.
    """

    key: str
    snapshot_json: str | None
    hash: str | None
    pending: bool = False  # the snapshot's status is PENDING (polled at twice the interval)
    version: int = 0
    errors: int = 0
    failing_since: float | None = None
    unreachable: bool = False
    due_at: float = 0.0
    slot: float | None = None  # the due time of the last poll taken: the job's grid
    forecast: ForecastState = field(default_factory=ForecastState)  # as the store has it
    # The digest of the progress body `snapshot` was made from (None: parse the next one).
    body_digest: bytes | None = None

    def previous(self) -> Snapshot | None:
        """The last snapshot, parsed (only a changed or a failing poll needs it)."""
        if self.snapshot_json is None:
            return None
        return Snapshot.model_validate_json(self.snapshot_json)

    def remember(self, snapshot_json: str, digest: str, status: str) -> None:
        self.snapshot_json, self.hash, self.pending = snapshot_json, digest, status == PENDING


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
    # MathFi's stop rules (MATHFI_STALL_WINDOW, ...) and WARNING_COOLDOWN
    forecast: ForecastRules = field(default_factory=ForecastRules)
    warning_cooldown: float = 600.0

    @property
    def forecast_every(self) -> float:
        """A running job's forecast is made again at most this often (a fifth of the stall
        window, at most a minute): warnings come minutes ahead, and a forecast per changed
        poll cost a third of the poller's CPU at 10,000 jobs (docs/benchmarks.md)."""
        return min(60.0, self.forecast.stall_window / 5)


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
    if state.pending:
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
        broadcast=BroadcastMode(sub.broadcast),
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


def forecast_step(
    store: Store,
    config: PollerConfig,
    kept: ForecastState,
    previous: Snapshot | None,
    snapshot: Snapshot,
    now: float,
) -> tuple[ForecastState, list[Event]]:
    """A changed poll's forecast and warnings, on the store's thread in the poll's own turn
    (the job's stored history plus the points this poll writes: no round trip of its own;
    a job that is not running reads nothing)."""
    recent = kept.last is not None and now - kept.last.at < config.forecast_every
    if (
        recent
        and snapshot.status == RUNNING
        and previous is not None
        and previous.status == RUNNING
    ):
        return kept, []  # the stored forecast stands; nothing of it is written again
    history: list[HistoryPoint] = []
    if snapshot.status == RUNNING:
        history = [*store.history(snapshot.job_key), *history_points(previous, snapshot, now)]
    return advance(
        kept,
        history,
        snapshot,
        now=now,
        rules=config.forecast,
        cooldown=config.warning_cooldown,
    )


def poll_record(
    previous: Snapshot | None,
    snapshot: Snapshot,
    *,
    snapshot_json: str,
    digest: str,
    now: float,
    next_poll_at: float,
    notifications: Sequence[Notification],
    forecast: ForecastState | None = None,
) -> PollRecord:
    """Everything a changed poll writes, in one transaction: the snapshot, its history
    points, the outbox rows, each told subscription's new last-announced best, the
    job's forecast state (None: the stored one stays) and the on-call alerts it opens."""
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
        snapshot_json=snapshot_json,
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
        forecast_json=forecast.to_json() if forecast is not None else None,
        alerts=[a for n in notifications if (a := alert_of(n, now=now)) is not None],
    )


def history_points(previous: Snapshot | None, current: Snapshot, now: float) -> list[HistoryPoint]:
    """One point per algorithm whose latest performance changed since the last snapshot."""
    before = {a.algorithm: a.latest_performance for a in previous.algorithms} if previous else {}
    return [
        HistoryPoint(algorithm=a.algorithm, at=now, value=a.latest_performance)
        for a in current.algorithms
        if a.latest_performance is not None and before.get(a.algorithm) != a.latest_performance
    ]
