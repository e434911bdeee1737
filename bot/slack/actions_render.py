"""Acting from Slack, rendered: confirmations, the datasets list, outcomes, thread lines. Pure.

Every string from MathFi or a person goes through `clip` / `code` (escaped, cut), blocks are
slack_sdk models (their validators run on `to_dict()`), and every message keeps within Block
Kit's limits (button text 75, value 2000, confirm dialog title 100 / text 300, section 3000).
A confirmation's button carries the confirmation token minted when it was shown: the
action runner's idempotency key, so a double click on it acts once.

(Just over 300 lines: every message of acting from Slack, the thread lines and the card's
and notification's action buttons together, so their limits are checked in one place.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, ConfirmObject

from bot.core.events import Event, EventKind
from bot.core.models import NOT_COMPLETED, PENDING, RUNNING, TIMED_OUT, Dataset, Snapshot
from bot.slack.actions import ActionKind, ActionOutcome, Result, StartParameters
from bot.slack.text import (
    MAX_NAME,
    Message,
    clip,
    code,
    context,
    fold,
    section,
    status_text,
    target_text,
    to_message,
)

ACTION_START_TRAINING = "mathfi_start_training"  # value: the confirmation token
ACTION_CONFIRM_CANCEL = "mathfi_cancel_confirmed"  # value: the confirmation token
ACTION_CANCEL_JOB = "mathfi_cancel_job"  # the card's Cancel; value: the job key
ACTION_RETRAIN = "mathfi_retrain"  # on a miss or an at-risk warning; value: the job key
MAX_TOKEN = 200
DATASETS_BUDGET = 6000
DATASET_EMOJI = {"PENDING": "⏳", "PROCESSING": "⚙️", "COMPLETED": "✅", "FAILED": "❌"}
NOT_READY = {
    "PENDING": "is still waiting for its data (upload the CSV first)",
    "PROCESSING": "is still being prepared: try again in a few minutes",
    "FAILED": "failed to prepare: MathFi could not use its data (upload it again as a new dataset)",
}


def _token(token: str) -> str:
    if not token or len(token) > MAX_TOKEN:
        raise ValueError("a confirmation token is 1 to 200 characters")
    return token


def dataset_label(dataset: Dataset, key: str) -> str:
    name = dataset.dataset_name
    return f"*{clip(name, MAX_NAME)}* {code(key)}" if name else code(key)


def dataset_status(status: str) -> str:
    emoji = DATASET_EMOJI.get(status, "❔")
    return f"{emoji} {clip(status, 40)}"


def render_train_confirmation(dataset: Dataset, params: StartParameters, *, token: str) -> Message:
    """The ephemeral "start this training?" with its Start training button."""
    what = "Retrain" if params.retrain_of else "Start a training"
    lines = [
        f"*{what}* on dataset {dataset_label(dataset, params.dataset_key)}?",
        f"Target performance *{target_text(params.target)}* · scaling factor "
        f"*{params.scaling_factor}*",
    ]
    if params.retrain_of:
        lines.append(f"Follows job {code(params.retrain_of)}")
    options = [f"events {clip(params.events or 'all', 20)}"]
    if params.mention:
        options.append(f"alerts mention {clip(params.mention, 200)}")
    lines.append("Watched in this channel: " + ", ".join(options))
    button = ButtonElement(
        text="Start training",
        action_id=ACTION_START_TRAINING,
        value=_token(token),
        style="primary",
    )
    blocks: list[Block] = [
        section("\n".join(lines)),
        ActionsBlock(elements=[button]),
        context(
            "Starting spends MathFi compute. The button starts it once, however often "
            "it is clicked."
        ),
    ]
    text = f"{what} on dataset {clip(dataset.dataset_name or params.dataset_key, 100)}?"
    return to_message(text, blocks)


def render_dataset_not_ready(dataset: Dataset, key: str) -> Message:
    """`train` on a dataset that is not COMPLETED: what its status means."""
    status = dataset.status
    why = NOT_READY.get(status, f"is {clip(status, 40)}, not COMPLETED")
    text = (
        f"⚠️ Dataset {dataset_label(dataset, key)} {why}. A training starts on a COMPLETED dataset."
    )
    return to_message(text, [section(text)])


def render_dataset_unknown(key: str) -> Message:
    text = f"⚠️ MathFi has no dataset {code(key)}. `/mathfi datasets` lists the account's datasets."
    return to_message(text, [section(text)])


def cancel_confirm_dialog(job_key: str) -> ConfirmObject:
    return ConfirmObject(
        title="Cancel this training?",
        text=f"MathFi stops job {code(job_key, 60)} and its work is lost. This cannot be undone.",
        confirm="Cancel training",
        deny="Keep it running",
        style="danger",
    )


def cancel_button(job_key: str) -> ButtonElement:
    """The card's Cancel (for a PENDING or RUNNING job), behind Slack's confirm dialog."""
    return ButtonElement(
        text="Cancel training",
        action_id=ACTION_CANCEL_JOB,
        value=job_key[:2000],
        style="danger",
        confirm=cancel_confirm_dialog(job_key),
    )


def render_cancel_confirmation(job_key: str, *, status: str, token: str) -> Message:
    """The ephemeral answer to `/mathfi cancel <key>`: the job's status and a button."""
    text = f"*Cancel* training job {code(job_key)}? It is {status_text(status)}."
    button = ButtonElement(
        text="Cancel training",
        action_id=ACTION_CONFIRM_CANCEL,
        value=_token(token),
        style="danger",
        confirm=cancel_confirm_dialog(job_key),
    )
    blocks: list[Block] = [section(text), ActionsBlock(elements=[button])]
    return to_message(f"Cancel training job {clip(job_key, 100)}?", blocks)


def render_datasets(
    datasets: Sequence[Dataset], *, page: int, per_page: int, total: int, command: str = "/mathfi"
) -> Message:
    """One page of the account's datasets, newest first: name, key, status, created."""
    pages = max(1, math.ceil(total / per_page)) if per_page > 0 else 1
    if not datasets:
        text = "The MathFi account has no datasets." if total == 0 else f"There is no page {page}."
        return to_message(text, [section(text)])
    newest = sorted(datasets, key=lambda d: d.created_on or "", reverse=True)
    lines = [_dataset_line(dataset) for dataset in newest]
    texts, shown = fold(lines, budget=DATASETS_BUDGET)
    header = f"*MathFi datasets* · page {page} of {pages} ({total} in all)"
    blocks: list[Block] = [section(header), *(section(text) for text in texts)]
    notes = []
    if shown < len(lines):
        notes.append(f"… and {len(lines) - shown} more on this page")
    if page < pages:
        notes.append(f"More: {code(f'{command} datasets {page + 1}', 200)}")
    if notes:
        blocks.append(context(" · ".join(notes)))
    return to_message(f"MathFi datasets, page {page} of {pages}", blocks)


def _dataset_line(dataset: Dataset) -> str:
    key = code(dataset.dataset_key or "?")
    name = clip(dataset.dataset_name or "(no name)", MAX_NAME)
    created = f" · created {clip(dataset.created_on, 40)}" if dataset.created_on else ""
    return f"• *{name}* {key} · {dataset_status(dataset.status)}{created}"


# -- outcomes and the job's thread -------------------------------------------------------


def started_line(user_id: str, params: StartParameters, job_key: str) -> str:
    """The line under the new job's card, or in the channel when it may not watch one more
    job (no card): so it names the job."""
    line = (
        f"▶️ Started by <@{clip(user_id, 30)}>: job {code(job_key)}, target "
        f"{target_text(params.target)}, scaling factor {params.scaling_factor}"
    )
    if params.retrain_of:
        line += f", retraining {code(params.retrain_of)}"
    return line


def cancelled_line(user_id: str) -> str:
    return f"🚫 Cancelled by <@{clip(user_id, 30)}>"


def refused_line(user_id: str, kind: ActionKind, reason: str) -> str:
    return f"🙅 <@{clip(user_id, 30)}> may not {_verb(kind)} this training: {clip(reason, 300)}"


def unknown_line(user_id: str, kind: ActionKind, what_to_check: str) -> str:
    """'outcome unknown: check …': MathFi may have acted; the person must look."""
    return (
        f"❔ <@{clip(user_id, 30)}> asked to {_verb(kind)} this training; outcome unknown: "
        f"check {clip(what_to_check, 300)}"
    )


def what_to_check(outcome: ActionOutcome, subject: str) -> str:
    if outcome.kind is ActionKind.CANCEL:
        return f"job {subject}'s status on the MathFi dashboard before cancelling again"
    return (
        f"the MathFi dashboard for a training of dataset {subject} started just now, "
        "before starting another"
    )


def render_outcome(outcome: ActionOutcome) -> Message:
    """The ephemeral answer to the person who clicked."""
    job = code(outcome.job_key) if outcome.job_key else None
    result, kind = outcome.result, outcome.kind
    if result is Result.DONE and kind is ActionKind.CANCEL:
        text = f"🚫 Job {job} is cancelled."
    elif result is Result.DONE:
        text = f"▶️ Training {job} started ({status_text(outcome.status or 'PENDING')})."
    elif result is Result.DUPLICATE:
        text = _duplicate(outcome, job)
    elif result is Result.UNKNOWN:
        text = f"❔ Outcome unknown: {clip(outcome.reason, 600)}"
    else:
        text = f"⚠️ {clip(outcome.reason, 600)}"
    return to_message(text, [section(text)])


def _duplicate(outcome: ActionOutcome, job: str | None) -> str:
    row = outcome.action
    by = f"<@{clip(row.user_id, 30)}>"
    if row.state == "done" and outcome.kind is ActionKind.CANCEL:
        return f"🚫 Already done: {by} cancelled job {job}."
    if row.state == "done":
        return f"▶️ Already done: {by} started training {job}."
    if row.state == "requested":
        return f"⏳ Already under way: {by} asked for this a moment ago."
    if row.state == "unknown":
        return f"❔ Already asked by {by}; the outcome is unknown: {clip(row.answer or '', 200)}."
    return f"⚠️ This attempt already failed ({clip(row.answer or '', 200)}): ask again."


def failed_line(user_id: str, kind: ActionKind, reason: str) -> str:
    return (
        f"⚠️ <@{clip(user_id, 30)}> asked to {_verb(kind)} this training; nothing was done: "
        f"{clip(reason, 300)}"
    )


def action_line(event: Event) -> str:
    """The thread line of an ACTION_TAKEN event (who did what, and how it ended)."""
    if event.kind is not EventKind.ACTION_TAKEN or event.actor is None:
        raise ValueError(f"not an action line: {event.kind}")
    kind, user, reason = ActionKind(event.act or "start"), event.actor, event.reason or ""
    if event.outcome == Result.DONE and kind is ActionKind.CANCEL:
        return cancelled_line(user)
    if event.outcome == Result.DONE:
        params = StartParameters(
            dataset_key="-",
            target=event.target_performance or 0.0,
            scaling_factor=event.scaling_factor or 0,
            retrain_of=event.retrain_of,
        )
        return started_line(user, params, event.job_key)
    if event.outcome == Result.REFUSED:
        return refused_line(user, kind, reason)
    if event.outcome == Result.UNKNOWN:
        return unknown_line(user, kind, reason)
    return failed_line(user, kind, reason)


def render_action_line(event: Event) -> Message:
    text = action_line(event)
    return to_message(text, [context(text)])


def origin_line(user_id: str, *, retrain_of: str | None) -> str:
    """The card's line for a job started from Slack: who started it, which job it follows."""
    line = f"▶️ started by <@{clip(user_id, 30)}>"
    return line + (f" · retrain of {code(retrain_of)}" if retrain_of else "")


def card_buttons(snapshot: Snapshot, *, acting: bool) -> list[ButtonElement]:
    """The card's action buttons: Cancel while the job is PENDING or RUNNING, when acting
    from Slack is on (`acting`: ACTIONS is not `off`; who may click is asked on the click)."""
    if not acting or snapshot.status not in (PENDING, RUNNING):
        return []
    return [cancel_button(snapshot.job_key)]


def retrain_actions(events: Sequence[Event]) -> ActionsBlock | None:
    """A Retrain button under a final notification that missed its target (NOT_COMPLETED,
    TIMED_OUT) or an at-risk warning; the click proposes MathFi's advice, confirmed first."""
    for event in events:
        missed = event.kind is EventKind.JOB_STATUS and event.new_status in (
            NOT_COMPLETED,
            TIMED_OUT,
        )
        if missed or event.kind is EventKind.AT_RISK:
            button = ButtonElement(
                text="Retrain…", action_id=ACTION_RETRAIN, value=event.job_key[:2000]
            )
            return ActionsBlock(elements=[button])
    return None


def _verb(kind: ActionKind) -> str:
    return {ActionKind.START: "start", ActionKind.CANCEL: "cancel"}.get(kind, "retrain")
