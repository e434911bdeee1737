"""A channel's daily digest (issue #14), as the outbox stores it. Pure: no I/O, no clock.

`build_digest` picks, from the jobs a channel watches, those that finished since the last
digest (COMPLETED with the champion and the best, FAILED, NOT_COMPLETED / TIMED_OUT /
CANCELLED with the best and the target) and those still running (progress, and the ETA
of the job's stored forecast when it has one); None when there is nothing to tell. The
digest is frozen when it is queued: the sender posts what was true at the hour.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.core.forecast import Verdict
from bot.core.forecast_state import ForecastSummary
from bot.core.models import RUNNING, Snapshot

DIGEST_KIND = "digest"  # the outbox row's kind
DIGEST_JOB = "*"  # the row's job key: the digest is about every job of the channel
SCHEMA_VERSION: Literal[1] = 1


class DigestLine(BaseModel):
    """One job in a digest."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    job_key: str
    status: str
    best: float | None = None
    best_algorithm: str | None = None
    target: float | None = None
    model_key: str | None = None  # the champion of a COMPLETED job
    achieved: float | None = None
    running: int = 0  # algorithms RUNNING
    algorithms: int = 0
    eta: float | None = None  # when the forecast expects the target (epoch seconds)
    at_risk: bool = False  # the forecast sees no algorithm reaching the target


class DailyDigest(BaseModel):
    """One channel's digest for one local day."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    schema_version: Literal[1] = SCHEMA_VERSION
    channel_id: str = Field(min_length=1)
    day: str  # the local date (ISO) in `tz`
    tz: str
    at: float  # when it was made
    since: float  # jobs that finished after this
    set_by: str | None = None  # the Slack user who turned it on (or last changed it)
    finished: tuple[DigestLine, ...] = ()
    running: tuple[DigestLine, ...] = ()

    def to_json(self) -> str:
        data = self.model_dump(mode="json")
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def read(cls, payload: str) -> DailyDigest:
        """The digest an outbox row holds (ValueError, pydantic's included, if none)."""
        return cls.model_validate_json(payload)


@dataclass(frozen=True, slots=True)
class WatchedJob:
    """What the digest needs of one watched job: its last snapshot, when that changed
    (for a final job: when it ended), and its stored forecast."""

    snapshot: Snapshot
    changed_at: float
    forecast: ForecastSummary | None = None


def digest_line(job: WatchedJob) -> DigestLine:
    snapshot = job.snapshot
    best = snapshot.best()
    forecast = job.forecast if snapshot.status == RUNNING else None
    eta = None
    if forecast is not None and forecast.verdict is Verdict.ON_TRACK and forecast.eta is not None:
        eta = forecast.at + forecast.eta
    return DigestLine(
        job_key=snapshot.job_key,
        status=snapshot.status,
        best=best.latest_performance if best else None,
        best_algorithm=best.algorithm if best else None,
        target=snapshot.target_performance,
        model_key=snapshot.model_key,
        achieved=snapshot.achieved_performance,
        running=sum(1 for a in snapshot.algorithms if a.status == RUNNING),
        algorithms=len(snapshot.algorithms),
        eta=eta,
        at_risk=forecast is not None and forecast.verdict is Verdict.AT_RISK,
    )


def build_digest(
    channel_id: str,
    jobs: Sequence[WatchedJob],
    *,
    day: str,
    tz: str,
    since: float,
    now: float,
    set_by: str | None = None,
) -> DailyDigest | None:
    """The day's digest for a channel, or None when no job finished since `since` and
    none is still going (a quiet day posts nothing)."""
    finished = [digest_line(j) for j in jobs if j.snapshot.terminal and j.changed_at > since]
    going = [digest_line(j) for j in jobs if not j.snapshot.terminal]
    if not finished and not going:
        return None
    return DailyDigest(
        channel_id=channel_id,
        day=day,
        tz=tz,
        at=now,
        since=since,
        set_by=set_by,
        finished=tuple(finished),
        running=tuple(going),
    )
