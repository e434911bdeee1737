"""At start: the actions a stopped or crashed bot left `requested` end `unknown`.

A click's row is written `requested` before MathFi is asked and finished when MathFi
answers; a bot that died in between (a crash, a stop cut short) left it `requested`, which
says "under way" and holds the job's cancel or retrain for good. A row begun longer than
MATHFI_TIMEOUT ago can no longer be waiting on any call, so it becomes `unknown`: MathFi
may have acted, and a request that may have taken effect is never sent again. Each is on
the record as the runner's outcomes are: an audit line, `mathfi_actions_total`, and for a
cancel or a retrain a line in the job's thread of the channel that asked.
"""

from __future__ import annotations

import logging

from bot.metrics import Metrics
from bot.slack.actions import STOPPED, ActionKind, ActionOutcome, Result, StartParameters
from bot.slack.audit import log_line
from bot.slack.commands.action_record import action_row
from store import ActionRecord, AsyncStore, NewOutboxRow

log = logging.getLogger(__name__)

ANSWER = f"outcome unknown: {STOPPED}"


async def expire_orphaned_actions(
    store: AsyncStore, metrics: Metrics, *, now: float, mathfi_timeout: float
) -> list[ActionRecord]:
    """The actions `requested` since before `now - mathfi_timeout`, now `unknown`, on the record."""
    expired = await store.expire_requested(before=now - mathfi_timeout, answer=ANSWER, now=now)
    lines: list[NewOutboxRow] = []
    for row in expired:
        metrics.actions.labels(action=row.kind, outcome=Result.UNKNOWN.value).inc()
        log_line(
            team=row.team_id or "", channel=row.channel_id, user=row.user_id,
            command="(at start)", result=f"{row.kind} {row.subject_key}: unknown: {STOPPED}",
        )  # fmt: skip
        line = _thread_line(row)
        if line is not None:
            lines.append(line)
    if expired:
        log.warning(
            "%d action(s) left under way by a stopped bot are now 'outcome unknown'",
            len(expired),
        )
    if lines:
        await store.enqueue(lines)
    return expired


def _thread_line(row: ActionRecord) -> NewOutboxRow | None:
    """A cancel's or a retrain's line in the thread of the job it names (a start has no
    job yet: its audit line is all)."""
    kind = ActionKind(row.kind)
    if kind is ActionKind.START:
        return None
    params = None
    if kind is ActionKind.RETRAIN:
        try:
            params = StartParameters.model_validate_json(row.parameters)
        except ValueError:
            params = None
    outcome = ActionOutcome(Result.UNKNOWN, kind, row, job_key=row.subject_key, reason=ANSWER)
    return action_row(outcome, channel_id=row.channel_id, job_key=row.subject_key, params=params)
