"""`/mathfi` slash commands and the card buttons (bolt listeners, registered by `register`).

Ack first, then work: commands that only touch SQLite answer in the ack itself; those that
ask MathFi (`subscribe`, `status`) ack with "looking it up" and answer via `response_url`.
Every mistake gets a short ephemeral explanation with the usage line; anything unexpected is
logged with a reference that the user is shown, never a traceback.
"""

from __future__ import annotations

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
from bot.errors import MathFiAuthError, MathFiError, TrainingJobNotFound
from bot.metrics import Metrics
from bot.slack import replies
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
from store import Store, StoreUnavailable, Subscription

log = logging.getLogger(__name__)


class MathFiReader(Protocol):
    """What the commands need of the MathFi client."""

    async def get_progress(self, key: str) -> TrainingProgress: ...
    async def get_training(self, key: str) -> TrainingJob: ...


@dataclass
class CommandContext:
    store: Store
    mathfi: MathFiReader
    metrics: Metrics
    command: str = "/mathfi"
    subscription_limit: int = 200
    poll_interval: float = 30.0
    watch: Callable[[str], None] = lambda key: None  # the poller's `watch`
    clock: Callable[[], float] = time.time


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


def mathfi_problem(err: MathFiError, key: str) -> str:
    if isinstance(err, TrainingJobNotFound):
        return f"MathFi has no training job `{key}`. Check the key on the MathFi dashboard."
    if isinstance(err, MathFiAuthError):
        return (
            "MathFi refused the bot's credentials, so nothing was done. "
            "Ask whoever runs the bot to check MATHFI_USERNAME and MATHFI_PASSWORD."
        )
    return "MathFi cannot be reached right now, so nothing was done. Try again in a minute."


# --------------------------------------------------------------------- the work
def subscribe_snapshot(
    store: Store,
    snapshot: Snapshot,
    *,
    team_id: str,
    channel_id: str,
    user_id: str,
    min_improvement: float,
    mention: str | None,
    events: EventsFilter,
    next_poll_at: float,
    now: float,
) -> tuple[Subscription, bool]:
    """Watch `snapshot.job_key` in a channel (the store's one transaction), with a watch row
    that posts the card when the subscription is new."""
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
        events=events.value,
        snapshot_json=snapshot.canonical_json(),
        snapshot_hash=snapshot_hash(snapshot),
        status=snapshot.status,
        best_performance=best.latest_performance if best else None,
        best_algorithm=best.algorithm if best else None,
        terminal=snapshot.terminal,
        next_poll_at=next_poll_at,
        watch_row=outbox_row(first_card),
    )


async def run_subscribe(
    ctx: CommandContext, cmd: Subscribe, *, team_id: str, channel_id: str, user_id: str
) -> Message:
    existing = ctx.store.get_subscription(channel_id=channel_id, job_key=cmd.key)
    already = existing is not None and existing.active
    if not already and ctx.store.count_active(channel_id=channel_id) >= ctx.subscription_limit:
        return render_error(
            f"This channel already watches {ctx.subscription_limit} jobs, the most allowed. "
            f"Unsubscribe from finished ones first (`{ctx.command} list`)."
        )
    try:
        snapshot = await fetch_snapshot(ctx, cmd.key)
    except MathFiError as err:
        return render_error(mathfi_problem(err, cmd.key))
    sub, created = subscribe_snapshot(
        ctx.store,
        snapshot,
        team_id=team_id,
        channel_id=channel_id,
        user_id=user_id,
        min_improvement=cmd.min_improvement if cmd.min_improvement is not None else 0.005,
        mention=cmd.mention,
        events=EventsFilter(cmd.events or EventsFilter.ALL),
        next_poll_at=ctx.clock() + ctx.poll_interval,
        now=ctx.clock(),
    )
    ctx.watch(cmd.key)
    ctx.metrics.active_subscriptions.set(ctx.store.count_all_active())
    return replies.subscribed(sub, snapshot, created=created, command=ctx.command)


async def run_status(ctx: CommandContext, cmd: Status) -> Message:
    try:
        snapshot = await fetch_snapshot(ctx, cmd.key)
    except MathFiError as err:
        return render_error(mathfi_problem(err, cmd.key))
    return render_status(snapshot, now=ctx.clock())


def run_local(ctx: CommandContext, cmd: Command, *, channel_id: str) -> Message:
    """Commands that need only SQLite: answered within the ack."""
    store = ctx.store
    if isinstance(cmd, Help):
        return Message(text=help_text(ctx.command), blocks=[])
    if isinstance(cmd, ListSubs):
        return replies.subscription_list(
            store.list_subscriptions(channel_id=channel_id),
            now=ctx.clock(),
            command=ctx.command,
            page=cmd.page,
        )
    if isinstance(cmd, Unsubscribe):
        if cmd.all:
            count = store.unsubscribe_all(channel_id=channel_id)
            ctx.metrics.active_subscriptions.set(store.count_all_active())
            return replies.plain(
                f"Stopped watching {count} job(s) in this channel."
                if count
                else "This channel was not watching any job."
            )
        assert cmd.key is not None
        if store.unsubscribe(channel_id=channel_id, job_key=cmd.key):
            ctx.metrics.active_subscriptions.set(store.count_all_active())
            return replies.plain(f"Stopped watching `{cmd.key}` in this channel.")
        return render_error(f"This channel is not watching `{cmd.key}`.", usage=_usage(ctx, "list"))
    if isinstance(cmd, Mute | Unmute):
        now = ctx.clock()  # one reading: the reply says exactly the duration asked for
        until = now + cmd.seconds if isinstance(cmd, Mute) else None
        if not store.set_muted_until(channel_id=channel_id, job_key=cmd.key, until=until):
            return render_error(
                f"This channel is not watching `{cmd.key}`.", usage=_usage(ctx, "subscribe")
            )
        store.mark_card_dirty(channel_id=channel_id, job_key=cmd.key)
        return replies.muted(cmd.key, until=until, now=now)
    raise TypeError(f"not a local command: {cmd!r}")


def run_refresh(ctx: CommandContext, key: str, *, channel_id: str) -> Message:
    """The card's Refresh button: poll the job now and redraw this channel's card.

    Only for a job this channel watches: an old card (after an unsubscribe) keeps its
    buttons, and its Refresh must not start polling the job again.
    """
    sub = ctx.store.get_subscription(channel_id=channel_id, job_key=key)
    if sub is None or not sub.active:
        return render_error(
            f"This channel is not watching `{key}`.", usage=_usage(ctx, "subscribe")
        )
    ctx.watch(key)
    ctx.store.mark_card_dirty(channel_id=channel_id, job_key=key)
    return replies.plain(f"Refreshing `{key}`…")


# --------------------------------------------------------------------- bolt wiring
def _reference() -> str:
    return secrets.token_hex(4)


def _internal_error(where: str) -> Message:
    ref = _reference()
    log.exception("%s failed (reference %s)", where, ref)
    return render_error("Something went wrong on our side; nothing was changed.", reference=ref)


def _reply(message: Message) -> dict[str, Any]:
    body: dict[str, Any] = {"response_type": "ephemeral", "text": message.text}
    if message.blocks:
        body["blocks"] = message.blocks
    return body


def register(app: AsyncApp, ctx: CommandContext) -> None:
    """Attach the slash command and the card buttons to the bolt app."""

    async def on_command(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        channel_id = str(body.get("channel_id", ""))
        text = str(body.get("text", ""))
        try:
            cmd = parse_command(text)
        except CommandError as err:
            ctx.metrics.commands.labels(command="invalid", outcome="user_error").inc()
            await ack(**_reply(command_error(ctx, err)))
            return
        name = type(cmd).__name__.lower()
        if isinstance(cmd, Subscribe | Status):
            await ack(response_type="ephemeral", text=f"⏳ Asking MathFi about `{cmd.key}`…")
            try:
                if isinstance(cmd, Subscribe):
                    message = await run_subscribe(
                        ctx,
                        cmd,
                        team_id=str(body.get("team_id", "")),
                        channel_id=channel_id,
                        user_id=str(body.get("user_id", "")),
                    )
                else:
                    message = await run_status(ctx, cmd)
                outcome = "ok"
            except StoreUnavailable as err:
                log.error("database unavailable during %s: %s", name, err)
                message, outcome = (
                    render_error(
                        "The bot's database is unavailable right now; nothing was changed. "
                        "Try again in a minute."
                    ),
                    "error",
                )
            except Exception:
                message, outcome = _internal_error(f"{ctx.command} {name}"), "error"
            ctx.metrics.commands.labels(command=name, outcome=outcome).inc()
            await respond(**_reply(message))
            return
        try:
            message = run_local(ctx, cmd, channel_id=channel_id)
            outcome = "ok"
        except StoreUnavailable as err:
            log.error("database unavailable during %s: %s", name, err)
            message, outcome = (
                render_error("The bot's database is unavailable right now; nothing was changed."),
                "error",
            )
        except Exception:
            message, outcome = _internal_error(f"{ctx.command} {name}"), "error"
        ctx.metrics.commands.labels(command=name, outcome=outcome).inc()
        await ack(**_reply(message))

    app.command(ctx.command)(on_command)

    def button(make: Callable[[str], Command]) -> Callable[..., Awaitable[None]]:
        async def on_button(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
            await ack()
            try:
                key = str(body["actions"][0]["value"])
                channel_id = str(body["channel"]["id"])
                cmd = make(key)
                if isinstance(cmd, Status):
                    message = run_refresh(ctx, key, channel_id=channel_id)
                else:
                    message = run_local(ctx, cmd, channel_id=channel_id)
            except StoreUnavailable as err:
                log.error("database unavailable during a button: %s", err)
                message = render_error("The bot's database is unavailable right now.")
            except Exception:
                message = _internal_error("card button")
            await respond(replace_original=False, **_reply(message))

        return on_button

    app.action(ACTION_MUTE)(button(lambda key: Mute(key=key, seconds=3600)))
    app.action(ACTION_UNSUBSCRIBE)(button(lambda key: Unsubscribe(key=key, all=False)))
    app.action(ACTION_REFRESH)(button(lambda key: Status(key=key)))
