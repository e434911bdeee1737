"""The job cards in Slack, kept current: drawn from the store, edited in place.

Every change marks a card dirty; the sender asks `LiveCards.due` which cards to redraw and
runs `refresh` for each (one `chat.update` however many changes piled up). Edits have their
own pace per channel, and share the workspace's `chat.update` budget (`bot.slack.budget`):
no more edits start than it allows now, each renders the card only once its token is
granted (never a stale render), and a 429 on `chat.update` pauses them all.
A card whose channel stopped watching the job is edited once to say so (no buttons), and
the store then leaves it out of the dirty cards for good (until the channel subscribes
again).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection

from bot.core.forecast_state import read_state
from bot.core.models import Snapshot
from bot.errors import SlackDeliveryError, SlackFailure
from bot.metrics import Metrics
from bot.slack.actions import StartParameters
from bot.slack.actions_render import card_buttons, origin_line
from bot.slack.api import SlackCaller
from bot.slack.audit_render import render_unwatched_card, watched_by
from bot.slack.personal_render import followed_line, followers_line, notify_me_button
from bot.slack.render import Message, render_card
from bot.slack.text import context
from store import (
    ActionRecord,
    AsyncStore,
    Card,
    HistoryPoint,
    JobRecord,
    Store,
    StoreUnavailable,
    Subscription,
)

# The sender's logger: these lines read as before the sender was split.
log = logging.getLogger("bot.slack.sender")

# After an edit failed for a reason that may pass: wait this long before the next one.
EDIT_RETRY = 5.0


class LiveCards:
    def __init__(
        self,
        store: AsyncStore,
        slack: SlackCaller,
        *,
        metrics: Metrics,
        pace: float,
        clock: Callable[[], float],
        disable: Callable[[str, str], Awaitable[None]],
        acting: bool = True,  # ACTIONS is not off: a card (and a miss) offers its buttons
    ) -> None:
        self.acting = acting
        self._store = store
        self._slack = slack
        self._metrics = metrics
        self._pace = pace
        self._clock = clock
        self._disable = disable  # (channel, Slack's error): stop posting to the channel
        self._edit_ready: dict[str, float] = {}
        self.edits = 0

    async def posted_ts(self, channel: str, job_key: str) -> str | None:
        """The ts of the job's card in the channel, if one was posted."""
        card = await self._store.get_card(channel_id=channel, job_key=job_key)
        return card.ts if card is not None else None

    def due(
        self,
        now: float,
        dirty: list[Card],
        *,
        posting: Collection[tuple[str, str]],
        editing: Collection[str],
        queued: Collection[tuple[str, str]] = (),
    ) -> list[Card]:
        """Of the `dirty` cards (the store's, oldest change first), those to redraw now: one
        per channel, none whose channel has an edit in
        flight (`editing`) or whose job a post of this tick is about to change (`posting`:
        (channel, job) pairs). Edits have their own pace (chat.update is rate limited apart
        from chat.postMessage), so a busy thread never starves its card. No more than the
        workspace's `chat.update` budget allows now: the others wait, dirty, and are drawn
        in their latest state when their turn comes. Cards whose job still has a row queued
        in the channel (`queued`: its post will change the card again) come after the others,
        so a scarce budget is not spent on an edit that is stale by the next post."""
        allowed = self._slack.budget.available("chat.update")
        if allowed == 0:
            return []
        cards = [
            c
            for c in dirty
            if (c.channel_id, c.job_key) not in posting
            and c.channel_id not in editing
            and self._edit_ready.get(c.channel_id, 0.0) <= now
        ]
        cards.sort(key=lambda c: (c.channel_id, c.job_key) in queued)  # stable: oldest first
        chosen: dict[str, Card] = {}
        for c in cards:  # each channel's oldest change, oldest first
            chosen.setdefault(c.channel_id, c)
        return list(chosen.values())[:allowed]

    async def refresh(self, card: Card) -> None:
        """Redraw one card with `chat.update`; marked clean unless the edit may work later."""
        if card.ts is None or await self._disabled(card.channel_id, card.job_key):
            # Nothing to edit, or nowhere to edit it: left dirty, the card would be retried
            # on every tick (a hot loop against a channel Slack has refused for good).
            await self._clean(card)
            return
        # The budget's token first, the render after: a card waiting for its turn is drawn
        # as the store has it when it goes, never as it was when it was picked.
        await self._slack.acquire("chat.update")
        try:
            if card.unwatched_at is not None:
                message = await self.unwatched(card, since=card.unwatched_at)
            else:
                message = await self.message(card.channel_id, card.job_key)
        except StoreUnavailable:
            raise  # the database refused: the card stays dirty, the sender pauses
        except Exception:
            # A record this version cannot draw (another version wrote it, a bug of ours):
            # left dirty it would take chat.update's token on every tick and no other card
            # of the workspace would ever be edited. Logged once; the next change retries.
            log.exception(
                "card of %s in %s cannot be drawn; left as it is", card.job_key, card.channel_id
            )
            await self._clean(card)
            return
        try:
            await self._slack.call_granted(
                "chat.update",
                channel=card.channel_id,
                ts=card.ts,
                text=message.text,
                blocks=message.blocks,
            )
        except SlackDeliveryError as err:
            if err.error == "message_not_found":
                log.warning(
                    "card of %s in %s was deleted; leaving it", card.job_key, card.channel_id
                )
                await self._clean(card)
            elif err.kind is SlackFailure.PERMANENT:
                await self._disable(card.channel_id, err.error)
                await self._clean(card)
            elif err.kind is SlackFailure.RATE_LIMITED:
                pass  # the budget paused chat.update for every caller (SlackCaller.call)
            else:
                self._edit_ready[card.channel_id] = self._clock() + EDIT_RETRY
            return
        self.edits += 1
        self._metrics.messages_sent.labels(kind="card_update").inc()
        self._edit_ready[card.channel_id] = self._clock() + self._pace
        await self._clean(card)

    async def _clean(self, card: Card) -> None:
        if card.unwatched_at is not None:  # its one last edit is done (or cannot be done)
            await self._store.mark_unwatched_shown(
                channel_id=card.channel_id, job_key=card.job_key, unwatched_at=card.unwatched_at
            )
            return
        await self._store.mark_card_clean(
            channel_id=card.channel_id, job_key=card.job_key, card_version=card.card_version
        )

    async def unwatched(self, card: Card, *, since: float) -> Message:
        """The card's last edit: the job as the store has it, no longer watched here."""
        snapshot = await self.snapshot(card.job_key)
        return render_unwatched_card(
            snapshot or Snapshot(job_key=card.job_key, status="UNKNOWN"),
            since=since,
            by=card.unwatched_by,
            now=self._clock(),
            channel_id=card.channel_id,
        )

    async def _disabled(self, channel: str, job_key: str) -> bool:
        sub = await self._store.get_subscription(channel_id=channel, job_key=job_key)
        return sub is not None and sub.disabled_reason is not None

    async def message(self, channel: str, job_key: str) -> Message:
        """The card as it should look now: the job as the store has it, its history, and
        the channel's mute (read in one turn of the store's thread)."""

        def read(
            store: Store,
        ) -> tuple[
            JobRecord | None,
            Subscription | None,
            list[HistoryPoint],
            ActionRecord | None,
            str | None,
            int,
        ]:
            return (
                store.get_job(job_key),
                store.get_subscription(channel_id=channel, job_key=job_key),
                store.history(job_key),
                store.job_origin(job_key),
                store.subscription_owner(channel_id=channel, job_key=job_key),
                store.followers(job_key),
            )

        record, sub, points, origin, owner, followers = await self._store.run(read)
        snapshot = (
            Snapshot.model_validate_json(record.snapshot_json)
            if record
            else Snapshot(job_key=job_key, status="UNKNOWN")
        )
        now = self._clock()
        history: dict[str, list[float]] = {}
        for point in points:
            history.setdefault(point.algorithm, []).append(point.value)
        card = render_card(
            snapshot,
            now=now,
            last_improvement_at=record.last_improvement_at if record else None,
            history=history or None,
            muted_until=sub.muted_until if sub else None,
            forecast=read_state(record.forecast_json).last if record else None,
            # a channel's card can be followed; a DM's is its owner's already (#15)
            buttons=[
                *card_buttons(snapshot, acting=self.acting),
                *([notify_me_button(job_key)] if owner is None else []),
            ],
            channel_id=channel,
        )
        people = (
            [context(followers_line(followers)).to_dict()] if owner is None and followers else []
        )
        lines = []
        if origin is not None:  # started from Slack: by whom, retraining which job
            try:
                retrain_of = StartParameters.model_validate_json(origin.parameters).retrain_of
            except ValueError:  # a row this version did not write: say who, not what
                retrain_of = None
            lines.append(origin_line(origin.user_id, retrain_of=retrain_of))
        if sub is not None and sub.created_by:
            # who made this channel watch the job (or: the DM's owner follows it)
            lines.append(
                followed_line(sub.created_at)
                if owner is not None
                else watched_by(sub.created_by, since=sub.created_at, channel_id=channel)
            )
        if not lines:
            return Message(text=card.text, blocks=[*card.blocks[:49], *people][:50])
        blocks = [*card.blocks[:48], *people, context(*lines).to_dict()]
        return Message(text=card.text, blocks=blocks)

    async def snapshot(self, job_key: str) -> Snapshot | None:
        """The job as the store has it now."""
        record = await self._store.get_job(job_key)
        return Snapshot.model_validate_json(record.snapshot_json) if record else None
