"""`/mathfi` slash commands and the card buttons (bolt listeners, registered by `register`).

(About 400 lines, kept whole: each command's work and its listener share `CommandContext`
and the wording of its answers; parsing is in `bot.slack.command_text`, the replies in
`bot.slack.replies`, how an answer reaches the user in `bot.slack.answers`.)

Ack first, then work: the ack never waits on SQLite. Commands that only touch the store
answer in the ack when the store answers at once, else via `response_url` (`bot.slack.
answers`); those that ask MathFi (`subscribe`, `status`) ack with "looking it up" and answer
via `response_url`. A store call the database refuses (another process holds it) is tried
again for about half a minute before the user hears that nothing was done.
Every mistake gets a short ephemeral explanation with the usage line; anything unexpected is
logged with a reference that the user is shown, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.core.diff import snapshot_hash
from bot.core.events import EventsFilter
from bot.core.fanout import watch_started
from bot.core.models import Snapshot, TrainingJob, TrainingProgress, is_terminal
from bot.engine.jobs import outbox_row
from bot.errors import MathFiError
from bot.metrics import Metrics
from bot.slack import replies
from bot.slack.answers import ack_or_respond, internal_error, patiently, reply_body, settled
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
    DEFAULT_COMMAND,
    USAGE,
    Command,
    CommandError,
    Help,
    ListSubs,
    Mute,
    Status,
    Subscribe,
    Unmute,
    Unsubscribe,
    help_text,
    parse_command,
)
from bot.slack.render import (
    ACTION_MUTE,
    ACTION_REFRESH,
    ACTION_UNSUBSCRIBE,
    Message,
    render_error,
    render_status,
)
from store import (
    AsyncStore,
    AuditRow,
    Store,
    StoreUnavailable,
    Subscription,
    SubscriptionLimitReached,
)

log = logging.getLogger(__name__)


class MathFiReader(Protocol):
    """What the commands need of the MathFi client."""

    async def get_progress(self, key: str) -> TrainingProgress: ...
    async def get_training(self, key: str) -> TrainingJob: ...


@dataclass
class CommandContext:
    store: AsyncStore
    mathfi: MathFiReader
    metrics: Metrics
    watch: Callable[[str], Awaitable[None]]  # the poller's `watch`
    command: str = "/mathfi"
    subscription_limit: int = 200  # per channel
    max_subscriptions: int = 5000  # in the whole store
    allow_broadcast_mentions: bool = False  # `--mention @here/@channel/@everyone`
    poll_interval: float = 30.0
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


def _usage(ctx: CommandContext, name: str) -> str:
    return _for_command(ctx, USAGE[name])


def _for_command(ctx: CommandContext, usage: str) -> str:
    """A usage line (written for `/mathfi`) for the command name this app answers to."""
    return ctx.command + usage.removeprefix(DEFAULT_COMMAND)


def command_error(ctx: CommandContext, err: CommandError) -> Message:
    """The reply to a text that is not a command: the parser's explanation and a usage line.

    The parser's message is already mrkdwn-escaped and `render_error` escapes its text, so
    one level is undone first (`&amp;` last), else `<` would show as `&lt;`.
    """
    text = err.message.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return render_error(text, usage=_for_command(ctx, err.usage or USAGE["help"]))


async def fetch_snapshot(ctx: CommandContext, key: str) -> Snapshot:
    progress = await ctx.mathfi.get_progress(key)
    job = await ctx.mathfi.get_training(key) if is_terminal(progress.status) else None
    return Snapshot.from_api(key, progress, job)


# --------------------------------------------------------------------- the work
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
    now: float,
    channel_limit: int | None = None,
    global_limit: int | None = None,
    audit_row: AuditRow | None = None,
) -> tuple[Subscription, bool]:
    """Watch `snapshot.job_key` in a channel (the store's one transaction, limits checked in
    it), with a watch row that posts the card when the subscription is new, and
    `audit_row`'s line saying who did it. An option left None keeps what the subscription
    has stored."""
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
        return replies.limit_reached(err, command=ctx.command)
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
    return render_status(snapshot, now=ctx.clock())


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
        assert isinstance(answer, list)
        return replies.subscription_list(answer, now=now, command=ctx.command, page=cmd.page)
    if isinstance(cmd, Unsubscribe):
        count = int(answer)
        if cmd.all:
            return replies.plain(
                f"Stopped watching {count} job(s) in this channel."
                if count
                else "This channel was not watching any job."
            )
        if count:
            return replies.plain(f"Stopped watching `{cmd.key}` in this channel.")
        return render_error(f"This channel is not watching `{cmd.key}`.", usage=_usage(ctx, "list"))
    if isinstance(cmd, Mute | Unmute):
        if not answer:
            return render_error(
                f"This channel is not watching `{cmd.key}`.", usage=_usage(ctx, "subscribe")
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
            return store.list_subscriptions(channel_id=channel_id), None
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
        return render_error(
            f"This channel is not watching `{key}`.", usage=_usage(ctx, "subscribe")
        )
    await ctx.watch(key)
    return replies.plain(f"Refreshing `{key}`…")


# --------------------------------------------------------------------- bolt wiring
def register(app: AsyncApp, ctx: CommandContext) -> None:
    """Attach the slash command and the card buttons to the bolt app."""

    async def on_command(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        channel_id = str(body.get("channel_id", ""))
        text = str(body.get("text", ""))
        actor = Actor(
            team_id=str(body.get("team_id", "")),
            user_id=str(body.get("user_id", "")),
            text=f"{ctx.command} {text}",
        )
        try:
            cmd = parse_command(text, allow_broadcast=ctx.allow_broadcast_mentions)
        except CommandError as err:
            ctx.metrics.commands.labels(command="invalid", outcome="user_error").inc()
            await ack(**reply_body(command_error(ctx, err)))
            return
        name = type(cmd).__name__.lower()
        where = f"{ctx.command} {name}"
        if isinstance(cmd, Subscribe | Status):
            await ack(response_type="ephemeral", text=f"⏳ Asking MathFi about `{cmd.key}`…")
            if isinstance(cmd, Subscribe):
                work = run_subscribe(ctx, cmd, actor=actor, channel_id=channel_id)
            else:
                work = run_status(ctx, cmd)
            message = await settled(work, name=name, where=where, metrics=ctx.metrics)
            await respond(**reply_body(message))
            return
        answer = settled(
            run_local(ctx, cmd, channel_id=channel_id, actor=actor),
            name=name,
            where=where,
            metrics=ctx.metrics,
        )
        await ack_or_respond(answer, ack=ack, respond=respond)

    app.command(ctx.command)(on_command)

    def button(make: Callable[[str], Command]) -> Callable[..., Awaitable[None]]:
        async def on_button(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
            await ack()
            try:
                key = str(body["actions"][0]["value"])
                channel_id = str(body["channel"]["id"])
                user = body.get("user") or {}
                actor = Actor(
                    team_id=str((body.get("team") or {}).get("id") or user.get("team_id", "")),
                    user_id=str(user.get("id", "")),
                    text=f"button {body['actions'][0].get('action_id', '?')} {key}",
                )
                cmd = make(key)
                if isinstance(cmd, Status):
                    message = await run_refresh(ctx, key, channel_id=channel_id)
                else:
                    message = await run_local(ctx, cmd, channel_id=channel_id, actor=actor)
            except StoreUnavailable as err:
                log.error("database unavailable during a button: %s", err)
                message = render_error("The bot's database is unavailable right now.")
            except Exception:
                message = internal_error("card button")
            await respond(replace_original=False, **reply_body(message))

        return on_button

    app.action(ACTION_MUTE)(button(lambda key: Mute(key=key, seconds=3600)))
    app.action(ACTION_UNSUBSCRIBE)(button(lambda key: Unsubscribe(key=key, all=False)))
    app.action(ACTION_REFRESH)(button(lambda key: Status(key=key)))
