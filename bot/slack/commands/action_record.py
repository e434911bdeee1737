"""Acting from Slack, on the record: each outcome is logged on `bot.audit`, counted in
`mathfi_actions_total{action,outcome}`, and told in the job's thread through the outbox
(one row per action and channel, keyed by the action's row: told once however often it is
clicked). What a done action changes in the store is here too: the started job watched in
the channel (its card says who started it), the cancelled job's card CANCELLED at once.
"""

from __future__ import annotations

import logging

from bot.core.diff import snapshot_hash
from bot.core.events import Event, EventKind, EventsFilter
from bot.core.models import CANCELLED, PENDING, Snapshot
from bot.core.notification import action_taken
from bot.engine.jobs import outbox_row
from bot.slack.actions import ActionKind, ActionOutcome, Result, StartParameters
from bot.slack.actions_render import what_to_check
from bot.slack.answers import patiently
from bot.slack.audit import Actor, audit
from bot.slack.commands.context import CommandContext
from bot.slack.commands.subscriptions import subscribe_snapshot
from store import NewOutboxRow, Store, SubscriptionChange, SubscriptionLimitReached

log = logging.getLogger("bot.actions")


def on_the_record(ctx: CommandContext, actor: Actor, channel_id: str, outcome: ActionOutcome,
                  subject: str) -> None:  # fmt: skip
    """The audit line and the count of one outcome (a duplicate too: it did nothing)."""
    ctx.metrics.actions.labels(action=outcome.kind.value, outcome=outcome.result.value).inc()
    job = f" -> {outcome.job_key}" if outcome.job_key else ""
    why = f": {outcome.reason}" if outcome.reason else ""
    audit(actor, channel_id, f"{outcome.kind} {subject}: {outcome.result}{job}{why}"[:500])


def refusal_on_the_record(
    ctx: CommandContext, actor: Actor, channel_id: str, kind: ActionKind, subject: str, why: str
) -> None:
    """A refusal before any confirmation was shown (the runner records the others)."""
    ctx.metrics.actions.labels(action=kind.value, outcome=Result.REFUSED.value).inc()
    audit(actor, channel_id, f"{kind} {subject}: refused: {why}"[:500])


def action_row(
    outcome: ActionOutcome, *, channel_id: str, job_key: str, params: StartParameters | None
) -> NewOutboxRow:
    """The outbox row of the thread line that tells `outcome` in `job_key`'s thread."""
    reason = outcome.reason
    if outcome.result is Result.UNKNOWN:
        subject = (
            job_key
            if outcome.kind is ActionKind.CANCEL
            else (params.dataset_key if params else job_key)
        )
        reason = what_to_check(outcome, subject)
    event = Event(
        kind=EventKind.ACTION_TAKEN,
        job_key=job_key,
        actor=outcome.action.user_id,
        act=outcome.kind.value,
        outcome=outcome.result.value,
        reason=reason or None,
        target_performance=params.target if params else None,
        scaling_factor=params.scaling_factor if params else None,
        retrain_of=params.retrain_of if params else None,
    )
    return outbox_row(action_taken(channel_id, job_key, event, action_id=outcome.action.id))


async def tell_in_thread(
    ctx: CommandContext, outcome: ActionOutcome, *, channel_id: str, job_key: str,
    params: StartParameters | None = None,
) -> None:  # fmt: skip
    """Queue the line of an outcome that is no done start or cancel (those are written with
    their change) in the job's thread of the channel that acted."""
    if outcome.result is Result.DUPLICATE:
        return  # told when it happened
    row = action_row(outcome, channel_id=channel_id, job_key=job_key, params=params)
    await patiently(lambda: ctx.store.enqueue([row]), sleep=ctx.sleep)


async def watch_started(
    ctx: CommandContext, outcome: ActionOutcome, params: StartParameters, *, actor: Actor,
    channel_id: str,
) -> bool:  # fmt: skip
    """A training started from this channel: the channel watches it with the options asked
    for, its card (queued first) and the "started by" line in one transaction. False when
    the channel may not watch more jobs (the line is then posted in the channel)."""
    job_key = outcome.job_key
    assert job_key is not None
    snapshot = Snapshot(
        job_key=job_key, status=outcome.status or PENDING, target_performance=params.target
    )
    line = action_row(outcome, channel_id=channel_id, job_key=job_key, params=params)
    now = ctx.clock()

    def started_line(change: SubscriptionChange) -> NewOutboxRow:
        return line

    def subscribe(store: Store) -> tuple[bool, int]:
        try:
            subscribe_snapshot(
                store, snapshot, team_id=actor.team_id, channel_id=channel_id,
                user_id=outcome.action.user_id, min_improvement=None, mention=params.mention,
                events=EventsFilter(params.events) if params.events else None,
                next_poll_at=now, now=now, channel_limit=ctx.subscription_limit,
                global_limit=ctx.max_subscriptions, audit_row=started_line,
            )  # fmt: skip
        except SubscriptionLimitReached:
            store.enqueue([line], now=now)
            return False, store.count_all_active()
        return True, store.count_all_active()

    watched, active = await patiently(lambda: ctx.store.run(subscribe), sleep=ctx.sleep)
    ctx.metrics.active_subscriptions.set(active)
    if watched:
        await ctx.watch(job_key)
    return watched


async def show_cancelled(ctx: CommandContext, outcome: ActionOutcome, *, channel_id: str) -> None:
    """A job cancelled from Slack: its stored snapshot says CANCELLED now (every card of
    it is redrawn at once, not at the next poll, which still reports the change), and
    each channel watching it, and the one that acted, is told who cancelled it; one
    transaction."""
    job_key = outcome.job_key
    assert job_key is not None

    def write(store: Store) -> None:
        channels = [channel_id]
        for sub in store.subscriptions_for_job(job_key):
            if sub.channel_id not in channels:
                channels.append(sub.channel_id)
        rows = [
            action_row(outcome, channel_id=channel, job_key=job_key, params=None)
            for channel in channels
        ]
        record = store.get_job(job_key)
        if record is None or record.terminal:
            store.enqueue(rows)
            return
        stored = Snapshot.model_validate_json(record.snapshot_json)
        cancelled = stored.model_copy(update={"status": CANCELLED})
        best = cancelled.best()
        # not terminal: the poller still fetches the job's final state and tells it
        store.record_poll(
            job_key=job_key, snapshot_json=cancelled.canonical_json(),
            snapshot_hash=snapshot_hash(cancelled), status=CANCELLED,
            best_performance=best.latest_performance if best else None,
            best_algorithm=best.algorithm if best else None, terminal=False,
            next_poll_at=record.next_poll_at, history=(), outbox=rows, last_best={},
            improved=False, unreachable=record.unreachable,
        )  # fmt: skip

    await patiently(lambda: ctx.store.run(write), sleep=ctx.sleep)
    log.info("job %s shown CANCELLED on its cards", job_key)
