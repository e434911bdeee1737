"""Pydantic models of MathFi's wire format, and the snapshot the watch engine diffs.

Frozen, wire names as camelCase aliases, unknown fields ignored, status strings kept
as they are (MathFi may add values we have never seen), NaN and infinity refused.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

PENDING = "PENDING"
RUNNING = "RUNNING"
COMPLETED = "COMPLETED"
TIMED_OUT = "TIMED_OUT"
NOT_COMPLETED = "NOT_COMPLETED"
CANCELLED = "CANCELLED"
FAILED = "FAILED"

TRAINING_STATUSES = (PENDING, RUNNING, COMPLETED, TIMED_OUT, NOT_COMPLETED, CANCELLED, FAILED)
TERMINAL_STATUSES = frozenset({COMPLETED, TIMED_OUT, NOT_COMPLETED, CANCELLED, FAILED})
ALERT_STATUSES = frozenset({FAILED, TIMED_OUT, NOT_COMPLETED})


# Length caps on MathFi's lists. MathFi documents four competing algorithms per job and
# 4-5 `recentPerformances` (REFERENCE.md §5.3; the simulator keeps 5). The caps sit far
# above that (250x, 200x) so a bigger MathFi keeps working, yet bound what one poll can
# cost downstream: a history row, a diff entry and a card line per algorithm, a sparkline
# over the values. The body cap (MATHFI_MAX_BODY) bounds memory; these bound the work.
MAX_ALGORITHMS = 1_000
MAX_RECENT_PERFORMANCES = 1_000


def is_terminal(status: str) -> bool:
    return status in TERMINAL_STATUSES


class WireModel(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        alias_generator=to_camel,
        populate_by_name=True,
        allow_inf_nan=False,
    )


class LoginResponse(WireModel):
    access_token: str = Field(alias="access_token", min_length=1)
    token_type: str = Field(default="Bearer", alias="token_type")
    expires_in: int = Field(default=3600, alias="expires_in", gt=0)
    username: str | None = Field(default=None, alias="username")


class AlgorithmProgress(WireModel):
    """One competing algorithm inside a training job."""

    training_job_key: str | None = None
    algorithm: str
    status: str
    latest_performance: float | None = None
    recent_performances: tuple[float, ...] = Field((), max_length=MAX_RECENT_PERFORMANCES)

    @field_validator("recent_performances", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return () if value is None else value


class TrainingProgress(WireModel):
    """GET /api/v1/training/{key}/progress."""

    status: str
    target_performance: float | None = None
    jobs: tuple[AlgorithmProgress, ...] = Field((), max_length=MAX_ALGORITHMS)

    @field_validator("jobs", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return () if value is None else value


class TrainingJob(WireModel):
    """GET /api/v1/training/{key}: the summary, with the champion `modelKey`."""

    training_job_key: str
    dataset_key: str
    status: str
    target_performance: float
    scaling_factor: int | None = None
    achieved_performance: float | None = None
    training_performance: float | None = None
    test_performance: float | None = None
    model_key: str | None = None


class StartTrainingResponse(WireModel):
    training_job_key: str
    dataset_key: str
    status: str
    training_job_progress_url: str | None = None


class CancelTrainingResponse(WireModel):
    status: str
    target_performance: float | None = None


class Dataset(WireModel):
    dataset_key: str | None = None
    dataset_name: str | None = None
    number_of_buckets: int | None = None
    status: str
    created_on: str | None = None
    description: str | None = None


class DatasetList(WireModel):
    datasets: tuple[Dataset, ...] = ()
    offset: int | None = None
    limit: int | None = None
    total: int | None = None


class DatasetUploadInfo(WireModel):
    upload_url: str | None = None
    extra_headers: str | None = None


class CreateDatasetResponse(WireModel):
    dataset_key: str
    status: str
    dataset_creation_progress_url: str | None = None
    dataset_upload_info: DatasetUploadInfo | None = None
    number_of_buckets: int | None = None


class Snapshot(BaseModel):
    """What the watch engine stores per job and diffs: progress plus the champion facts.

    `model_key`, `achieved_performance`, `training_performance` and `test_performance`
    come from GET /api/v1/training/{key}, fetched once the job is COMPLETED.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    job_key: str
    status: str
    target_performance: float | None = None
    algorithms: tuple[AlgorithmProgress, ...] = ()
    model_key: str | None = None
    achieved_performance: float | None = None
    training_performance: float | None = None
    test_performance: float | None = None

    @classmethod
    def from_api(
        cls, job_key: str, progress: TrainingProgress, job: TrainingJob | None = None
    ) -> Snapshot:
        target = progress.target_performance
        if target is None and job is not None:
            target = job.target_performance
        return cls(
            job_key=job_key,
            status=progress.status,
            target_performance=target,
            algorithms=progress.jobs,
            model_key=job.model_key if job else None,
            achieved_performance=job.achieved_performance if job else None,
            training_performance=job.training_performance if job else None,
            test_performance=job.test_performance if job else None,
        )

    def best(self) -> AlgorithmProgress | None:
        """The algorithm with the highest latest performance (first one wins a tie)."""
        scored = [a for a in self.algorithms if a.latest_performance is not None]
        if not scored:
            return None
        return max(scored, key=lambda a: a.latest_performance or 0.0)

    def canonical_json(self) -> str:
        """Stable serialisation: equal snapshots give equal strings (and hashes)."""
        return self.model_dump_json(by_alias=False)

    @property
    def terminal(self) -> bool:
        return is_terminal(self.status)
