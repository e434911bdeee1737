"""Who changed a channel's subscriptions: the visible line's outbox row, and the audit log.

Each `on_*` function is the store's `AuditRow` hook for one kind of command: called inside the
command's own transaction with what it changed (`store.SubscriptionChange`), it returns
the SUBSCRIPTION_CHANGED row to queue (None when nothing changed, e.g. a re-subscribe
with the same options). The line itself is drawn by `bot.slack.audit_render`.

`audit` writes one line on the `bot.audit` logger per command that could change a
subscription: team, channel, user, command, result. No secrets ever reach it (the command
text is the user's own, cut to one line).
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any

from bot.core.events import ChangeAction, Event, EventKind, OptionChange
from bot.core.notification import EVERY_JOB, subscription_changed
from bot.engine.jobs import outbox_row
from bot.slack.command_text import Mute, Unmute, Unsubscribe
from store import NewOutboxRow, Subscription, SubscriptionChange

audit_log = logging.getLogger("bot.audit")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def log_line(*, team: str, channel: str, user: str, command: str, result: str) -> None:
    """One audit line (also as JSON fields with LOG_FORMAT=json)."""
    command = _CONTROL.sub(" ", command)[:300]
    audit_log.info(
        "team=%s channel=%s user=%s command=%r result=%s",
        team,
        channel,
        user,
        command,
        result,
        extra={
            "team": team,
            "channel": channel,
            "user": user,
            "command": command,
            "result": result,
        },
    )


@dataclass(frozen=True)
class Actor:
    """Who asked for a command, and what they typed (or which button), for the audit."""

    team_id: str
    user_id: str
    text: str
    trigger_id: str = ""  # Slack's id of the request (a redelivery repeats it)


def clicker(body: dict[str, Any], text: str) -> Actor:
    """Who clicked, from a block_actions (or Home) payload: the team of the click, else of
    the user, else the payload's own `team_id`."""
    user = body.get("user") or {}
    team = (body.get("team") or {}).get("id") or user.get("team_id") or body.get("team_id")
    return Actor(
        team_id=str(team or ""),
        user_id=str(user.get("id", "")),
        text=text,
        trigger_id=str(body.get("trigger_id") or ""),
    )


def click_channel(body: dict[str, Any]) -> str:
    """The channel a button was clicked in ("" for a surface without one: the Home tab)."""
    return str((body.get("channel") or {}).get("id", ""))


def audit(actor: Actor, channel_id: str, result: str) -> None:
    """One audit line for a command (also as JSON fields with LOG_FORMAT=json)."""
    log_line(
        team=actor.team_id,
        channel=channel_id,
        user=actor.user_id,
        command=actor.text,
        result=result,
    )


def local_result(cmd: Unsubscribe | Mute | Unmute, answer: Any) -> str:
    """The audit log's result of a local command."""
    if isinstance(cmd, Unsubscribe):
        if cmd.all:
            return f"unsubscribed {int(answer)} job(s)"
        return f"unsubscribed from {cmd.key}" if answer else f"not watching {cmd.key}"
    if not answer:
        return f"not watching {cmd.key}"
    if isinstance(cmd, Mute):
        return f"muted {cmd.key} for {cmd.seconds:g} s"
    return f"unmuted {cmd.key}"


def _options(sub: Subscription) -> dict[str, str | None]:
    return {
        "mention": sub.mention,
        "events": sub.events,
        "min-improvement": f"{sub.min_improvement:g}",
        "broadcast": sub.broadcast,
    }


def option_changes(before: Subscription, after: Subscription) -> tuple[OptionChange, ...]:
    old, new = _options(before), _options(after)
    return tuple(
        OptionChange(name=name, old=old[name], new=new[name])
        for name in old
        if old[name] != new[name]
    )


def _row(change: SubscriptionChange, event: Event) -> NewOutboxRow:
    key = change.job_key or EVERY_JOB
    notification = subscription_changed(
        change.channel_id, key, event, now=change.at, nonce=secrets.token_hex(4)
    )
    return outbox_row(notification)


def _event(change: SubscriptionChange, action: ChangeAction, **fields: object) -> Event:
    return Event.model_validate(
        {
            "kind": EventKind.SUBSCRIPTION_CHANGED,
            "job_key": change.job_key or EVERY_JOB,
            "actor": change.user_id,
            "action": action,
            **fields,
        }
    )


def on_subscribe(change: SubscriptionChange) -> NewOutboxRow | None:
    """A re-subscribe's changes of options (a new subscription is told by its card)."""
    after = change.after
    if after is None:
        return None
    if change.before is None:
        # New, renewed or re-enabled: its card (queued in this transaction) says who
        # subscribed and since when (`bot.slack.live_cards`); no second message.
        return None
    changes = option_changes(change.before, after)
    if not changes:
        return None
    return _row(change, _event(change, ChangeAction.OPTIONS, changes=changes))


def on_unsubscribe(change: SubscriptionChange) -> NewOutboxRow | None:
    if change.job_key is None:
        return _row(change, _event(change, ChangeAction.UNSUBSCRIBED_ALL, count=change.count))
    return _row(change, _event(change, ChangeAction.UNSUBSCRIBED))


def on_mute(change: SubscriptionChange) -> NewOutboxRow | None:
    before, after = change.before, change.after
    if after is None:
        return None
    if after.muted_until is None:
        was_muted = before is not None and (before.muted_until or 0.0) > change.at
        return _row(change, _event(change, ChangeAction.UNMUTED)) if was_muted else None
    duration = max(after.muted_until - change.at, 0.0)
    return _row(change, _event(change, ChangeAction.MUTED, duration=duration))
