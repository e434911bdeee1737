"""The subscription commands: subscribe, unsubscribe (one or all), list, mute, unmute,
status, help, and the card's Refresh. Each is one turn of the store's thread (tried again
while the database refuses it); one that changes a subscription is audited (the line in
Slack is queued by the store's write, the log line here)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

from bot.core.broadcast import BroadcastMode
from bot.core.diff import snapshot_hash
from bot.core.events import EventsFilter
from bot.core.fanout import watch_started
from bot.core.models import Snapshot
from bot.engine.jobs import outbox_row
from bot.errors import MathFiError
from bot.slack import replies
from bot.slack.answers import patiently
from bot.slack.audit import (
    Actor,
    audit,
    local_result,
    on_mute,
    on_subscribe,
    on_unsubscribe,
    option_changes,
)
from bot.slack.command_text import (
    Command,
    Help,
    ListSubs,
    Mute,
    Status,
    Subscribe,
    Unmute,
    Unsubscribe,
    help_text,
)
from bot.slack.commands.context import CommandContext, fetch_snapshot, usage
from bot.slack.commands.digest import digest_note
from bot.slack.render import (
    Message,
    render_error,
    render_status,
)
from bot.slack.status_forecast import status_forecast
from store import (
    AuditRow,
    Store,
    Subscription,
    SubscriptionLimitReached,
)

log = logging.getLogger(__name__)


def subscribe_snapshot(
    store: Store,
    snapshot: Snapshot,
    *,
    team_id: str,
    channel_id: str,
    user_id: str,
    min_improvement: float | None,
    mention: str | None,
    events: EventsFilter | None,
    next_poll_at: float,
    broadcast: BroadcastMode | None = None,
    now: float,
    channel_limit: int | None = None,
    global_limit: int | None = None,
    audit_row: AuditRow | None = None,
    owner_user_id: str | None = None,
) -> tuple[Subscription, bool]:
    """Watch `snapshot.job_key` in a channel (the store's one transaction, limits checked in
    it), with a watch row that posts the card when the subscription is new, and
    `audit_row`'s line saying who did it. An option left None keeps what the subscription
    has stored. `owner_user_id`: a personal subscription (its channel is that person's DM)."""
    best = snapshot.best()
    first_card = watch_started(
        snapshot.job_key, channel_id, mention=mention, now=now, nonce=secrets.token_hex(4)
    )
    return store.subscribe(
        team_id=team_id,
        channel_id=channel_id,
        job_key=snapshot.job_key,
        user_id=user_id,
        min_improvement=min_improvement,
        mention=mention,
        events=events.value if events is not None else None,
        broadcast=broadcast.value if broadcast is not None else None,
        snapshot_json=snapshot.canonical_json(),
        snapshot_hash=snapshot_hash(snapshot),
        status=snapshot.status,
        best_performance=best.latest_performance if best else None,
        best_algorithm=best.algorithm if best else None,
        terminal=snapshot.terminal,
        next_poll_at=next_poll_at,
        watch_row=outbox_row(first_card),
        channel_limit=channel_limit,
        global_limit=global_limit,
        audit=audit_row,
        owner_user_id=owner_user_id,
        now=now,
    )


async def run_subscribe(
    ctx: CommandContext, cmd: Subscribe, *, actor: Actor, channel_id: str
) -> Message:
    try:
        snapshot = await fetch_snapshot(ctx, cmd.key)
    except MathFiError as err:
        audit(actor, channel_id, f"refused: MathFi ({type(err).__name__})")
        return render_error(replies.mathfi_problem(err, cmd.key))
    now = ctx.clock()

    def subscribe(store: Store) -> tuple[Subscription | None, Subscription, bool, int]:
        before = store.get_subscription(channel_id=channel_id, job_key=cmd.key)
        sub, created = subscribe_snapshot(
            store,
            snapshot,
            team_id=actor.team_id,
            channel_id=channel_id,
            user_id=actor.user_id,
            min_improvement=cmd.min_improvement,
            mention=cmd.mention,
            events=EventsFilter(cmd.events) if cmd.events is not None else None,
            broadcast=BroadcastMode(cmd.broadcast) if cmd.broadcast is not None else None,
            next_poll_at=now + ctx.poll_interval,
            now=now,
            channel_limit=ctx.subscription_limit,
            global_limit=ctx.max_subscriptions,
            audit_row=on_subscribe,
        )
        return before if before and before.active else None, sub, created, store.count_all_active()

    try:
        before, sub, created, active = await patiently(
            lambda: ctx.store.run(subscribe), sleep=ctx.sleep
        )
    except SubscriptionLimitReached as err:
        audit(actor, channel_id, f"refused: {err}")
        return replies.limit_reached(err, command=ctx.command, channel_id=channel_id)
    ctx.metrics.active_subscriptions.set(active)
    if created or before is None:
        audit(actor, channel_id, f"subscribed to {cmd.key}")
    else:
        changed = ", ".join(f"{c.name} {c.old} -> {c.new}" for c in option_changes(before, sub))
        audit(actor, channel_id, f"options of {cmd.key}: {changed or 'unchanged'}")
    await ctx.watch(cmd.key)
    return replies.subscribed(sub, snapshot, created=created, command=ctx.command)


async def run_status(ctx: CommandContext, cmd: Status) -> Message:
    try:
        snapshot = await fetch_snapshot(ctx, cmd.key)
    except MathFiError as err:
        return render_error(replies.mathfi_problem(err, cmd.key))
    now = ctx.clock()
    forecast = await status_forecast(ctx.store, snapshot, now=now, rules=ctx.forecast)
    return render_status(snapshot, now=now, forecast=forecast)


async def run_local(
    ctx: CommandContext, cmd: Command, *, channel_id: str, actor: Actor | None = None
) -> Message:
    """Commands that need only SQLite: each one turn of the store's thread, tried again
    while the database refuses it. One that changes a subscription is audited (the line
    in Slack is queued by the store's write, the log line here)."""
    if isinstance(cmd, Help):
        return Message(text=help_text(ctx.command), blocks=[])
    actor = actor or Actor(team_id="", user_id="", text="")
    now = ctx.clock()  # one reading: a mute's reply says exactly the duration asked for
    work = _local_work(cmd, channel_id=channel_id, user_id=actor.user_id, now=now)
    answer, active = await patiently(lambda: ctx.store.run(work), sleep=ctx.sleep)
    if active is not None:
        ctx.metrics.active_subscriptions.set(active)
    if isinstance(cmd, Unsubscribe | Mute | Unmute):
        audit(actor, channel_id, local_result(cmd, answer))
    if isinstance(cmd, ListSubs):
        views, alerts, digest = answer  # the channel's open on-call alerts are listed first
        return replies.subscription_list(
            views,
            now=now,
            command=ctx.command,
            page=cmd.page,
            alerts=alerts,
            note=digest_note(digest, command=ctx.command),
            channel_id=channel_id,
        )
    place, capital = replies.here(channel_id), replies.here(channel_id, start=True)
    if isinstance(cmd, Unsubscribe):
        count = int(answer)
        if cmd.all:
            return replies.plain(
                f"Stopped watching {count} job(s) in {place}."
                if count
                else f"{capital} was not watching any job."
            )
        if count:
            return replies.plain(f"Stopped watching `{cmd.key}` in {place}.")
        return render_error(f"{capital} is not watching `{cmd.key}`.", usage=usage(ctx, "list"))
    if isinstance(cmd, Mute | Unmute):
        if not answer:
            return render_error(
                f"{capital} is not watching `{cmd.key}`.", usage=usage(ctx, "subscribe")
            )
        until = now + cmd.seconds if isinstance(cmd, Mute) else None
        return replies.muted(cmd.key, until=until, now=now)
    raise TypeError(f"not a local command: {cmd!r}")


def _local_work(
    cmd: Command, *, channel_id: str, user_id: str, now: float
) -> Callable[[Store], tuple[Any, int | None]]:
    """What a local command does on the store's thread: (its result, the count of active
    subscriptions when it may have changed them)."""

    def work(store: Store) -> tuple[Any, int | None]:
        if isinstance(cmd, ListSubs):
            views = store.list_subscriptions(channel_id=channel_id)
            alerts = store.open_alerts(channel_id=channel_id)
            return (views, alerts, store.get_digest(channel_id=channel_id)), None
        if isinstance(cmd, Unsubscribe):
            if cmd.all:
                count = store.unsubscribe_all(
                    channel_id=channel_id, user_id=user_id, audit=on_unsubscribe, now=now
                )
            else:
                assert cmd.key is not None
                stopped = store.unsubscribe(
                    channel_id=channel_id,
                    job_key=cmd.key,
                    user_id=user_id,
                    audit=on_unsubscribe,
                    now=now,
                )
                count = int(stopped)
            return count, store.count_all_active() if count else None
        if isinstance(cmd, Mute | Unmute):
            until = now + cmd.seconds if isinstance(cmd, Mute) else None
            muted = store.set_muted_until(
                channel_id=channel_id,
                job_key=cmd.key,
                until=until,
                user_id=user_id,
                audit=on_mute,
                now=now,
            )
            if not muted:
                return False, None
            store.mark_card_dirty(channel_id=channel_id, job_key=cmd.key)
            return True, None
        raise TypeError(f"not a local command: {cmd!r}")

    return work


async def run_refresh(ctx: CommandContext, key: str, *, channel_id: str) -> Message:
    """The card's Refresh button: poll the job now and redraw this channel's card.

    Only for a job this channel watches: an old card (after an unsubscribe) keeps its
    buttons, and its Refresh must not start polling the job again.
    """

    def refresh(store: Store) -> bool:
        sub = store.get_subscription(channel_id=channel_id, job_key=key)
        if sub is None or not sub.active:
            return False
        store.mark_card_dirty(channel_id=channel_id, job_key=key)
        return True

    if not await patiently(lambda: ctx.store.run(refresh), sleep=ctx.sleep):
        place = replies.here(channel_id, start=True)
        return render_error(f"{place} is not watching `{key}`.", usage=usage(ctx, "subscribe"))
    await ctx.watch(key)
    return replies.plain(f"Refreshing `{key}`…")
