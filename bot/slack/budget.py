"""One budget per Slack method for the whole workspace, shared by every channel's task.

Slack limits most Web API methods per app and workspace by tier (Tier 3: 50+ a minute;
`chat.update`, `chat.delete`, `conversations.history`, `conversations.replies`), and
answers 429 with `Retry-After` past them. `Budget` holds a `Bucket` per such method;
`SlackCaller.call` (the one place a method is called) takes a token before each call, and
a 429 pauses the method's bucket for every caller (`pause`). `chat.postMessage` has no
bucket here: its limit is per channel (about 1 a second), which the sender paces itself.

A bucket is GCRA ("virtual scheduling"): each `acquire` reserves the next free slot and
sleeps until it, so waiters are served in order and never spin; `available` tells how
many calls could go now without waiting (the sender starts no more card edits than that,
so an edit never holds a delivery slot while it waits, and posts are not held up).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BudgetConfig:
    """Calls a minute per method (Slack's published tiers as defaults)."""

    update_per_minute: float = 50.0  # chat.update, Tier 3
    history_per_minute: float = 50.0  # conversations.history / .replies, Tier 3
    delete_per_minute: float = 50.0  # chat.delete, Tier 3
    lookup_burst: int = 10  # lookups after a restart may go in a short burst


class Bucket:
    """`rate` calls a second, `burst` at once at most, paused by `pause`."""

    def __init__(
        self,
        rate: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a bucket needs rate > 0 and burst >= 1")
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._tat = 0.0  # the theoretical arrival time of the next call
        self._sent: deque[float] = deque(maxlen=burst)  # when the last calls went
        self.paused_until = 0.0
        self.granted = 0

    def available(self) -> int:
        """Calls that may start now without waiting."""
        now = self._clock()
        if now < self.paused_until:
            return 0
        return max(
            0, math.floor((now + self._tolerance - max(self._tat, now)) / self._interval) + 1
        )

    def _reserve(self) -> float:
        """Take the next free slot; the seconds until it."""
        now = self._clock()
        at = max(now, self._tat - self._tolerance, self.paused_until)
        self._tat = max(self._tat, at) + self._interval
        return at - now

    async def acquire(self) -> None:
        """Wait for a slot. A pause that came while waiting is waited out (a few times at
        most: a clock that does not move must not hold a caller for ever)."""
        for _ in range(3):
            wait = self._reserve()
            if wait > 0:
                await self._sleep(wait)
            if self._clock() >= self.paused_until:
                break
        self.granted += 1

    async def space(self) -> None:
        """The granted call goes now: first wait, if need be, until `burst` calls are spread
        over `burst` intervals. A slot is granted before the work that precedes the call
        (a card's render, which may wait on the database); without this, a slow render then
        a fast one would reach Slack closer together than the rate."""
        if len(self._sent) == self._sent.maxlen:
            wait = self._sent[0] + len(self._sent) * self._interval - self._clock()
            if wait > 0:
                await self._sleep(wait)
        self._sent.append(self._clock())

    def pause(self, seconds: float) -> None:
        """Slack said 429: no call before `seconds` from now, then the rate again."""
        self.paused_until = max(self.paused_until, self._clock() + seconds)
        # one call when the pause ends, then the rate: no burst right after a 429
        self._tat = max(self._tat, self.paused_until + self._tolerance)


class Budget:
    """The workspace's buckets, by method; a method without one is not limited here."""

    def __init__(
        self,
        config: BudgetConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        config = config or BudgetConfig()

        def bucket(per_minute: float, burst: int = 1) -> Bucket:
            return Bucket(per_minute / 60.0, burst=burst, clock=clock, sleep=sleep)

        lookups = bucket(config.history_per_minute, config.lookup_burst)
        self._buckets: dict[str, Bucket] = {
            "chat.update": bucket(config.update_per_minute),
            "chat.delete": bucket(config.delete_per_minute, config.lookup_burst),
            # one bucket for both: Slack counts each method apart, this is the safe side
            "conversations.history": lookups,
            "conversations.replies": lookups,
        }

    def bucket(self, method: str) -> Bucket | None:
        return self._buckets.get(method)

    def available(self, method: str) -> int | None:
        """Calls of `method` that may start now (None: not limited here)."""
        bucket = self._buckets.get(method)
        return None if bucket is None else bucket.available()

    async def acquire(self, method: str) -> None:
        bucket = self._buckets.get(method)
        if bucket is not None:
            await bucket.acquire()

    async def space(self, method: str) -> None:
        """Just before a granted call goes (`Bucket.space`)."""
        bucket = self._buckets.get(method)
        if bucket is not None:
            await bucket.space()

    def pause(self, method: str, seconds: float) -> None:
        """A 429 on `method`: every caller of it waits `seconds`."""
        bucket = self._buckets.get(method)
        if bucket is not None:
            bucket.pause(seconds)
