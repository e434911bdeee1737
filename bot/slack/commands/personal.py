"""Personal subscriptions (issue #15): `subscribe --dm` (or any `subscribe` typed in the
bot's DM), the card's "Notify me" button, the App Home (`app_home_opened`) and its
Unsubscribe / Mute buttons.

A personal subscription is an ordinary subscription whose channel is the person's DM with
the bot (`conversations.open`), owned by them: its card and thread go there through the
same outbox. `list`, `unsubscribe` and `mute` typed in that DM act on its subscriptions,
which are that person's own, through the ordinary commands. A Home button acts only on
the clicker's own personal subscriptions and the channel subscriptions they created.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.core.broadcast import BroadcastMode
from bot.core.events import EventsFilter
from bot.core.models import Snapshot
from bot.errors import MathFiError, SlackDeliveryError
from bot.slack import replies
from bot.slack.answers import internal_error, patiently, reply_body
from bot.slack.audit import Actor, audit, clicker, on_mute, on_subscribe, on_unsubscribe
from bot.slack.command_text import Subscribe
from bot.slack.commands.context import CommandContext, PersonalSlack, fetch_snapshot
from bot.slack.commands.subscriptions import run_subscribe, subscribe_snapshot
from bot.slack.personal_render import (
    ACTION_HOME_MUTE,
    ACTION_HOME_UNMUTE,
    ACTION_HOME_UNSUBSCRIBE,
    ACTION_NOTIFY_ME,
)
from bot.slack.render import Message, render_error
from bot.slack.text import code, status_text
from store import Store, StoreUnavailable, Subscription, SubscriptionLimitReached

log = logging.getLogger(__name__)

PERSONAL_EVENTS = EventsFilter.STATUS  # a DM pings its owner: status changes by default
HOME_MUTE_SECONDS = 3600
NOT_SET_UP = "Personal subscriptions are not available on this bot."


async def subscribe_here_or_dm(
    ctx: CommandContext, cmd: Subscribe, *, actor: Actor, channel_id: str
) -> Message:
    """`subscribe`: the person's own when `--dm` is given or it is typed in the bot's DM
    with them, else the channel's (as before)."""
    if not cmd.dm and not channel_id.startswith("D"):
        return await run_subscribe(ctx, cmd, actor=actor, channel_id=channel_id)
    if ctx.personal is None:
        return (
            render_error(NOT_SET_UP)
            if cmd.dm
            else await run_subscribe(ctx, cmd, actor=actor, channel_id=channel_id)
        )
    try:
        dm = await ctx.personal.dm_channel(actor.user_id)
    except SlackDeliveryError as err:
        audit(actor, channel_id, f"refused: no DM ({err.error})")
        return render_error(f"Slack would not open your DM with the bot ({err.error}).")
    if not cmd.dm and channel_id != dm:  # another DM: a channel like any other, as before
        return await run_subscribe(ctx, cmd, actor=actor, channel_id=channel_id)
    if cmd.mention is not None:
        audit(actor, dm, "refused: --mention on a personal subscription")
        return render_error(
            "`--mention` is for channels: a personal subscription tells only you, in your DM "
            "with the bot. Leave `--mention` out."
        )
    try:
        snapshot = await fetch_snapshot(ctx, cmd.key)
    except MathFiError as err:
        audit(actor, dm, f"refused: MathFi ({type(err).__name__})")
        return render_error(replies.mathfi_problem(err, cmd.key))
    events = EventsFilter(cmd.events) if cmd.events is not None else None
    return await _follow(ctx, snapshot, actor=actor, dm=dm, events=events, cmd=cmd)


async def _follow(
    ctx: CommandContext,
    snapshot: Snapshot,
    *,
    actor: Actor,
    dm: str,
    events: EventsFilter | None,
    cmd: Subscribe | None,
) -> Message:
    """Subscribe the person to the job in their DM (one turn of the store's thread); the
    Notify me button (`cmd` None) leaves an active subscription as it is."""
    now = ctx.clock()
    key = snapshot.job_key

    def follow(store: Store) -> tuple[Subscription | None, bool, int]:
        before = store.get_subscription(channel_id=dm, job_key=key)
        if cmd is None and before is not None and before.active:
            return before, False, store.count_all_active()
        fresh = before is None or not before.active
        sub, created = subscribe_snapshot(
            store,
            snapshot,
            team_id=actor.team_id,
            channel_id=dm,
            user_id=actor.user_id,
            min_improvement=cmd.min_improvement if cmd else None,
            mention=None,
            events=events or (PERSONAL_EVENTS if fresh else None),
            broadcast=BroadcastMode(cmd.broadcast) if cmd and cmd.broadcast else None,
            next_poll_at=now + ctx.poll_interval,
            now=now,
            channel_limit=ctx.subscription_limit,
            global_limit=ctx.max_subscriptions,
            audit_row=on_subscribe,
            owner_user_id=actor.user_id,
        )
        return sub, created, store.count_all_active()

    try:
        sub, created, active = await patiently(lambda: ctx.store.run(follow), sleep=ctx.sleep)
    except SubscriptionLimitReached as err:
        audit(actor, dm, f"refused: {err}")
        return replies.limit_reached(err, command=ctx.command, channel_id=dm)
    assert sub is not None
    ctx.metrics.active_subscriptions.set(active)
    audit(actor, dm, f"{'followed' if created else 'already follows'} {key} personally")
    if created:
        await ctx.watch(key)
    return _followed(sub, snapshot, created=created, button=cmd is None)


def _followed(sub: Subscription, snapshot: Snapshot, *, created: bool, button: bool) -> Message:
    state = status_text(snapshot.status)
    if created:
        return replies.plain(
            f"🔔 You now follow {code(sub.job_key)} ({state}) in your DM with the bot: its "
            f"card is there, and its {sub.events} events go to the card's thread."
        )
    if button:
        return replies.plain(f"You already follow {code(sub.job_key)} in your DM with the bot.")
    return replies.plain(
        f"You already follow {code(sub.job_key)} in your DM with the bot "
        f"(events: {sub.events}, min +{sub.min_improvement:g}); options updated."
    )


async def notify_me(ctx: CommandContext, key: str, actor: Actor) -> Message:
    """The card's "Notify me": follow its job personally (the stored snapshot is the
    baseline; MathFi is asked only when the store has none)."""
    if ctx.personal is None:
        return render_error(NOT_SET_UP)
    try:
        dm = await ctx.personal.dm_channel(actor.user_id)
    except SlackDeliveryError as err:
        return render_error(f"Slack would not open your DM with the bot ({err.error}).")
    record = await patiently(lambda: ctx.store.get_job(key), sleep=ctx.sleep)
    try:
        snapshot = (
            Snapshot.model_validate_json(record.snapshot_json)
            if record is not None
            else await fetch_snapshot(ctx, key)
        )
    except MathFiError as err:
        return render_error(replies.mathfi_problem(err, key))
    return await _follow(ctx, snapshot, actor=actor, dm=dm, events=None, cmd=None)


async def home_button(ctx: CommandContext, action: str, value: str, actor: Actor) -> None:
    """A Home tab button: act on the subscription when it is the clicker's, then draw the
    view again (a refused click changes nothing and only redraws it)."""
    assert ctx.personal is not None
    now = ctx.clock()

    def act(store: Store) -> str:
        found = store.subscription_by_id(int(value)) if value.isdigit() else None
        if found is None:
            return "refused: no such subscription"
        sub, owner = found
        mine = owner == actor.user_id or (owner is None and sub.created_by == actor.user_id)
        if not sub.active or not mine:
            return f"refused: subscription {sub.id} is not the clicker's"
        where = dict(channel_id=sub.channel_id, job_key=sub.job_key, user_id=actor.user_id)
        if action == ACTION_HOME_UNSUBSCRIBE:
            store.unsubscribe(**where, audit=on_unsubscribe, now=now)
            return f"unsubscribed from {sub.job_key} in {sub.channel_id}"
        until = now + HOME_MUTE_SECONDS if action == ACTION_HOME_MUTE else None
        store.set_muted_until(**where, until=until, audit=on_mute, now=now)
        store.mark_card_dirty(channel_id=sub.channel_id, job_key=sub.job_key)
        return f"{'muted' if until else 'unmuted'} {sub.job_key} in {sub.channel_id}"

    result = await patiently(lambda: ctx.store.run(act), sleep=ctx.sleep)
    audit(actor, "home", result)
    if not result.startswith("refused"):
        ctx.metrics.active_subscriptions.set(await ctx.store.count_all_active())
    await ctx.personal.publish_home(actor.user_id)


def register_personal(app: AsyncApp, ctx: CommandContext) -> None:
    """The Notify me button, the Home tab's event and its buttons."""

    async def on_notify_me(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        key = str(body["actions"][0]["value"])
        actor = clicker(body, f"button notify me {key}")
        try:
            message = await notify_me(ctx, key, actor)
        except StoreUnavailable as err:
            log.error("database unavailable during Notify me: %s", err)
            message = render_error("The bot's database is unavailable right now.")
        except Exception:
            message = internal_error("Notify me")
        await respond(replace_original=False, **reply_body(message))

    app.action(ACTION_NOTIFY_ME)(on_notify_me)
    if ctx.personal is None:
        return
    personal: PersonalSlack = ctx.personal

    async def on_home_opened(event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":  # the Messages tab
            return
        team = body.get("team_id") or event.get("view", {}).get("team_id")
        await personal.home_opened(str(event.get("user", "")), str(team) if team else None)

    app.event("app_home_opened")(on_home_opened)

    def home(action: str) -> Any:
        async def on_home(ack: AsyncAck, body: dict[str, Any]) -> None:
            await ack()
            value = str(body["actions"][0].get("value", ""))
            try:
                await home_button(ctx, action, value, clicker(body, f"home {action} {value}"))
            except Exception:
                internal_error("Home button")

        return on_home

    for action in (ACTION_HOME_UNSUBSCRIBE, ACTION_HOME_MUTE, ACTION_HOME_UNMUTE):
        app.action(action)(home(action))
