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
from store import AsyncStore, OutboxRow, Store

# The sender's logger: these lines read as before the sender was split.
log = logging.getLogger("bot.slack.sender")


async def requeue_interrupted(store: AsyncStore, *, now: float) -> int:
    """After a crash: every row left in `sending` is due again, to be looked up first (one
    turn of the store's thread)."""
    return reconciling(await store.run(lambda sync: requeue(sync, now=now)))


def requeue(store: Store, *, now: float) -> int:
    """On the store's thread: make every row left in `sending` due again; how many."""
    rows = store.rows_in_state("sending")
    for row in rows:
        store.mark_retry(row.id, next_attempt_at=now, error="interrupted: outcome unknown")
    return len(rows)


def reconciling(count: int) -> int:
    """Log what `requeue` did (on the loop); returns `count`."""
    if count:
        log.info("reconciling %d message(s) interrupted by a restart", count)
    return count


async def already_posted(store: AsyncStore, slack: SlackCaller, row: OutboxRow) -> bool:
    """Look the row up in Slack; True (and marked sent) if it is there.

    A lookup Slack refuses raises its `SlackDeliveryError`.
    """
    card = await store.get_card(channel_id=row.channel_id, job_key=row.job_key)
    card_ts = card.ts if card is not None else None
    if card_ts is None:
        found = await slack.find_message(
            row, CARD_EVENT, "conversations.history", channel=row.channel_id
        )
        if found is None:
            return False
        await store.save_card(channel_id=row.channel_id, job_key=row.job_key, ts=found)
        # drawn when first posted: the job may have moved since
        await store.mark_card_dirty(channel_id=row.channel_id, job_key=row.job_key)
        card_ts = found
        if row.kind == EventKind.WATCH_STARTED.value:
            await store.mark_sent(row.id, ts=found)
            return True
    elif row.kind == EventKind.WATCH_STARTED.value:
        await store.mark_sent(row.id, ts=card_ts)
        return True
    found = await slack.find_message(
        row, NOTE_EVENT, "conversations.replies", channel=row.channel_id, ts=card_ts
    )
    if found is None:
        return False
    log.info("outbox row %s was already in Slack (ts %s); not posting it again", row.id, found)
    await store.mark_sent(row.id, ts=found)
    return True
