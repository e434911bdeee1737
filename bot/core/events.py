"""Events the diff emits, the `--events` filters, and which events are alerts.

The notification that groups one poll's events for one subscription is
`bot.core.notification.Notification`.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from bot.core.models import ALERT_STATUSES


class EventKind(StrEnum):
    WATCH_STARTED = "watch_started"
    JOB_STATUS = "job_status"
    ALGORITHM_STATUS = "algorithm_status"
    NEW_BEST = "new_best"
    CHAMPION = "champion"
    UNREACHABLE = "unreachable"
    RECOVERED = "recovered"
    # forecast warnings (bot.core.forecast_state): decided once per changed poll of the job
    AT_RISK = "at_risk"
    BACK_ON_TRACK = "back_on_track"
    STALL_WARNING = "stall_warning"
    # a member changed this channel's subscription(s); not from a poll, never fanned out
    SUBSCRIPTION_CHANGED = "subscription_changed"
    # a member started, cancelled or retrained a training from Slack (or was refused);
    # not from a poll, never fanned out: one line in the job's thread
    ACTION_TAKEN = "action_taken"


class ChangeAction(StrEnum):
    """What a SUBSCRIPTION_CHANGED event tells a channel somebody did."""

    SUBSCRIBED = "subscribed"  # a new (or renewed) subscription
    OPTIONS = "options"  # a re-subscribe that changed options (`changes` says which)
    UNSUBSCRIBED = "unsubscribed"
    UNSUBSCRIBED_ALL = "unsubscribed_all"  # `unsubscribe all`: `count` jobs
    MUTED = "muted"  # for `duration` seconds
    UNMUTED = "unmuted"


class OptionChange(BaseModel):
    """One option of a subscription, before and after a re-subscribe (as text)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    old: str | None
    new: str | None


class EventsFilter(StrEnum):
    """A subscription's `--events`: what it is told (see `bot.core.diff.passes_filter`)."""

    ALL = "all"  # everything
    STATUS = "status"  # job status changes, the champion, reachability
    FAILURES = "failures"  # FAILED / TIMED_OUT / NOT_COMPLETED, reachability, warnings


# Which `--events` filter lets a kind through. `all` lets everything through.
STATUS_KINDS = frozenset(
    {
        EventKind.WATCH_STARTED,
        EventKind.JOB_STATUS,
        EventKind.CHAMPION,
        EventKind.UNREACHABLE,
        EventKind.RECOVERED,
    }
)
# The forecast's warnings: `all` and `failures` hear them, `status` does not, and a mute
# silences them like the rest of the progress (back_on_track too: it only follows an
# at_risk, which the muted channel did not hear either).
WARNING_KINDS = frozenset({EventKind.AT_RISK, EventKind.BACK_ON_TRACK, EventKind.STALL_WARNING})
PROGRESS_KINDS = frozenset({EventKind.ALGORITHM_STATUS, EventKind.NEW_BEST, *WARNING_KINDS})


class Event(BaseModel):
    """One thing worth telling. Fields not relevant to a kind stay None."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    kind: EventKind
    job_key: str
    # job_status / algorithm_status
    old_status: str | None = None
    new_status: str | None = None
    algorithm: str | None = None
    # new_best / champion
    performance: float | None = None
    previous_performance: float | None = None
    target_performance: float | None = None
    model_key: str | None = None
    # unreachable / recovered
    reason: str | None = None
    # forecast warnings. at_risk / back_on_track: `algorithm` is the best projected one,
    # `best_projected` its projected value, `target_performance` the target; at_risk adds
    # MathFi's advice threshold (`retry_at`) and the leader's imminent stall, if any
    # (`stall_algorithm`, `seconds_left`); back_on_track its ETA (`eta`, seconds from the
    # event). stall_warning: `algorithm`, `seconds_left`, the best's gain over the stall
    # window so far (`gained`), the delta it needs (`needed`) and the window (`window`).
    # job_status NOT_COMPLETED / TIMED_OUT: `performance` is the best reached, `retry_at`
    # the threshold MathFi's advice would retry with.
    best_projected: float | None = None
    retry_at: float | None = None
    stall_algorithm: str | None = None
    seconds_left: float | None = None
    eta: float | None = None
    gained: float | None = None
    needed: float | None = None
    window: float | None = None
    # subscription_changed: who (a Slack user id), what, and its details
    actor: str | None = None
    action: ChangeAction | None = None
    changes: tuple[OptionChange, ...] | None = None
    duration: float | None = None
    count: int | None = None
    # action_taken: `actor` did `act` (start, cancel, retrain) with `outcome` (done,
    # refused, unknown, failed); `reason` says why or what to check; a start names its
    # `target_performance`, `scaling_factor` and the job it retrains (`retrain_of`)
    act: str | None = None
    outcome: str | None = None
    scaling_factor: int | None = None
    retrain_of: str | None = None


def is_alert(event: Event) -> bool:
    """Events that page the on-call handle: the job FAILED/TIMED_OUT/NOT_COMPLETED, or is lost."""
    if event.kind is EventKind.UNREACHABLE:
        return True
    return event.kind is EventKind.JOB_STATUS and event.new_status in ALERT_STATUSES
