"""Acting from Slack: `/mathfi train|cancel|datasets`, the confirmations' buttons, the
card's Cancel and the Retrain under a miss.

A start or a cancel is always confirmed: `train` and `cancel` (and Retrain) answer with an
ephemeral confirmation whose button names a token (`acting.Confirmations`); the click runs
the action once (`ActionRunner`: permission, the row before MathFi, one call). The card's
Cancel is confirmed by Slack's own dialog. Who may act is asked before a confirmation is
shown and again when it is clicked. Every outcome is on the record
(`action_record`): the audit log, `mathfi_actions_total`, the job's thread.
"""

from __future__ import annotations

import logging
import secrets

from bot.core.diff import best_reached
from bot.core.forecast import retry_threshold
from bot.core.models import Snapshot, is_terminal
from bot.errors import MathFiError, MathFiRequestError
from bot.slack import replies
from bot.slack.actions import ActionKind, ActionOutcome, Result, StartParameters
from bot.slack.actions import Actor as RunnerActor
from bot.slack.actions_render import (
    render_cancel_confirmation,
    render_dataset_not_ready,
    render_dataset_unknown,
    render_datasets,
    render_outcome,
    render_train_confirmation,
)
from bot.slack.audit import Actor, audit
from bot.slack.command_text import DEFAULT_SCALING_FACTOR, Cancel, Datasets, Train
from bot.slack.commands.acting import ActionTools, Proposal
from bot.slack.commands.action_record import (
    on_the_record,
    refusal_on_the_record,
    show_cancelled,
    tell_in_thread,
    watch_started,
)
from bot.slack.commands.context import CommandContext
from bot.slack.render import Message, render_error

log = logging.getLogger("bot.actions")

NOT_SET_UP = "Acting from Slack is not set up in this bot."
# A bug after the click: MathFi may have acted (the row is done or unknown), so never
# "nothing was changed".
MAY_HAVE_ACTED = (
    "Something went wrong on our side, and MathFi may have acted: check the job on the "
    "MathFi dashboard before you try again."
)
STALE = (
    "This confirmation has expired (after 15 minutes, or the bot restarted), so nothing was "
    "done. Ask again."
)


class NotSetUp(Exception):
    """The service built no `ActionTools` (a context made for the other commands)."""


def _tools(ctx: CommandContext) -> ActionTools:
    if ctx.acting is None:
        raise NotSetUp(NOT_SET_UP)
    return ctx.acting


async def _refused(
    ctx: CommandContext, actor: Actor, channel_id: str, kind: ActionKind, subject: str,
    *, thread: str | None = None,
) -> Message | None:  # fmt: skip
    """None when the person may act; else their refusal, recorded (and told in `thread`)."""
    decision = await _tools(ctx).permissions.check(actor.user_id)
    if decision.allowed:
        return None
    nonce = actor.trigger_id or secrets.token_hex(8)
    row = await ctx.store.refuse_action(
        idempotency_key=f"refused:{kind}:{subject}:{nonce}", kind=kind.value,
        team_id=actor.team_id, channel_id=channel_id, user_id=actor.user_id,
        subject_key=subject, reason=decision.reason,
    )  # fmt: skip
    refusal_on_the_record(ctx, actor, channel_id, kind, subject, decision.verdict.value)
    if thread is not None:
        outcome = ActionOutcome(Result.REFUSED, kind, row, reason=decision.reason)
        await tell_in_thread(ctx, outcome, channel_id=channel_id, job_key=thread)
    return render_error(decision.reason)


async def _confirm_start(
    ctx: CommandContext, actor: Actor, channel_id: str, params: StartParameters
) -> Message:
    """The dataset checked (it exists and is COMPLETED), then the confirmation."""
    tools = _tools(ctx)
    try:
        dataset = await tools.mathfi.get_dataset(params.dataset_key)
    except MathFiRequestError as err:
        if err.status == 404:
            return render_dataset_unknown(params.dataset_key)
        return render_error(replies.mathfi_problem(err, params.dataset_key))
    except MathFiError as err:
        return render_error(replies.mathfi_problem(err, params.dataset_key))
    if dataset.status != "COMPLETED":
        audit(actor, channel_id, f"dataset {params.dataset_key} is {dataset.status}")
        return render_dataset_not_ready(dataset, params.dataset_key)
    kind = ActionKind.RETRAIN if params.retrain_of else ActionKind.START
    proposal = Proposal(kind, actor.team_id, channel_id, actor.user_id, start=params)
    token = tools.confirmations.propose(proposal, trigger_id=actor.trigger_id)
    audit(actor, channel_id, f"confirmation shown: {kind} on {params.dataset_key}")
    return render_train_confirmation(dataset, params, token=token)


async def run_train(ctx: CommandContext, cmd: Train, actor: Actor, channel_id: str) -> Message:
    refused = await _refused(ctx, actor, channel_id, ActionKind.START, cmd.dataset_key)
    if refused is not None:
        return refused
    params = StartParameters(
        dataset_key=cmd.dataset_key, target=cmd.target, scaling_factor=cmd.scaling_factor,
        mention=cmd.mention, events=cmd.events,
    )  # fmt: skip
    return await _confirm_start(ctx, actor, channel_id, params)


async def run_cancel(ctx: CommandContext, cmd: Cancel, actor: Actor, channel_id: str) -> Message:
    tools = _tools(ctx)
    refused = await _refused(ctx, actor, channel_id, ActionKind.CANCEL, cmd.key, thread=cmd.key)
    if refused is not None:
        return refused
    try:
        progress = await tools.mathfi.get_progress(cmd.key)
    except MathFiError as err:
        return render_error(replies.mathfi_problem(err, cmd.key))
    if is_terminal(progress.status):
        audit(actor, channel_id, f"cancel {cmd.key}: already ended ({progress.status})")
        return render_error(
            f"Job `{cmd.key}` has already ended ({progress.status}): there is nothing to cancel."
        )
    proposal = Proposal(
        ActionKind.CANCEL, actor.team_id, channel_id, actor.user_id, job_key=cmd.key
    )
    token = tools.confirmations.propose(proposal, trigger_id=actor.trigger_id)
    audit(actor, channel_id, f"confirmation shown: cancel {cmd.key}")
    return render_cancel_confirmation(cmd.key, status=progress.status, token=token)


async def run_datasets(
    ctx: CommandContext, cmd: Datasets, actor: Actor, channel_id: str
) -> Message:
    tools = _tools(ctx)
    per_page = tools.datasets_per_page
    try:
        found = await tools.mathfi.list_datasets(offset=(cmd.page - 1) * per_page, limit=per_page)
    except MathFiError as err:
        return render_error(replies.mathfi_problem(err, "datasets"))
    total = found.total if found.total is not None else len(found.datasets)
    return render_datasets(
        found.datasets, page=cmd.page, per_page=per_page, total=total, command=ctx.command
    )


# -- the clicks ---------------------------------------------------------------------------


async def click_start(ctx: CommandContext, token: str, actor: Actor, channel_id: str) -> Message:
    """Start training (after `train` or Retrain): the proposal the token names, once."""
    tools = _tools(ctx)
    proposal = tools.confirmations.get(token)
    if proposal is None or proposal.start is None:
        audit(actor, channel_id, "start: stale or unknown confirmation")
        return render_error(STALE)
    if proposal.user_id != actor.user_id:
        return render_error("This confirmation was shown to somebody else; nothing was done.")
    params = proposal.start
    who = RunnerActor(team_id=actor.team_id, channel_id=channel_id, user_id=actor.user_id)
    outcome = await tools.runner.start(key=f"confirm:{token}", actor=who, params=params)
    on_the_record(ctx, actor, channel_id, outcome, params.retrain_of or params.dataset_key)
    message = render_outcome(outcome)
    if outcome.result is Result.DONE and outcome.job_key:
        if not await watch_started(ctx, outcome, params, actor=actor, channel_id=channel_id):
            return render_error(
                f"Training `{outcome.job_key}` started, but this channel already watches as many "
                f"jobs as allowed: `{ctx.command} subscribe {outcome.job_key}` after an "
                "unsubscribe."
            )
    elif params.retrain_of:  # a retrain's refusal, failure or unknown: in the old job's thread
        await tell_in_thread(
            ctx, outcome, channel_id=channel_id, job_key=params.retrain_of, params=params
        )
    return message


async def _cancel(
    ctx: CommandContext, key: str, job_key: str, actor: Actor, channel_id: str
) -> Message:
    who = RunnerActor(team_id=actor.team_id, channel_id=channel_id, user_id=actor.user_id)
    outcome = await _tools(ctx).runner.cancel(key=key, actor=who, job_key=job_key)
    on_the_record(ctx, actor, channel_id, outcome, job_key)
    if outcome.result is Result.DONE:
        await show_cancelled(ctx, outcome, channel_id=channel_id)
    else:
        await tell_in_thread(ctx, outcome, channel_id=channel_id, job_key=job_key)
    return render_outcome(outcome)


async def click_confirmed_cancel(
    ctx: CommandContext, token: str, actor: Actor, channel_id: str
) -> Message:
    proposal = _tools(ctx).confirmations.get(token)
    if proposal is None or proposal.job_key is None:
        audit(actor, channel_id, "cancel: stale or unknown confirmation")
        return render_error(STALE)
    if proposal.user_id != actor.user_id:
        return render_error("This confirmation was shown to somebody else; nothing was done.")
    return await _cancel(ctx, f"confirm:{token}", proposal.job_key, actor, channel_id)


async def click_card_cancel(
    ctx: CommandContext, job_key: str, actor: Actor, channel_id: str
) -> Message:
    """The card's Cancel (Slack's confirm dialog already said yes). A cancel is once per
    job whoever clicks; the same click delivered again has the same key."""
    nonce = actor.trigger_id or secrets.token_hex(8)
    return await _cancel(ctx, f"card-cancel:{job_key}:{nonce}", job_key, actor, channel_id)


async def click_retrain(
    ctx: CommandContext, job_key: str, actor: Actor, channel_id: str
) -> Message:
    """Retrain: MathFi's advice (the best reached, rounded down to 0.05) on the same dataset
    and scaling factor, with this channel's options; confirmed like `train`."""
    refused = await _refused(ctx, actor, channel_id, ActionKind.RETRAIN, job_key, thread=job_key)
    if refused is not None:
        return refused
    tools = _tools(ctx)
    try:
        training = await tools.mathfi.get_training(job_key)
        progress = await tools.mathfi.get_progress(job_key)
    except MathFiError as err:
        return render_error(replies.mathfi_problem(err, job_key))
    best = best_reached(Snapshot.from_api(job_key, progress, training))
    target = retry_threshold(best) if best is not None else 0.0
    if target <= 0:
        return render_error(
            f"Job `{job_key}` reached no performance to retrain at (best "
            f"{'none' if best is None else f'{best:.4f}'}). Start a new training with "
            f"`{ctx.command} train {training.dataset_key} --target …` instead."
        )
    sub = await ctx.store.get_subscription(channel_id=channel_id, job_key=job_key)
    params = StartParameters(
        dataset_key=training.dataset_key, target=target,
        scaling_factor=training.scaling_factor or DEFAULT_SCALING_FACTOR,
        mention=sub.mention if sub else None, events=sub.events if sub else None,
        retrain_of=job_key,
    )  # fmt: skip
    return await _confirm_start(ctx, actor, channel_id, params)
