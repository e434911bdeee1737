"""The bolt listeners: the slash command, the card buttons and acting's buttons (`register`).

Ack first, then work: the ack never waits on SQLite. Commands that only touch the store
answer in the ack when the store answers at once, else via `response_url`
(`bot.slack.answers`); those that ask MathFi ack with "looking it up" and answer via
`response_url`. A store call the database refuses (another process holds it) is tried again
for about half a minute before the user hears that nothing was done. Every mistake gets a
short ephemeral explanation with the usage line; anything unexpected is logged with a
reference that the user is shown, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.slack.actions_render import (
    ACTION_CANCEL_JOB,
    ACTION_CONFIRM_CANCEL,
    ACTION_RETRAIN,
    ACTION_START_TRAINING,
)
from bot.slack.answers import ack_or_respond, internal_error, reply_body, settled
from bot.slack.audit import Actor, click_channel, clicker
from bot.slack.command_text import (
    Cancel,
    Command,
    CommandError,
    Datasets,
    Digest,
    Mute,
    Status,
    Subscribe,
    Train,
    Unsubscribe,
    parse_command,
)
from bot.slack.commands import oncall
from bot.slack.commands.actions import (
    MAY_HAVE_ACTED,
    NOT_SET_UP,
    NotSetUp,
    click_card_cancel,
    click_confirmed_cancel,
    click_retrain,
    click_start,
    run_cancel,
    run_datasets,
    run_train,
)
from bot.slack.commands.context import CommandContext, command_error
from bot.slack.commands.digest import run_digest
from bot.slack.commands.personal import register_personal, subscribe_here_or_dm
from bot.slack.commands.subscriptions import run_local, run_refresh, run_status
from bot.slack.render import (
    ACTION_MUTE,
    ACTION_REFRESH,
    ACTION_UNSUBSCRIBE,
    Message,
    render_error,
)
from store import (
    StoreUnavailable,
)

log = logging.getLogger(__name__)

# A command that asks MathFi: acked at once with "⏳ …", answered on `response_url`.
SlowWork = Callable[[Any, Actor, str], Coroutine[Any, Any, Message]]  # (command, actor, channel id)


@dataclass(frozen=True)
class SlowCommand:
    waiting: Callable[[Any], str]  # the ack's text for the command
    work: SlowWork


def slow_commands(ctx: CommandContext) -> dict[type[Command], SlowCommand]:
    """Every command that asks MathFi before it answers, by its parsed type."""

    def asking(cmd: Any) -> str:
        return f"⏳ Asking MathFi about `{cmd.key}`…"

    async def subscribe(cmd: Subscribe, actor: Actor, channel_id: str) -> Message:
        return await subscribe_here_or_dm(ctx, cmd, actor=actor, channel_id=channel_id)

    async def status(cmd: Status, actor: Actor, channel_id: str) -> Message:
        return await run_status(ctx, cmd)

    def checking(cmd: Any) -> str:
        return f"⏳ Checking dataset `{cmd.dataset_key}`…"

    def acting(run: Callable[[CommandContext, Any, Actor, str], Awaitable[Message]]) -> SlowWork:
        async def work(cmd: Any, actor: Actor, channel_id: str) -> Message:
            try:
                return await run(ctx, cmd, actor, channel_id)
            except NotSetUp as err:
                return render_error(str(err))

        return work

    return {
        Subscribe: SlowCommand(asking, subscribe),
        Status: SlowCommand(asking, status),
        Train: SlowCommand(checking, acting(run_train)),
        Cancel: SlowCommand(asking, acting(run_cancel)),
        Datasets: SlowCommand(
            lambda cmd: "⏳ Asking MathFi for its datasets…", acting(run_datasets)
        ),
    }


def register(app: AsyncApp, ctx: CommandContext) -> None:
    """Attach the slash command and the card buttons to the bolt app."""
    slow = slow_commands(ctx)

    async def on_command(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        channel_id = str(body.get("channel_id", ""))
        text = str(body.get("text", ""))
        actor = Actor(
            team_id=str(body.get("team_id", "")),
            user_id=str(body.get("user_id", "")),
            text=f"{ctx.command} {text}",
            trigger_id=str(body.get("trigger_id") or ""),
        )
        try:
            cmd = parse_command(text, allow_broadcast=ctx.allow_broadcast_mentions)
        except CommandError as err:
            ctx.metrics.commands.labels(command="invalid", outcome="user_error").inc()
            await ack(**reply_body(command_error(ctx, err)))
            return
        name = type(cmd).__name__.lower()
        where = f"{ctx.command} {name}"
        asks_mathfi = slow.get(type(cmd))
        if asks_mathfi is not None:
            await ack(response_type="ephemeral", text=asks_mathfi.waiting(cmd))
            work = asks_mathfi.work(cmd, actor, channel_id)
            message = await settled(work, name=name, where=where, metrics=ctx.metrics)
            await respond(**reply_body(message))
            return
        local = (
            run_digest(ctx, cmd, channel_id=channel_id, actor=actor)
            if isinstance(cmd, Digest)
            else run_local(ctx, cmd, channel_id=channel_id, actor=actor)
        )
        answer = settled(
            local,
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
                actor = clicker(body, f"button {body['actions'][0].get('action_id', '?')} {key}")
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
    register_actions(app, ctx)  # train / cancel confirmations, the card's Cancel, Retrain
    oncall.register(app, ctx)  # the Acknowledge button of an on-call alert
    register_personal(app, ctx)  # Notify me, the App Home (#15)


Click = Callable[[CommandContext, str, Actor, str], Awaitable[Message]]


def register_actions(app: AsyncApp, ctx: CommandContext) -> None:
    """The buttons of acting from Slack; a confirmation's own button is replaced by the
    outcome (no second click on it), a card's button answers the clicker alone."""

    def listener(click: Click, *, replace: bool) -> Callable[..., Awaitable[None]]:
        async def on_click(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
            if ctx.acting is not None:
                ctx.acting.track()  # a stop waits for it (`ActionTools.settle`)
            await ack()
            action = body["actions"][0]
            actor = clicker(body, f"button {action.get('action_id', '?')}")
            channel_id = click_channel(body)
            try:
                message = await click(ctx, str(action.get("value", "")), actor, channel_id)
            except NotSetUp:
                message = render_error(NOT_SET_UP)
            except StoreUnavailable as err:
                log.error("database unavailable during an action: %s", err)
                message = render_error("The bot's database is unavailable right now.")
            except Exception:
                message = internal_error("action button", said=MAY_HAVE_ACTED)
            await respond(replace_original=replace, **reply_body(message))

        return on_click

    app.action(ACTION_START_TRAINING)(listener(click_start, replace=True))
    app.action(ACTION_CONFIRM_CANCEL)(listener(click_confirmed_cancel, replace=True))
    app.action(ACTION_CANCEL_JOB)(listener(click_card_cancel, replace=False))
    app.action(ACTION_RETRAIN)(listener(click_retrain, replace=False))
