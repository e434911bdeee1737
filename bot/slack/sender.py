"""The sender: the only code that posts to Slack.

Reads the outbox in order, per channel; the first row of a (channel, job) posts the job card,
later rows are replies in the card's thread (terminal ones also broadcast to the channel),
and every change marks the card dirty so it is edited in place (several edits due at once
become one `chat.update`).

Exactly once: each message carries metadata naming its outbox row. A row that had an attempt
whose outcome we do not know (the process died, the answer was lost, a 5xx or a timeout) is
looked up in Slack (`conversations.history` for cards, `conversations.replies` for thread
replies) before it is posted again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.core.events import Event, EventKind
from bot.core.models import Snapshot, is_terminal
from bot.metrics import Metrics
from bot.slack.api import (
    CARD_EVENT,
    NOTE_EVENT,
    Outcome,
    SlackCaller,
    disable_reason,
    metadata,
)
from bot.slack.render import Message, render_card, render_notification
from store import Card, OutboxRow, Store, StoreUnavailable

log = logging.getLogger(__name__)

# A row whose last attempt certainly did not reach Slack needs no lookup before a retry.
NOT_POSTED = "not_posted: "


@dataclass(frozen=True)
class SenderConfig:
    pace: float = 1.0  # seconds between two posts in one channel
    max_attempts: int = 3  # for errors Slack gives on purpose; transient ones retry forever
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    concurrency: int = 20  # channels served at once


@dataclass(frozen=True)
class PostedCard:
    ts: str
    version: int


class Sender:
    def __init__(
        self,
        store: Store,
        client: AsyncWebClient,
        *,
        metrics: Metrics,
        config: SenderConfig = SenderConfig(),
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._slack = SlackCaller(client, metrics=metrics)
        self._metrics = metrics
        self._config = config
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._channel_ready: dict[str, float] = {}
        self._edit_ready: dict[str, float] = {}
        self._edits_paused_until = 0.0
        self._busy: set[tuple[str, str]] = set()  # ("post" | "edit", channel) in flight
        self._store_failing = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(config.concurrency)
        self._stopping = asyncio.Event()
        self.last_cycle_at: float | None = None
        self.posts = 0
        self.edits = 0

    # ----------------------------------------------------------------- loop
    async def run(self) -> None:
        log.info("sender started")
        while not self._stopping.is_set():
            try:
                worked = await self.tick(wait=False)
            except StoreUnavailable as err:
                if not self._store_failing:  # logged on the edge, not every 0.2 s
                    self._store_failing = True
                    log.error("sender cannot read the outbox (%s); will retry", err)
                worked = 0
            except Exception:  # the one broad except of this loop
                log.exception("sender cycle failed; continuing")
                worked = 0
            await self._idle(0.02 if worked else 0.2)
        await self.drain()

    async def drain(self) -> None:
        """Wait for the deliveries in flight (they finish or fail on their own timeout)."""
        if self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    async def _idle(self, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        stopper = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        sleeper.cancel()
        stopper.cancel()

    def stop(self) -> None:
        self._stopping.set()

    async def tick(self, *, wait: bool = True) -> int:
        """Start sending what is due now (rows and card edits, per channel) and, with `wait`,
        wait for it; returns how many deliveries were started."""
        now = self._clock()
        self.last_cycle_at = now
        if not self._inflight and self._store.rows_in_state("sending"):
            await self.reconcile()  # orphaned by a failed write: outcome unknown, look it up
        counts = self._store.outbox_counts()
        self._metrics.outbox_backlog.set(counts.get("pending", 0) + counts.get("sending", 0))
        rows = [
            r
            for r in self._store.due_outbox(now=now, limit=200)
            if self._ready(r.channel_id) and ("post", r.channel_id) not in self._busy
        ]
        by_channel: dict[str, OutboxRow] = {}
        for row in rows:
            by_channel.setdefault(row.channel_id, row)
        busy = {(r.channel_id, r.job_key) for r in by_channel.values()}
        cards = (
            []
            if now < self._edits_paused_until
            else [
                c
                for c in self._store.dirty_cards(limit=200)
                if (c.channel_id, c.job_key) not in busy
                and ("edit", c.channel_id) not in self._busy
                and self._edit_ready.get(c.channel_id, 0.0) <= now
            ]
        )
        # One edit per channel per tick; edits have their own pace (chat.update is rate
        # limited apart from chat.postMessage), so a busy thread never starves its card.
        cards = list({c.channel_id: c for c in reversed(cards)}.values())
        work = [(("post", r.channel_id), self._deliver(r)) for r in by_channel.values()]
        work += [(("edit", c.channel_id), self._refresh_card(c)) for c in cards]
        started = [self._start(lane, job) for lane, job in work]
        if wait:
            await asyncio.gather(*started)
        return len(started)

    def _start(self, lane: tuple[str, str], job: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run one delivery as a task; a channel has one post and one edit in flight at most,
        so a Slack call that hangs holds up its own channel, never the others."""

        async def bounded() -> None:
            try:
                async with self._slots:
                    await job
                self._store_failing = False
            except StoreUnavailable as err:
                # e.g. Slack took the message but the database refused "sent": the row stays
                # `sending` and is looked up again once nothing is in flight (see tick).
                if not self._store_failing:
                    self._store_failing = True
                    log.error("database refused the sender's write (%s); will retry", err)
            except Exception:  # the one broad except of a delivery
                log.exception("delivery to %s failed unexpectedly", lane[1])
            finally:
                self._busy.discard(lane)

        self._busy.add(lane)
        task = asyncio.create_task(bounded())
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return task

    async def flush(self, *, within: float = 10.0) -> None:
        """Send what is due until nothing due is left or `within` seconds pass (shutdown)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await self.tick():
                continue
            due = self._store.due_outbox(now=self._clock(), limit=1)
            if not due and not self._store.dirty_cards(limit=1):
                return
            await asyncio.sleep(0.1)  # a channel is paced; wait for its turn

    def _ready(self, channel: str) -> bool:
        return self._channel_ready.get(channel, 0.0) <= self._clock()

    def _paced(self, channel: str, *, extra: float = 0.0) -> None:
        self._channel_ready[channel] = self._clock() + max(self._config.pace, extra)

    # ----------------------------------------------------------------- one row
    async def _deliver(self, row: OutboxRow) -> None:
        if row.attempts and not (row.last_error or "").startswith(NOT_POSTED):
            try:
                if await self._already_posted(row):
                    return
            except Outcome as outcome:
                if outcome.retry_after is not None or outcome.posted_unknown:
                    # could not look right now: still unknown, look again next time
                    self._failed(row, outcome, posted_unknown=True)
                    return
                # Slack refused the lookup itself (e.g. missing_scope, thread_not_found):
                # looking again cannot help, so post rather than block the channel forever.
                log.warning(
                    "cannot check whether outbox row %s reached Slack (%s); posting it",
                    row.id,
                    outcome.error,
                )
        try:
            self._store.mark_sending(row.id)
            ts = await self._post_row(row)
        except Outcome as outcome:
            self._failed(row, outcome, posted_unknown=outcome.posted_unknown)
            return
        except ValueError as err:  # bad payload or event (pydantic's errors are ValueErrors)
            # Raised while rendering, before this row's message went out: left in `sending`,
            # the row would block its channel for good. It can never be sent: drop it.
            log.error("outbox row %s cannot be rendered, dropping it: %s", row.id, err)
            self._store.mark_dead(row.id, error=f"unrenderable: {err}"[:500])
            return
        self._store.mark_sent(row.id, ts=ts)
        self._metrics.messages_sent.labels(kind=row.kind).inc()

    async def _post_row(self, row: OutboxRow) -> str:
        snapshot = self._snapshot(row.job_key)
        card = self._posted_card(row.channel_id, row.job_key)
        if card is None:
            card = await self._post_card(row, snapshot)
            if row.kind == EventKind.WATCH_STARTED.value:
                return card.ts
        elif row.kind == EventKind.WATCH_STARTED.value:
            self._store.mark_card_dirty(channel_id=row.channel_id, job_key=row.job_key)
            return card.ts
        payload = json.loads(row.payload)
        events = [Event.model_validate(e) for e in payload.get("events", [])]
        if payload.get("snapshot"):  # the job as it was when these events happened
            snapshot = Snapshot.model_validate(payload["snapshot"])
        message = render_notification(
            events,
            snapshot=snapshot or Snapshot(job_key=row.job_key, status="UNKNOWN"),
            mention=payload.get("mention"),
        )
        broadcast = any(
            e.kind == EventKind.JOB_STATUS
            and e.new_status is not None
            and is_terminal(e.new_status)
            for e in events
        )
        try:
            answer = await self._slack.call(
                "chat.postMessage",
                channel=row.channel_id,
                thread_ts=card.ts,
                reply_broadcast=broadcast,
                text=message.text,
                blocks=message.blocks,
                metadata=metadata(NOTE_EVENT, row),
                unfurl_links=False,
                unfurl_media=False,
            )
        except Outcome as outcome:
            if outcome.error == "thread_not_found":  # somebody deleted the card
                self._store.forget_card(channel_id=row.channel_id, job_key=row.job_key)
                raise Outcome("card deleted; posting a new one", retry_after=0.0) from None
            raise
        self.posts += 1
        self._paced(row.channel_id)
        self._store.mark_card_dirty(channel_id=row.channel_id, job_key=row.job_key)
        return str(answer["ts"])

    def _posted_card(self, channel: str, job_key: str) -> PostedCard | None:
        card = self._store.get_card(channel_id=channel, job_key=job_key)
        if card is None or card.ts is None:
            return None
        return PostedCard(ts=card.ts, version=card.card_version)

    async def _post_card(self, row: OutboxRow, snapshot: Snapshot | None) -> PostedCard:
        message = self._card_message(row.channel_id, row.job_key, snapshot)
        answer = await self._slack.call(
            "chat.postMessage",
            channel=row.channel_id,
            text=message.text,
            blocks=message.blocks,
            metadata=metadata(CARD_EVENT, row),
            unfurl_links=False,
            unfurl_media=False,
        )
        self.posts += 1
        self._paced(row.channel_id)
        ts = str(answer["ts"])
        self._store.save_card(channel_id=row.channel_id, job_key=row.job_key, ts=ts)
        return PostedCard(ts=ts, version=0)

    async def _refresh_card(self, card: Card) -> None:
        if card.ts is None or self._disabled(card.channel_id, card.job_key):
            # Nothing to edit, or nowhere to edit it: left dirty, the card would be retried
            # on every tick (a hot loop against a channel Slack has refused for good).
            self._store.mark_card_clean(
                channel_id=card.channel_id, job_key=card.job_key, card_version=card.card_version
            )
            return
        message = self._card_message(card.channel_id, card.job_key, self._snapshot(card.job_key))
        try:
            await self._slack.call(
                "chat.update",
                channel=card.channel_id,
                ts=card.ts,
                text=message.text,
                blocks=message.blocks,
            )
        except Outcome as outcome:
            if outcome.error == "message_not_found":
                log.warning(
                    "card of %s in %s was deleted; leaving it", card.job_key, card.channel_id
                )
                self._store.mark_card_clean(
                    channel_id=card.channel_id, job_key=card.job_key, card_version=card.card_version
                )
            elif outcome.permanent:
                self._disable(card.channel_id, outcome.error)
                self._store.mark_card_clean(
                    channel_id=card.channel_id, job_key=card.job_key, card_version=card.card_version
                )
            elif outcome.retry_after is not None:  # chat.update is limited app-wide
                self._edits_paused_until = self._clock() + outcome.retry_after
            else:
                self._edit_ready[card.channel_id] = self._clock() + 5.0
            return
        self.edits += 1
        self._metrics.messages_sent.labels(kind="card_update").inc()
        self._edit_ready[card.channel_id] = self._clock() + self._config.pace
        self._store.mark_card_clean(
            channel_id=card.channel_id, job_key=card.job_key, card_version=card.card_version
        )

    def _disabled(self, channel: str, job_key: str) -> bool:
        sub = self._store.get_subscription(channel_id=channel, job_key=job_key)
        return sub is not None and sub.disabled_reason is not None

    def _card_message(self, channel: str, job_key: str, snapshot: Snapshot | None) -> Message:
        if snapshot is None:
            snapshot = Snapshot(job_key=job_key, status="UNKNOWN")
        record = self._store.get_job(job_key)
        sub = self._store.get_subscription(channel_id=channel, job_key=job_key)
        now = self._clock()
        history: dict[str, list[float]] = {}
        for point in self._store.history(job_key):
            history.setdefault(point.algorithm, []).append(point.value)
        return render_card(
            snapshot,
            now=now,
            last_improvement_at=record.last_improvement_at if record else None,
            history=history or None,
            muted_until=sub.muted_until if sub else None,
        )

    def _snapshot(self, job_key: str) -> Snapshot | None:
        record = self._store.get_job(job_key)
        return Snapshot.model_validate_json(record.snapshot_json) if record else None

    # ----------------------------------------------------------------- failures
    def _failed(self, row: OutboxRow, outcome: Outcome, *, posted_unknown: bool) -> None:
        if outcome.permanent:
            self._disable(row.channel_id, outcome.error)
            return
        attempts = row.attempts + 1
        transient = outcome.retry_after is not None or outcome.posted_unknown
        if not transient and attempts >= self._config.max_attempts:
            # Slack answered, and refused this message (e.g. invalid_blocks): retrying the
            # same body cannot help. Transient trouble (429, 5xx, timeouts) retries forever.
            log.error(
                "giving up on outbox row %s for %s after %d attempts: %s",
                row.id,
                row.channel_id,
                attempts,
                outcome.error,
            )
            self._store.mark_dead(row.id, error=outcome.error)
            return
        delay = outcome.retry_after
        if delay is None:
            delay = self._rng.uniform(
                0, min(self._config.backoff_max, self._config.backoff_base * 2**attempts)
            )
        if outcome.timed_out:
            # Slack may still be working on the call we gave up on: give it one more client
            # timeout to land before we look for it, or the lookup misses it and we post twice.
            delay = max(delay, self._slack.timeout)
        self._paced(row.channel_id, extra=delay)
        prefix = "" if posted_unknown else NOT_POSTED
        self._store.mark_retry(
            row.id, next_attempt_at=self._clock() + delay, error=prefix + outcome.error
        )

    def _disable(self, channel: str, error: str) -> None:
        reason = disable_reason(error)
        count = self._store.disable_channel(channel_id=channel, reason=reason)
        dead = self._store.dead_channel_rows(channel_id=channel, error=error)
        log.warning(
            "Slack said %s for channel %s: disabled %d subscription(s), dropped %d "
            "queued message(s)",
            error,
            channel,
            count,
            dead,
        )

    # ----------------------------------------------------------------- reconciliation
    async def reconcile(self) -> int:
        """After a crash: every row left in `sending` is looked up before anything else."""
        rows = self._store.rows_in_state("sending")
        for row in rows:
            self._store.mark_retry(
                row.id, next_attempt_at=self._clock(), error="interrupted: outcome unknown"
            )
        if rows:
            log.info("reconciling %d message(s) interrupted by a restart", len(rows))
        return len(rows)

    async def _already_posted(self, row: OutboxRow) -> bool:
        """Look the row up in Slack; True (and marked sent) if it is there."""
        card = self._posted_card(row.channel_id, row.job_key)
        if card is None:
            found = await self._slack.find_message(
                row, CARD_EVENT, "conversations.history", channel=row.channel_id
            )
            if found is None:
                return False
            self._store.save_card(channel_id=row.channel_id, job_key=row.job_key, ts=found)
            # drawn when first posted: the job may have moved since
            self._store.mark_card_dirty(channel_id=row.channel_id, job_key=row.job_key)
            card = PostedCard(ts=found, version=0)
            if row.kind == EventKind.WATCH_STARTED.value:
                self._store.mark_sent(row.id, ts=found)
                return True
        elif row.kind == EventKind.WATCH_STARTED.value:
            self._store.mark_sent(row.id, ts=card.ts)
            return True
        found = await self._slack.find_message(
            row, NOTE_EVENT, "conversations.replies", channel=row.channel_id, ts=card.ts
        )
        if found is None:
            return False
        log.info("outbox row %s was already in Slack (ts %s); not posting it again", row.id, found)
        self._store.mark_sent(row.id, ts=found)
        return True


__all__ = ["Sender", "SenderConfig"]
