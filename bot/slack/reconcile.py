"""Exactly once: is a message whose last attempt had an unknown outcome already in Slack?

Each message carries metadata naming its outbox row (`bot.slack.api.metadata`). A row that
had an attempt whose outcome we do not know (the process died, the answer was lost, a 5xx
or a timeout) is looked up (`conversations.history` for cards, `conversations.replies` for
thread replies) before it is posted again.
"""

from __future__ import annotations

import logging

from bot.core.events import EventKind
from bot.slack.api import CARD_EVENT, NOTE_EVENT, SlackCaller
from store import OutboxRow, Store

# The sender's logger: these lines read as before the sender was split.
log = logging.getLogger("bot.slack.sender")


def requeue_interrupted(store: Store, *, now: float) -> int:
    """After a crash: every row left in `sending` is due again, to be looked up first."""
    rows = store.rows_in_state("sending")
    for row in rows:
        store.mark_retry(row.id, next_attempt_at=now, error="interrupted: outcome unknown")
    if rows:
        log.info("reconciling %d message(s) interrupted by a restart", len(rows))
    return len(rows)


async def already_posted(store: Store, slack: SlackCaller, row: OutboxRow) -> bool:
    """Look the row up in Slack; True (and marked sent) if it is there.

    A lookup Slack refuses raises its `SlackDeliveryError`.
    """
    card = store.get_card(channel_id=row.channel_id, job_key=row.job_key)
    card_ts = card.ts if card is not None else None
    if card_ts is None:
        found = await slack.find_message(
            row, CARD_EVENT, "conversations.history", channel=row.channel_id
        )
        if found is None:
            return False
        store.save_card(channel_id=row.channel_id, job_key=row.job_key, ts=found)
        # drawn when first posted: the job may have moved since
        store.mark_card_dirty(channel_id=row.channel_id, job_key=row.job_key)
        card_ts = found
        if row.kind == EventKind.WATCH_STARTED.value:
            store.mark_sent(row.id, ts=found)
            return True
    elif row.kind == EventKind.WATCH_STARTED.value:
        store.mark_sent(row.id, ts=card_ts)
        return True
    found = await slack.find_message(
        row, NOTE_EVENT, "conversations.replies", channel=row.channel_id, ts=card_ts
    )
    if found is None:
        return False
    log.info("outbox row %s was already in Slack (ts %s); not posting it again", row.id, found)
    store.mark_sent(row.id, ts=found)
    return True
