"""A job's final notification carries the job's progress still queued before it.

When the sender posts a job's final row (`bot.core.priority.is_final`), the store hands it
the job's queued progress rows of that channel (`Store.claim_carried`, in the transaction
that starts the attempt). The final reply then says what they said, in one line
("also: new best 0.8300 (while queued)"), and the store marks them sent with it
(`Store.mark_sent`): said once, never posted after the job's end. Pure but for `claim`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot.core.events import Event, EventKind
from bot.core.notification import Notification, read_notification
from bot.core.priority import is_final
from bot.slack.text import Message, clip, context, cut, perf
from store import AsyncStore, OutboxRow

log = logging.getLogger("bot.slack.sender")

MAX_LINE = 600  # characters of the "also: …" line
MAX_BLOCKS = 50  # Slack's limit per message


async def claim(
    store: AsyncStore, row: OutboxRow, notification: Notification, *, now: float
) -> list[Notification]:
    """Start the row's attempt (`mark_sending`); a final row also takes its job's queued
    progress. Returns the notifications it carries (those of earlier attempts included)."""
    if not is_final(notification):
        await store.mark_sending(row.id, now=now)
        return []
    carried = await store.claim_carried(row.id, now=now)
    return [n for n in (_read(r) for r in carried) if n is not None]


def _read(row: OutboxRow) -> Notification | None:
    try:
        return read_notification(
            row.payload,
            channel_id=row.channel_id,
            job_key=row.job_key,
            kind=row.kind,
            dedupe_key=row.dedupe_key,
        )
    except ValueError as err:  # it is marked sent with its carrier: say why it is not shown
        log.warning("outbox row %s carried by a final reply cannot be read: %s", row.id, err)
        return None


def carried_text(carried: Sequence[Notification]) -> str | None:
    """'also: new best 0.8300, BSEV01 STOPPED (while queued)', None when nothing is said."""
    parts: list[str] = []
    for notification in carried:
        parts.extend(p for p in (_part(e) for e in notification.events) if p)
    if not parts:
        return None
    unique = list(dict.fromkeys(parts))
    return cut("also: " + ", ".join(unique), MAX_LINE - 20) + " (while queued)"


def _part(event: Event) -> str | None:
    if event.kind is EventKind.NEW_BEST:
        return f"new best {perf(event.performance)}"
    if event.kind is EventKind.ALGORITHM_STATUS and event.new_status:
        return f"{clip(event.algorithm or '?', 40)} {clip(event.new_status, 40)}"
    if event.kind is EventKind.JOB_STATUS and event.new_status:
        return clip(event.new_status, 40)
    return None


def with_carried(message: Message, carried: Sequence[Notification]) -> Message:
    """The reply with one more line saying what the carried rows said."""
    line = carried_text(carried)
    if line is None:
        return message
    blocks = [*message.blocks[: MAX_BLOCKS - 1], context(line).to_dict()]
    return Message(text=cut(f"{message.text} ({line})", 3000), blocks=blocks)
