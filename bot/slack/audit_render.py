"""Who changed a channel's subscriptions, as the channel sees it. Pure: no I/O, no clock.

`render_subscription_change`: the short line posted (through the outbox) in the job's
thread, or in the channel for `unsubscribe all`. `render_unwatched_card`: the card's last
edit once the channel stopped watching the job (no buttons).

Nothing a member typed can ping anybody from here: the actor is a Slack user id checked for
its shape, and option values (a `--mention` handle included) are shown as inert code.
"""

from __future__ import annotations

import re

from bot.core.events import ChangeAction, Event, EventKind, OptionChange
from bot.core.models import Snapshot
from bot.slack.card import render_status
from bot.slack.command_text import format_duration
from bot.slack.text import Message, code, context, here, plural, slack_date, to_message, utc_stamp

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")


def who(user_id: str | None) -> str:
    """A Slack user as a mention, when the id has a user id's shape; else inert text."""
    if user_id and _USER_ID.match(user_id):
        return f"<@{user_id}>"
    return code(user_id or "somebody", 40)


def _value(value: str | None) -> str:
    return "none" if value is None else code(value, 100)


def _changes(changes: tuple[OptionChange, ...]) -> str:
    return ", ".join(f"{c.name} {_value(c.old)} → {_value(c.new)}" for c in changes)


def change_text(event: Event, *, channel_id: str = "") -> str:
    """One line: who did what (mrkdwn, every foreign string escaped); `channel_id`: where
    it is posted ("in this DM" in a direct message)."""
    if event.kind is not EventKind.SUBSCRIPTION_CHANGED:
        raise ValueError(f"not a subscription change: {event.kind}")
    actor = who(event.actor)
    action = event.action
    place = here(channel_id)
    if action is ChangeAction.SUBSCRIBED:
        line = f"👀 {actor} started watching this job in {place}"
        given = ", ".join(f"{c.name} {_value(c.new)}" for c in event.changes or ())
        return line + (f" ({given})" if given else "")
    if action is ChangeAction.OPTIONS:
        return f"🔧 {actor} changed this job's options: {_changes(event.changes or ())}"
    if action is ChangeAction.UNSUBSCRIBED:
        return f"🔕 {actor} stopped watching this job in {place}"
    if action is ChangeAction.UNSUBSCRIBED_ALL:
        count = event.count or 0
        return f"🔕 {actor} stopped watching {plural(count, 'job')} in {place}"
    if action is ChangeAction.MUTED:
        duration = event.duration
        length = f" for {format_duration(duration)}" if duration is not None else ""
        return f"🔧 {actor} muted this job{length}: only terminal statuses are posted"
    if action is ChangeAction.UNMUTED:
        return f"🔔 {actor} unmuted this job"
    raise ValueError(f"unknown subscription change: {action}")


def watched_by(user_id: str, *, since: float, channel_id: str = "") -> str:
    """The card's line that says who made the channel watch the job, and since when."""
    stamp = utc_stamp(since)
    when = stamp and slack_date(since, "{date_short_pretty} {time}", stamp)
    line = f"👀 watched in {here(channel_id)} by {who(user_id)}"
    return line + (f" since {when}" if when else "")


def render_subscription_change(event: Event, *, channel_id: str = "") -> Message:
    text = change_text(event, channel_id=channel_id)
    return to_message(text, [context(text)])


def render_unwatched_card(
    snapshot: Snapshot, *, since: float, by: str | None, now: float, channel_id: str = ""
) -> Message:
    """The card once its channel stopped watching the job: the job as it was then, a line
    that says since when and by whom, no buttons. Never edited again."""
    stamp = utc_stamp(since)
    when = (stamp and slack_date(since, "{date_short_pretty} {time}", stamp)) or "now"
    note = (
        f"🔕 No longer watched in {here(channel_id)} since {when} by {who(by)}: this card is "
        "not updated any more. Subscribe again to watch the job."
    )
    status = render_status(snapshot, now=now)
    text = to_message(f"{note} {status.text}", []).text
    return Message(text=text, blocks=[context(note).to_dict(), *status.blocks[:49]])
