"""On-call messages (issue #17): the Acknowledge button on an alert, the re-page, the line
that says who acknowledged, the alert as edited after it, and the button's ephemeral
answers. Pure: no I/O, times handed in.
"""

from __future__ import annotations

import time

from slack_sdk.models.blocks import ActionsBlock, ButtonElement

from bot.core.events import EventKind
from bot.core.models import Snapshot, is_terminal
from bot.core.notification import Notification
from bot.core.oncall import OncallNote
from bot.slack.command_text import format_duration
from bot.slack.render import render_notification
from bot.slack.text import Message, code, context, section, status_text, to_message

ACTION_ACK = "oncall_acknowledge"


def alert_reply(notification: Notification, snapshot: Snapshot) -> Message:
    """The thread reply of an alert as the sender posts it (a bad ending is terminal, so
    it is the short, broadcast form), without its button."""
    broadcast = any(
        e.kind is EventKind.JOB_STATUS and e.new_status is not None and is_terminal(e.new_status)
        for e in notification.events
    )
    return render_notification(
        notification.events,
        snapshot=snapshot,
        mention=notification.mention,
        broadcast=broadcast,
    )


def with_ack_button(message: Message, alert_outbox_id: int) -> Message:
    """`message` with an Acknowledge button for the alert its outbox row carries."""
    button = ButtonElement(
        text="Acknowledge", action_id=ACTION_ACK, value=str(alert_outbox_id), style="primary"
    )
    return Message(
        text=message.text, blocks=[*message.blocks, ActionsBlock(elements=[button]).to_dict()]
    )


def when(at: float) -> str:
    """A time every reader sees in their own time zone (UTC in the fallback text)."""
    fallback = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))
    return f"<!date^{int(at)}^{{date_short_pretty}} at {{time}}|{fallback}>"


def waited(seconds: float | None) -> str:
    return format_duration(max(int(seconds or 0), 1))


def acknowledged_alert(message: Message, note: OncallNote) -> Message:
    """The alert message once acknowledged: its button gone, who and when in its place."""
    blocks = [b for b in message.blocks if b.get("type") != "actions"]
    line = f"✅ Acknowledged by <@{note.actor}> {when(note.acked_at or 0.0)}"
    return Message(text=message.text, blocks=[*blocks, context(line).to_dict()])


def acked_line(note: OncallNote) -> Message:
    """The thread line of an acknowledgement."""
    text = (
        f"✅ Acknowledged by <@{note.actor}> after {waited(note.waited)}: "
        "no more pages for this alert."
    )
    return to_message(text, [section(text)])


def repage_message(note: OncallNote) -> Message:
    """The mention again, how long the alert has waited, and the button once more."""
    status = f" {status_text(note.status)}" if note.status else ""
    text = (
        f"{note.mention or ''} 🔁 Still not acknowledged: job {code(note.job_key)}{status} "
        f"{waited(note.waited)} ago (page {note.page} of {note.max_pages})"
    ).strip()
    message = to_message(text, [section(text)])
    return with_ack_button(message, note.alert_outbox_id)


def already_acked(user: str | None, at: float | None) -> str:
    return f"This alert was already acknowledged by <@{user}> {when(at or 0.0)}."


def ack_done() -> str:
    return "✅ You acknowledged this alert: no more pages for it."


def ack_ended(job_key: str) -> str:
    return (
        f"Nobody is paged for this alert any more: this channel no longer watches "
        f"{code(job_key)} (unsubscribed). Nothing was recorded."
    )


def ack_missing() -> str:
    return "This alert is not known to the bot (it may have been cleaned up long ago)."
