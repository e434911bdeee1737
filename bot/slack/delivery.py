"""One outbox row to Slack: the card first if the channel has none, then the reply in its
thread; and what a failed attempt means for the row (retry when, give up, or disable the
channel). The `Sender` (`bot.slack.sender`) decides which rows go when.

(About 320 lines, kept whole: every kind of row shares the same lookup-before-post, pacing
and failure rules, which must not drift apart; the kinds' own rendering lives elsewhere,
and the post of a line that is not a job's reply in `bot.slack.note_post`.)
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from bot.core.broadcast import broadcasts
from bot.core.digest import DIGEST_KIND, DailyDigest
from bot.core.events import EventKind
from bot.core.models import Snapshot
from bot.core.notification import Notification, read_notification
from bot.core.oncall import ONCALL_KINDS, raises_alert
from bot.errors import SlackDeliveryError, SlackFailure
from bot.metrics import Metrics
from bot.slack.actions_render import render_action_line
from bot.slack.api import CARD_EVENT, NOTE_EVENT, SlackCaller, disable_reason
from bot.slack.audit_render import render_subscription_change
from bot.slack.digest_render import render_digest
from bot.slack.live_cards import LiveCards
from bot.slack.merge import claim, with_carried
from bot.slack.note_post import (
    NOT_POSTED,
    NotePoster,
    drop_unrenderable,
    may_have_posted,
    post_message,
)
from bot.slack.oncall_delivery import OncallDelivery
from bot.slack.oncall_render import with_ack_button
from bot.slack.reconcile import already_posted, look_for_late_copies, settle
from bot.slack.render import Message, render_notification
from store import AsyncStore, OutboxRow, Store

# The sender's logger: these lines read as before the sender was split.
log = logging.getLogger("bot.slack.sender")


@dataclass(frozen=True)
class SenderConfig:
    pace: float = 1.0  # seconds between two posts in one channel
    max_attempts: int = 3  # for errors Slack gives on purpose; transient ones retry forever
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    concurrency: int = 20  # channels served at once


class Delivery:
    """Posts rows, paces each channel (`ready`), and counts the posts."""

    def __init__(
        self,
        store: AsyncStore,
        slack: SlackCaller,
        cards: LiveCards,
        *,
        metrics: Metrics,
        config: SenderConfig,
        clock: Callable[[], float],
        rng: random.Random,
    ) -> None:
        self._store = store
        self._slack = slack
        self._cards = cards
        self._metrics = metrics
        self._config = config
        self._clock = clock
        self._rng = rng
        self._channel_ready: dict[str, float] = {}
        self.posts = 0
        self._notes = NotePoster(
            store,
            slack,
            metrics=metrics,
            failed=lambda row, err, unknown: self._failed(row, err, posted_unknown=unknown),
            posted=self._posted,
        )
        self._oncall = OncallDelivery(store, slack, cards, metrics=metrics, notes=self._notes)

    def _posted(self, channel: str) -> None:
        self.posts += 1
        self._paced(channel)

    def ready(self, channel: str) -> bool:
        """The channel's pace allows a post now."""
        return self._channel_ready.get(channel, 0.0) <= self._clock()

    def _paced(self, channel: str, *, extra: float = 0.0) -> None:
        self._channel_ready[channel] = self._clock() + max(self._config.pace, extra)

    async def deliver(self, row: OutboxRow) -> None:
        """Post one outbox row (after looking it up if an earlier attempt may have landed)."""
        if row.kind in (EventKind.SUBSCRIPTION_CHANGED.value, EventKind.ACTION_TAKEN.value):
            await self._deliver_change(row)
            return
        if row.kind == DIGEST_KIND:  # in the channel, never in a thread
            await self._deliver_change(row, render=_digest_message, in_thread=False)
            return
        if row.kind in ONCALL_KINDS:  # a re-page, an acknowledgement (bot.slack.oncall_delivery)
            await self._oncall.deliver(row)
            return
        unknown = may_have_posted(row)
        if unknown:
            try:
                if await already_posted(self._store, self._slack, row):
                    return
            except SlackDeliveryError as err:
                if err.transient:
                    # could not look right now: still unknown, look again next time
                    await self._failed(row, err, posted_unknown=True)
                    return
                # Slack refused the lookup itself (e.g. missing_scope, thread_not_found):
                # looking again cannot help, so post rather than block the channel forever.
                log.warning(
                    "cannot check whether outbox row %s reached Slack (%s); posting it",
                    row.id,
                    err.error,
                )
        try:
            notification = read_notification(
                row.payload,
                channel_id=row.channel_id,
                job_key=row.job_key,
                kind=row.kind,
                dedupe_key=row.dedupe_key,
            )
            started = self._clock()
            carried = await claim(self._store, row, notification, now=started)
            ts, started = await self._post_row(row, notification, started, carried)
        except SlackDeliveryError as err:
            await self._failed(row, err, posted_unknown=err.posted_unknown)
            return
        except ValueError as err:  # bad payload or event (pydantic's errors are ValueErrors)
            await drop_unrenderable(self._store, row, err)  # raised before it went out
            return
        # Posted again after an unknown outcome: the earlier call may still land late.
        verify_at = started + self.settle if unknown else None
        await self._store.mark_sent(row.id, ts=ts, verify_at=verify_at)
        self._metrics.messages_sent.labels(kind=row.kind).inc()

    @property
    def settle(self) -> float:
        """Seconds after a call's start before Slack cannot still be completing it."""
        return settle(self._slack.timeout)

    async def verify(self, row: OutboxRow) -> None:
        """Look for a late copy of a row posted again; delete it (`look_for_late_copies`)."""
        try:
            await look_for_late_copies(
                self._store, self._slack, row, now=self._clock(), settle_for=self.settle
            )
        except SlackDeliveryError as err:
            retry = err.transient
            log.warning(
                "cannot look for a late copy of outbox row %s (%s)%s",
                row.id,
                err.error,
                "; will look again" if retry else "",
            )
            at = self._clock() + max(err.retry_after or 0.0, self.settle) if retry else None
            await self._store.set_verify_at(row.id, at=at)

    async def _post_row(
        self,
        row: OutboxRow,
        notification: Notification,
        started: float | None = None,
        carried: Sequence[Notification] = (),
    ) -> tuple[str, float]:
        """Post the row: the card first if the channel has none, then (unless the row only
        starts the watch) the reply in the card's thread; returns the message's ts and when
        its call started (`started`, or later for a reply after its card)."""
        started = self._clock() if started is None else started
        card_ts = await self._cards.posted_ts(row.channel_id, row.job_key)
        watch = notification.headline is EventKind.WATCH_STARTED
        if card_ts is None:
            card_ts = await self._post_card(row)
            if watch:
                return card_ts, started
            # the reply's call starts now: a stop during it is reconciled from here
            started = self._clock()
            await self._store.mark_call_started(row.id, now=started)
        elif watch:
            await self._store.mark_card_dirty(channel_id=row.channel_id, job_key=row.job_key)
            return card_ts, started
        # the job as it was when these events happened, else as the store has it now
        snapshot = notification.snapshot or await self._cards.snapshot(row.job_key)
        # a final status, as the subscription's `--broadcast` wants it (`bot.core.broadcast`)
        broadcast = broadcasts(notification.broadcast, notification.events)
        # A reply also sent to the channel is the short form; the card has the details.
        message = render_notification(
            notification.events,
            snapshot=snapshot or Snapshot(job_key=row.job_key, status="UNKNOWN"),
            mention=notification.mention,
            broadcast=broadcast,
            acting=self._cards.acting,
        )
        message = with_carried(message, carried)  # the job's progress queued before its end
        if raises_alert(notification):  # on-call: the alert carries its Acknowledge button
            message = with_ack_button(message, row.id)
        try:
            ts = await post_message(
                self._slack, row, message, NOTE_EVENT, thread_ts=card_ts, reply_broadcast=broadcast
            )
        except SlackDeliveryError as err:
            if err.error == "thread_not_found":  # somebody deleted the card
                await self._store.forget_card(channel_id=row.channel_id, job_key=row.job_key)
                raise SlackDeliveryError(
                    "card deleted; posting a new one",
                    kind=SlackFailure.THREAD_GONE,
                    retry_after=0.0,
                ) from err
            raise
        self.posts += 1
        self._paced(row.channel_id)
        await self._store.mark_card_dirty(channel_id=row.channel_id, job_key=row.job_key)
        return ts, started

    async def _deliver_change(
        self,
        row: OutboxRow,
        *,
        render: Callable[[OutboxRow], Message] | None = None,
        in_thread: bool = True,
    ) -> None:
        """Who changed the channel's subscription: a line in the job's thread when the
        channel has its card, else in the channel (never a new card: the subscription may
        be gone). Looked up first, like any row, when an earlier attempt may have landed
        (`NotePoster.post`, as the on-call lines are). `render` and `in_thread=False`:
        another message for the channel (the digest)."""
        make = render or _change_message
        card_ts = await self._cards.posted_ts(row.channel_id, row.job_key) if in_thread else None
        await self._notes.post(row, partial(make, row), card_ts=card_ts)

    async def _post_card(self, row: OutboxRow) -> str:
        message = await self._cards.message(row.channel_id, row.job_key)
        ts = await post_message(self._slack, row, message, CARD_EVENT)
        self.posts += 1
        self._paced(row.channel_id)
        await self._store.save_card(channel_id=row.channel_id, job_key=row.job_key, ts=ts)
        return ts

    async def _failed(
        self, row: OutboxRow, err: SlackDeliveryError, *, posted_unknown: bool
    ) -> None:
        if err.kind is SlackFailure.PERMANENT:
            await disable_channel(self._store, row.channel_id, err.error)
            return
        attempts = row.attempts + 1
        if not err.transient and attempts >= self._config.max_attempts:
            # Slack answered, and refused this message (e.g. invalid_blocks): retrying the
            # same body cannot help. Transient trouble (429, 5xx, timeouts) retries forever.
            log.error(
                "giving up on outbox row %s for %s after %d attempts: %s",
                row.id,
                row.channel_id,
                attempts,
                err.error,
            )
            await self._store.mark_dead(row.id, error=err.error)
            return
        delay = err.retry_after
        if delay is None:
            delay = self._rng.uniform(
                0, min(self._config.backoff_max, self._config.backoff_base * 2**attempts)
            )
        if err.kind is SlackFailure.TIMED_OUT:
            # Slack may still be working on the call we gave up on: give it one more client
            # timeout to land before we look for it, or the lookup misses it and we post twice.
            delay = max(delay, self._slack.timeout)
        self._paced(row.channel_id, extra=delay)
        prefix = "" if posted_unknown else NOT_POSTED
        await self._store.mark_retry(
            row.id, next_attempt_at=self._clock() + delay, error=prefix + err.error
        )


def _change_message(row: OutboxRow) -> Message:
    notification = read_notification(
        row.payload,
        channel_id=row.channel_id,
        job_key=row.job_key,
        kind=row.kind,
        dedupe_key=row.dedupe_key,
    )
    event = notification.events[0]
    if event.kind is EventKind.ACTION_TAKEN:  # who started / cancelled it
        return render_action_line(event)
    return render_subscription_change(event, channel_id=row.channel_id)


def _digest_message(row: OutboxRow) -> Message:
    return render_digest(DailyDigest.read(row.payload))


async def disable_channel(store: AsyncStore, channel: str, error: str) -> None:
    """Slack refused the channel for good: disable its subscriptions, drop its queue (one
    turn of the store's thread)."""
    reason = disable_reason(error)

    def disable(sync: Store) -> tuple[int, int]:
        return (
            sync.disable_channel(channel_id=channel, reason=reason),
            sync.dead_channel_rows(channel_id=channel, error=error),
        )

    count, dead = await store.run(disable)
    log.warning(
        "Slack said %s for channel %s: disabled %d subscription(s), dropped %d queued message(s)",
        error,
        channel,
        count,
        dead,
    )
