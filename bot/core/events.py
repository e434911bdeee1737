"""Events the diff emits, and the notification that groups one poll's events for a channel."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class EventKind(StrEnum):
    WATCH_STARTED = "watch_started"
    JOB_STATUS = "job_status"
    ALGORITHM_STATUS = "algorithm_status"
    NEW_BEST = "new_best"
    CHAMPION = "champion"
    UNREACHABLE = "unreachable"
    RECOVERED = "recovered"


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
PROGRESS_KINDS = frozenset({EventKind.ALGORITHM_STATUS, EventKind.NEW_BEST})


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
