"""The sender: the only code that posts to Slack.

Reads the outbox in order, per channel; the first row of a (channel, job) posts the job card,
later rows are replies in the card's thread (terminal ones also broadcast to the channel),
and every change marks the card dirty so it is edited in place (several edits due at once
become one `chat.update`).

Each reply is drawn from the row's typed `Notification` (`bot.core.notification`). Card
edits live in `bot.slack.live_cards`; the exactly-once lookup of a row whose last attempt
had an unknown outcome in `bot.slack.reconcile`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.core.priority import Priority
from bot.metrics import Metrics
from bot.slack.api import SlackCaller, SlackIdentity
from bot.slack.budget import Budget, BudgetConfig
from bot.slack.delivery import Delivery, SenderConfig, disable_channel
from bot.slack.live_cards import LiveCards
from bot.slack.reconcile import reconciling, requeue, requeue_interrupted
from store import AsyncStore, Card, OutboxRow, Store, StoreUnavailable

log = logging.getLogger(__name__)

Queue = tuple[dict[int, int], float | None]  # rows per priority, the oldest alert's time
Pair = tuple[str, str]  # (channel, job)


class Sender:
    def __init__(
        self,
        store: AsyncStore,
        client: AsyncWebClient,
        *,
        metrics: Metrics,
        config: SenderConfig | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        identity: SlackIdentity | None = None,
        budget: BudgetConfig | None = None,
        acting: bool = True,
    ) -> None:
        """`identity`: the bot's ids from `auth.test` (asked on the first lookup if None);
        lookups adopt only messages it posted. `budget`: calls a minute per workspace-wide
        method (`bot.slack.budget`), one bucket each for every channel's task. `acting`:
        ACTIONS is not `off`, so cards offer Cancel and misses Retrain."""
        config = config or SenderConfig()
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self.budget = Budget(budget, clock=clock, sleep=sleep)  # the workspace's, shared
        slack = SlackCaller(client, metrics=metrics, identity=identity, budget=self.budget)
        self._cards = LiveCards(
            store,
            slack,
            metrics=metrics,
            pace=config.pace,
            clock=clock,
            disable=partial(disable_channel, store),
            acting=acting,
        )
        self._rows = Delivery(
            store,
            slack,
            self._cards,
            metrics=metrics,
            config=config,
            clock=clock,
            rng=rng or random.Random(),
        )
        self._busy: set[tuple[str, str]] = set()  # ("post" | "edit", channel) in flight
        self._store_failing = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(config.concurrency)
        self._stopping = asyncio.Event()
        self.last_cycle_at: float | None = None
        # The outbox's rows per state as of the last tick: /healthz and /metrics read this
        # rather than waiting on the database.
        self.outbox_counts: dict[str, int] = {}
        self.oldest_alert_at: float | None = None  # when the oldest queued alert was written

    @property
    def posts(self) -> int:
        """Messages posted (cards and thread replies)."""
        return self._rows.posts

    @property
    def edits(self) -> int:
        """Card edits made (`chat.update` calls that succeeded)."""
        return self._cards.edits

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
        look_up = not self._inflight

        settle_for = self._rows.settle

        def read(
            store: Store,
        ) -> tuple[list[float], dict[str, int], Queue, list[OutboxRow], list[Card], set[Pair]]:
            # What a tick needs, in one turn of the store's thread. With nothing in flight,
            # a row left `sending` was orphaned by a failed write: its outcome is unknown,
            # so it is due again, to be looked up first (once its call has settled).
            return (
                requeue(store, now=now, settle_for=settle_for) if look_up else [],
                store.outbox_counts(),
                store.queued_by_priority(),
                store.due_outbox(now=now, limit=200) + store.rows_to_verify(now=now, limit=50),
                store.dirty_cards(limit=200),
                store.queued_jobs(),
            )

        requeued, counts, queue, due, dirty, queued = await self._store.run(read)
        reconciling(requeued)
        self.outbox_counts = counts
        self._metrics.outbox_backlog.set(counts.get("pending", 0) + counts.get("sending", 0))
        self._measure_queue(queue, now=now)
        rows = [
            r
            for r in due
            if self._rows.ready(r.channel_id) and ("post", r.channel_id) not in self._busy
        ]
        by_channel: dict[str, OutboxRow] = {}
        for row in rows:  # a row to post comes before a sent one to verify
            by_channel.setdefault(row.channel_id, row)
        cards = self._cards.due(
            now,
            dirty,
            posting={(r.channel_id, r.job_key) for r in by_channel.values() if r.state != "sent"},
            editing={channel for lane, channel in self._busy if lane == "edit"},
            queued=queued,
        )
        work = [
            (
                ("post", r.channel_id),
                self._rows.verify(r) if r.state == "sent" else self._rows.deliver(r),
            )
            for r in by_channel.values()
        ]
        work += [(("edit", c.channel_id), self._cards.refresh(c)) for c in cards]
        started = [self._start(lane, job) for lane, job in work]
        if wait:
            await asyncio.gather(*started)
        return len(started)

    def _measure_queue(self, queue: Queue, *, now: float) -> None:
        """`mathfi_outbox_queued{priority}` and the age of the oldest queued alert."""
        per_priority, self.oldest_alert_at = queue
        for priority in Priority:
            self._metrics.outbox_queued.labels(priority=priority.label).set(
                per_priority.get(priority, 0)
            )
        self._metrics.oldest_alert_age.set(self.alert_wait(now) or 0.0)

    def alert_wait(self, now: float) -> float | None:
        """Seconds the oldest queued alert has waited (None: none waits)."""
        return None if self.oldest_alert_at is None else max(0.0, now - self.oldest_alert_at)

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
        deadline = self._clock() + within
        while self._clock() < deadline:
            if await self.tick():
                continue
            if not await self._store.run(partial(_work_left, now=self._clock())):
                return
            await self._sleep(0.1)  # a channel is paced; wait for its turn

    async def reconcile(self) -> int:
        """After a crash: every row left in `sending` is looked up before anything else."""
        return await requeue_interrupted(
            self._store, now=self._clock(), settle_for=self._rows.settle
        )


def _work_left(store: Store, *, now: float) -> bool:
    """A row is due or a card is dirty."""
    return bool(store.due_outbox(now=now, limit=1) or store.dirty_cards(limit=1))


__all__ = ["BudgetConfig", "Sender", "SenderConfig"]
