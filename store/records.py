"""What the store hands out and takes in: frozen dataclasses, never sqlite rows or dicts.

Each record that is read from a table has a `COLUMNS` string (the SELECT list, in field
order) and a `from_row` that turns one tuple of that SELECT into the record.

(Over 300 lines, kept whole: one flat list of the records every part of the store shares.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal


class StoreError(Exception):
    """Base of what the store raises."""


class StoreUnavailable(StoreError):
    """SQLite refused a read or a write: locked, read-only, disk full, closed.

    The message is SQLite's own, on one line (e.g. "database is locked"), or the store's
    when it never reached SQLite ("cannot create ...", "the store is closed").
    """


class SubscriptionLimitReached(StoreError):
    """`subscribe` refused a new subscription: the channel's or the whole store's count of
    active subscriptions is at its limit. Nothing was written."""

    def __init__(self, *, scope: Literal["channel", "global"], limit: int) -> None:
        super().__init__(f"{scope} subscription limit reached ({limit})")
        self.scope: Literal["channel", "global"] = scope
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    team_id: str | None
    channel_id: str
    job_key: str
    created_by: str | None
    created_at: float
    min_improvement: float
    mention: str | None
    events: str
    muted_until: float | None
    active: bool
    disabled_reason: str | None
    last_best: float | None
    broadcast: str = "final"  # `--broadcast`: final, failures or none (migration 9)

    COLUMNS: ClassVar[str] = (
        "id, team_id, channel_id, job_key, created_by, created_at, min_improvement, mention, "
        "events, muted_until, active, disabled_reason, last_best, broadcast"
    )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Subscription:
        values = list(row)
        values[10] = bool(values[10])
        return cls(*values)

    @property
    def delivering(self) -> bool:
        """Active and not disabled by a permanent Slack error."""
        return self.active and self.disabled_reason is None


@dataclass(frozen=True, slots=True)
class DigestSetting:
    """A channel's daily digest (migration 9): posted once a local day (`day` in `tz`)
    when the local time passes `daily_at` ("HH:MM"). `last_sent_day` is the local date
    (ISO) of the last digest, or of the day it was turned on past its hour; `last_sent_at`
    when the last one was written (None: never)."""

    channel_id: str
    team_id: str | None
    daily_at: str
    tz: str
    last_sent_day: str | None
    last_sent_at: float | None
    active: bool
    updated_by: str | None
    updated_at: float

    COLUMNS: ClassVar[str] = (
        "channel_id, team_id, daily_at, tz, last_sent_day, last_sent_at, active, updated_by, "
        "updated_at"
    )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> DigestSetting:
        values = list(row)
        values[6] = bool(values[6])
        return cls(*values)


@dataclass(frozen=True, slots=True)
class DigestJob:
    """A job one channel's digest may tell of: its stored record and when the channel
    started watching it."""

    job: JobRecord
    watched_since: float


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    """One line of `list`: the subscription and what the store knows of its job."""

    subscription: Subscription
    status: str | None
    best_performance: float | None
    best_algorithm: str | None
    unreachable: bool


@dataclass(frozen=True, slots=True)
class JobRecord:
    job_key: str
    snapshot_json: str
    snapshot_hash: str
    status: str
    best_performance: float | None
    best_algorithm: str | None
    next_poll_at: float
    consecutive_errors: int
    unreachable: bool
    terminal: bool
    version: int
    updated_at: float
    last_improvement_at: float | None
    forecast_json: str | None = None  # the engine's forecast state (bot.core.forecast_state)

    COLUMNS: ClassVar[str] = (
        "job_key, snapshot_json, snapshot_hash, status, best_performance, best_algorithm, "
        "next_poll_at, consecutive_errors, unreachable, terminal, version, updated_at, "
        "last_improvement_at, forecast_json"
    )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> JobRecord:
        values = list(row)
        values[8] = bool(values[8])
        values[9] = bool(values[9])
        return cls(*values)


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    algorithm: str
    at: float
    value: float


@dataclass(frozen=True, slots=True)
class NewOutboxRow:
    """A notification to deliver; `payload` is JSON text, `dedupe_key` makes it idempotent."""

    dedupe_key: str
    channel_id: str
    job_key: str
    kind: str
    payload: str
    priority: int = 1  # 0 alert, 1 normal, 2 progress (bot.core.priority.Priority)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    dedupe_key: str
    channel_id: str
    job_key: str
    kind: str
    payload: str
    state: str
    attempts: int
    next_attempt_at: float
    slack_ts: str | None
    last_error: str | None
    created_at: float
    updated_at: float
    call_started_at: float | None  # when the row's last Slack post began (None: never)
    verify_at: float | None  # sent, posted again after an unknown outcome: look for a copy
    priority: int = 1  # 0 alert, 1 normal, 2 progress: a channel's lowest goes first
    carried_by: int | None = None  # the row whose message carries this one's news

    COLUMNS: ClassVar[str] = (
        "id, dedupe_key, channel_id, job_key, kind, payload, state, attempts, next_attempt_at, "
        "slack_ts, last_error, created_at, updated_at, call_started_at, verify_at, priority, "
        "carried_by"
    )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> OutboxRow:
        return cls(*row)


@dataclass(frozen=True, slots=True)
class SubscriptionChange:
    """What one write did to a channel's subscription(s), as its own transaction saw it:
    `before` and `after` of one (channel, job), or, for a whole channel (`job_key` None),
    `count` subscriptions stopped. `user_id` is who asked."""

    channel_id: str
    job_key: str | None
    user_id: str | None
    before: Subscription | None
    after: Subscription | None
    count: int
    at: float


# Called inside the write's transaction: the outbox row that tells the channel (or None).
AuditRow = Callable[[SubscriptionChange], NewOutboxRow | None]


@dataclass(frozen=True, slots=True)
class Card:
    """The job card posted in a channel; `card_version` grows each time it goes stale.

    `unwatched_at` / `unwatched_by`: the channel stopped watching the job then, by whom; the
    card is edited once more to say so (`unwatched_shown`), then never again."""

    channel_id: str
    job_key: str
    ts: str | None
    dirty: bool
    card_version: int
    unwatched_at: float | None = None
    unwatched_by: str | None = None
    unwatched_shown: bool = False

    COLUMNS: ClassVar[str] = (
        "channel_id, job_key, ts, dirty, card_version, unwatched_at, unwatched_by, unwatched_shown"
    )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Card:
        channel_id, job_key, ts, dirty, card_version, at, by, shown = row
        return cls(channel_id, job_key, ts, bool(dirty), card_version, at, by, bool(shown))


@dataclass(frozen=True, slots=True)
class Pruned:
    """One batch of a pruning step: how many it removed, and whether more are waiting
    (call again, after letting other calls through)."""

    count: int
    more: bool


@dataclass(frozen=True, slots=True)
class DatabaseSize:
    """The database's size in bytes (page_count * page_size) and how much of it is free
    pages (the freelist) that an incremental vacuum can give back."""

    bytes: int
    free_bytes: int


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One action taken from Slack (store/actions.py); `parameters` is JSON text."""

    id: int
    idempotency_key: str
    kind: str
    team_id: str | None
    channel_id: str
    user_id: str
    subject_key: str
    parameters: str
    state: str
    answer: str | None
    result_job_key: str | None
    created_at: float
    updated_at: float

    COLUMNS: ClassVar[str] = (
        "id, idempotency_key, kind, team_id, channel_id, user_id, subject_key, parameters, "
        "state, answer, result_job_key, created_at, updated_at"
    )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ActionRecord:
        return cls(*row)


@dataclass(frozen=True, slots=True)
class NewAlert:
    """An on-call alert to open with the outbox row that carries it (`outbox_key`, that
    row's dedupe key), in the same transaction (store/alerts.py)."""

    outbox_key: str
    job_key: str
    channel_id: str
    subscription_id: int
    mention: str
    status: str
    raised_at: float


@dataclass(frozen=True, slots=True)
class Alert:
    """One on-call alert (migration 7); `ts`: the alert message's Slack ts, once posted
    (from its outbox row; None before, or once retention deleted the row)."""

    id: int
    outbox_id: int
    job_key: str
    channel_id: str
    subscription_id: int
    mention: str | None
    status: str | None
    raised_at: float
    acked_by: str | None
    acked_at: float | None
    pages: int
    next_page_at: float | None
    ts: str | None

    COLUMNS: ClassVar[str] = (
        "a.id, a.outbox_id, a.job_key, a.channel_id, a.subscription_id, a.mention, a.status, "
        "a.raised_at, a.acked_by, a.acked_at, a.pages, a.next_page_at, o.slack_ts"
    )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Alert:
        return cls(*row)


# What `Store.acknowledge_alert` found: the alert is now acknowledged by the caller, was
# already acknowledged (by `Alert.acked_by`), its subscription was stopped (nobody is paged
# for it any more), or there is no such alert.
AckOutcome = Literal["acked", "already", "ended", "missing"]
