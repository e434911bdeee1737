"""The action runner: start, retrain or cancel a training exactly once, on the record.
(A little over 300 lines: the runner and the words of each outcome it records stay together.)

Service-independent: given the AsyncStore, the MathFi client and the permission check, one
call runs

    permission -> begin_action (the row, BEFORE MathFi) -> one MathFi call -> finish_action

and returns a typed `ActionOutcome` for the command layer to render. A refusal is recorded
(state `refused`, under `refused:<key>`, so it never holds the key for someone allowed);
a key seen before (a double click, Slack's redelivery) returns the first row as a
DUPLICATE without calling MathFi. A cancel and a retrain are once per job
(`once_per_subject`): a second click by anyone finds the first. Nothing is retried here:
the client never repeats a POST/PATCH that may have reached MathFi, and an unknown outcome
is told as unknown. A cancel whose answer was lost is checked with one GET (a read): a job
now CANCELLED was cancelled. When the service stops, the MathFi calls still waited on are
cut short (`cut_short`): each of those actions finishes `unknown`, told as such, before
the store closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from bot.core.models import CancelTrainingResponse, StartTrainingResponse, TrainingJob
from bot.errors import (
    MathFiAuthError,
    MathFiError,
    MathFiOutcomeUnknown,
    MathFiParseError,
    MathFiRequestError,
    MathFiUnavailable,
    TrainingJobNotFound,
)
from bot.slack.permissions import Decision, Verdict
from store import ActionRecord, AsyncStore

log = logging.getLogger(__name__)

# Why an action cut short by a stop is unknown: MathFi may have acted.
STOPPED = "the bot stopped before MathFi answered"

TERMINAL = frozenset({"COMPLETED", "TIMED_OUT", "NOT_COMPLETED", "CANCELLED", "FAILED"})


class ActionKind(StrEnum):
    START = "start"
    CANCEL = "cancel"
    RETRAIN = "retrain"


class Result(StrEnum):
    DONE = "done"
    FAILED = "failed"  # MathFi did nothing
    UNKNOWN = "unknown"  # MathFi may have acted: a person must check
    REFUSED = "refused"  # the person may not act; MathFi not called
    DUPLICATE = "duplicate"  # seen before: `action` is the first row, MathFi not called


class StartParameters(BaseModel):
    """What a start or a retrain asks for; kept as JSON in the action row (version 1)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: Literal[1] = 1
    dataset_key: str
    target: float
    scaling_factor: int
    mention: str | None = None
    events: str | None = None
    retrain_of: str | None = None  # the job a retrain follows


class CancelParameters(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    version: Literal[1] = 1
    job_key: str


@dataclass(frozen=True)
class Actor:
    team_id: str | None
    channel_id: str
    user_id: str


@dataclass(frozen=True)
class ActionOutcome:
    result: Result
    kind: ActionKind
    action: ActionRecord
    job_key: str | None = None  # the job started, or the job cancelled
    status: str | None = None  # the job's status as MathFi last told it, when known
    reason: str = ""  # plain text for the person: why it failed / was refused / is unknown
    verdict: Verdict = Verdict.ALLOWED


class MathFiActions(Protocol):
    async def start_training(
        self, dataset_key: str, *, scaling_factor: int, performance_threshold: float
    ) -> StartTrainingResponse: ...
    async def cancel_training(self, key: str) -> CancelTrainingResponse: ...
    async def get_training(self, key: str) -> TrainingJob: ...


class PermissionChecker(Protocol):
    async def check(self, user_id: str) -> Decision: ...


@dataclass(frozen=True)
class _Finish:
    result: Literal[Result.DONE, Result.FAILED, Result.UNKNOWN]
    answer: str  # MathFi's answer, summarised for the record
    reason: str = ""
    job_key: str | None = None
    status: str | None = None


class ActionRunner:
    def __init__(
        self, store: AsyncStore, mathfi: MathFiActions, permissions: PermissionChecker
    ) -> None:
        self._store, self._mathfi, self._permissions = store, mathfi, permissions
        self._calls: set[asyncio.Task[_Finish]] = set()  # the MathFi calls waited on now

    def cut_short(self) -> int:
        """The service stops: every MathFi call still waited on is abandoned; its action
        finishes `unknown` (MathFi may have acted) and its click is told so. How many."""
        for call in self._calls:
            call.cancel()
        return len(self._calls)

    async def start(self, *, key: str, actor: Actor, params: StartParameters) -> ActionOutcome:
        """Start (or, with `params.retrain_of`, retrain) a training once per `key`."""
        kind = ActionKind.RETRAIN if params.retrain_of else ActionKind.START
        subject = params.retrain_of or params.dataset_key

        async def call() -> _Finish:
            try:
                started = await self._mathfi.start_training(
                    params.dataset_key,
                    scaling_factor=params.scaling_factor,
                    performance_threshold=params.target,
                )
            except (MathFiOutcomeUnknown, MathFiParseError) as err:
                return _start_unknown(params.dataset_key, err.public_reason)
            except MathFiError as err:
                return _failed(err, f"dataset {params.dataset_key}")
            return _Finish(
                Result.DONE,
                started.status,
                job_key=started.training_job_key,
                status=started.status,
            )

        once = kind is ActionKind.RETRAIN
        stopped = _start_unknown(params.dataset_key, STOPPED)
        return await self._run(
            kind, key, actor, subject, params.model_dump_json(), once, call, stopped
        )

    async def cancel(self, *, key: str, actor: Actor, job_key: str) -> ActionOutcome:
        """Cancel `job_key` once, whoever clicks and however often."""

        async def call() -> _Finish:
            try:
                answer = await self._mathfi.cancel_training(job_key)
            except (MathFiOutcomeUnknown, MathFiParseError) as err:
                return await self._resolve_cancel(job_key, err)
            except MathFiRequestError as err:
                if err.status == 409:  # our simulator's (and likely MathFi's) "already ended"
                    return await self._already_ended(job_key)
                return _failed(err, f"job {job_key}")
            except MathFiError as err:
                return _failed(err, f"job {job_key}")
            return _Finish(Result.DONE, answer.status, job_key=job_key, status=answer.status)

        params = CancelParameters(job_key=job_key).model_dump_json()
        stopped = _cancel_unknown(job_key, STOPPED, None)
        return await self._run(ActionKind.CANCEL, key, actor, job_key, params, True, call, stopped)

    async def _run(
        self,
        kind: ActionKind,
        key: str,
        actor: Actor,
        subject: str,
        parameters: str,
        once_per_subject: bool,
        call: Callable[[], Awaitable[_Finish]],
        stopped: _Finish,
    ) -> ActionOutcome:
        decision = await self._permissions.check(actor.user_id)
        if not decision.allowed:
            refused = await self._store.refuse_action(
                idempotency_key=f"refused:{key}", kind=kind.value, subject_key=subject,
                reason=decision.reason, parameters=parameters, team_id=actor.team_id,
                channel_id=actor.channel_id, user_id=actor.user_id,
            )  # fmt: skip
            log.info(
                "refused %s of %s by %s in %s: %s",
                kind, subject, actor.user_id, actor.channel_id, decision.verdict,
            )  # fmt: skip
            return ActionOutcome(
                Result.REFUSED, kind, refused, reason=decision.reason, verdict=decision.verdict
            )
        row, created = await self._store.begin_action(
            idempotency_key=key, kind=kind.value, subject_key=subject, parameters=parameters,
            once_per_subject=once_per_subject, team_id=actor.team_id,
            channel_id=actor.channel_id, user_id=actor.user_id,
        )  # fmt: skip
        if not created:
            log.info("%s of %s by %s: already recorded as action %s (%s)",
                     kind, subject, actor.user_id, row.id, row.state)  # fmt: skip
            job = row.result_job_key or (subject if kind is ActionKind.CANCEL else None)
            return ActionOutcome(Result.DUPLICATE, kind, row, job_key=job, reason=row.answer or "")
        waited = asyncio.ensure_future(call())
        self._calls.add(waited)
        try:
            finish = await waited
        except BaseException as err:  # MathFi may have acted
            task = asyncio.current_task()
            if isinstance(err, asyncio.CancelledError) and task and not task.cancelling():
                finish = stopped  # `cut_short` (the service stops): told, not raised
            else:  # a bug, or this click's own task cancelled, after the row
                await self._store.finish_action(row.id, state="unknown", answer="the bot failed")
                raise
        finally:
            self._calls.discard(waited)
        done = await self._store.finish_action(
            row.id, state=finish.result.value, answer=finish.answer, result_job_key=finish.job_key
        )
        log.info(
            "%s of %s by %s in %s: %s (%s)",
            kind, subject, actor.user_id, actor.channel_id, finish.result, finish.answer,
        )  # fmt: skip
        return ActionOutcome(
            finish.result,
            kind,
            done or row,
            job_key=finish.job_key,
            status=finish.status,
            reason=finish.reason,
        )

    async def _job_status(self, job_key: str) -> str | None:
        """The job's status now, by one GET (a read); None when MathFi does not say."""
        try:
            return (await self._mathfi.get_training(job_key)).status
        except MathFiError as err:
            log.info("could not read job %s after a cancel: %s", job_key, err.public_reason)
            return None

    async def _already_ended(self, job_key: str) -> _Finish:
        status = await self._job_status(job_key)
        shown = f" ({status})" if status else ""
        return _Finish(
            Result.FAILED,
            f"already ended{shown}",
            f"Job {job_key} has already ended{shown}: there is nothing to cancel.",
            job_key=job_key,
            status=status,
        )

    async def _resolve_cancel(self, job_key: str, err: MathFiError) -> _Finish:
        status = await self._job_status(job_key)
        if status == "CANCELLED":
            return _Finish(
                Result.DONE, "CANCELLED (read back)", job_key=job_key, status="CANCELLED"
            )
        return _cancel_unknown(job_key, err.public_reason, status)


def _start_unknown(dataset_key: str, why: str) -> _Finish:
    return _Finish(
        Result.UNKNOWN,
        f"outcome unknown: {why}",
        f"MathFi did not say whether the training started ({why}). Check the MathFi "
        f"dashboard for a training of dataset {dataset_key} started just now before starting "
        "it again.",
    )


def _cancel_unknown(job_key: str, why: str, status: str | None) -> _Finish:
    now = f" It is {status} now." if status else ""
    return _Finish(
        Result.UNKNOWN,
        f"outcome unknown: {why}",
        f"MathFi did not say whether job {job_key} was cancelled ({why}).{now} Check it on "
        "the MathFi dashboard.",
        job_key=job_key,
        status=status,
    )


def _failed(err: MathFiError, what: str) -> _Finish:
    """MathFi did nothing: why, for the record and for the person."""
    if isinstance(err, TrainingJobNotFound):
        reason = f"MathFi has no training job {err.key}."
    elif isinstance(err, MathFiAuthError):
        reason = (
            "MathFi refused the bot's credentials, so nothing was done. Ask whoever runs the "
            "bot to check MATHFI_USERNAME and MATHFI_PASSWORD."
        )
    elif isinstance(err, MathFiUnavailable):
        reason = "MathFi cannot be reached right now, so nothing was done. Try again in a minute."
    elif isinstance(err, MathFiRequestError) and err.status == 404:
        reason = f"MathFi does not know {what}."
    elif isinstance(err, MathFiRequestError) and err.status == 409:
        reason = f"MathFi refused: {what} is not in a state that allows it (HTTP 409)."
    elif isinstance(err, MathFiRequestError):
        reason = f"MathFi refused the request for {what} (HTTP {err.status}); nothing was done."
    else:
        reason = f"MathFi refused the request for {what} ({err.public_reason}); nothing was done."
    return _Finish(Result.FAILED, f"failed: {err.public_reason}", reason)
