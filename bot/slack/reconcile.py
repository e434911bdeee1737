"""Exactly once: is a message whose last attempt had an unknown outcome already in Slack?

Each message carries metadata naming its outbox row (`bot.slack.api.metadata`). A row that
had an attempt whose outcome we do not know (the process died, the answer was lost, a 5xx
or a timeout) is looked up (`conversations.history` for cards, `conversations.replies` for
thread replies) before it is posted again.

Slack may finish a call after the client gave up on it (a late completion). So a row is
never looked up before its last call's start (`call_started_at`) plus `settle(timeout)`:
the client timeout plus a margin of one more timeout, the rule the running process
applies after a timeout, here carried across a restart. And a row posted again after a
lookup found nothing is looked up once more, a few times at doubling intervals up to
`VERIFY_CHECKS`: a copy that still landed late is deleted (`chat.delete`), keeping the one
the store recorded (and the card the store has).
"""

from __future__ import annotations

import logging

from bot.core.events import EventKind
from bot.slack.api import CARD_EVENT, NOTE_EVENT, SlackCaller
from store import AsyncStore, OutboxRow, Store

# The sender's logger: these lines read as before the sender was split.
log = logging.getLogger("bot.slack.sender")


# Looks for a late copy after a re-post: at settle, 2x, 4x and 8x settle after its call.
VERIFY_CHECKS = 4


def settle(timeout: float) -> float:
    """Seconds after a call's start before a late completion of it is no longer expected:
    the client timeout plus a margin of one more timeout."""
    return 2.0 * timeout


async def requeue_interrupted(store: AsyncStore, *, now: float, settle_for: float) -> int:
    """After a crash: every row left in `sending` is due again, to be looked up first once
    its call has settled (one turn of the store's thread)."""
    return reconciling(await store.run(lambda sync: requeue(sync, now=now, settle_for=settle_for)))


def requeue(store: Store, *, now: float, settle_for: float) -> list[float]:
    """On the store's thread: make every row left in `sending` due again, not before its
    last call started plus `settle_for` seconds; how long each waits."""
    waits = []
    for row in store.rows_in_state("sending"):
        started = row.call_started_at if row.call_started_at is not None else row.updated_at
        due = max(now, started + settle_for)
        store.mark_retry(row.id, next_attempt_at=due, error="interrupted: outcome unknown")
        waits.append(due - now)
    return waits


def reconciling(waits: list[float]) -> int:
    """Log what `requeue` did (on the loop); returns how many rows."""
    if waits:
        log.info(
            "reconciling %d message(s) interrupted by a restart (looked up in %.1f s at most, "
            "once Slack cannot still be finishing the interrupted call)",
            len(waits),
            max(waits),
        )
    return len(waits)


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


async def look_for_late_copies(
    store: AsyncStore, slack: SlackCaller, row: OutboxRow, *, now: float, settle_for: float
) -> int:
    """A row posted again after a lookup found nothing: delete any copy of it that landed
    late (the store's message and card are kept); schedule the next look. How many went."""
    card = await store.get_card(channel_id=row.channel_id, job_key=row.job_key)
    card_ts = card.ts if card is not None else None
    kept = {ts for ts in (row.slack_ts, card_ts) if ts}
    found: dict[str, list[str]] = {}
    if card_ts is not None and row.kind != EventKind.WATCH_STARTED.value:
        # the thread: its copies of the reply, and its root names the row if it posted it
        found = await slack.copies(row, "conversations.replies", channel=row.channel_id, ts=card_ts)
    cards: list[str] = []
    if row.kind == EventKind.WATCH_STARTED.value or found.get(CARD_EVENT):
        history = await slack.copies(row, "conversations.history", channel=row.channel_id)
        cards = [ts for ts in history.get(CARD_EVENT, []) if ts not in kept]
    replies = [ts for ts in found.get(NOTE_EVENT, []) if ts not in kept]
    for thread in cards:  # a late card may hold a late reply
        late = await slack.copies(row, "conversations.replies", channel=row.channel_id, ts=thread)
        replies += late.get(NOTE_EVENT, [])
    for ts in replies + cards:  # replies first: a card without replies goes without a trace
        await slack.delete(row.channel_id, ts)
        log.warning(
            "outbox row %s reached Slack twice (a call completed late); deleted the copy %s "
            "in %s, kept %s",
            row.id,
            ts,
            row.channel_id,
            row.slack_ts,
        )
    started = row.call_started_at if row.call_started_at is not None else row.updated_at
    step = (row.verify_at or now) - started
    last = step >= settle_for * 2 ** (VERIFY_CHECKS - 1) * 0.999
    following = None if last else started + 2 * step
    await store.set_verify_at(row.id, at=following)
    return len(replies) + len(cards)
