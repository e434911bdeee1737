"""The App Home and the DM channels of personal subscriptions (issue #15).

`HomePublisher` is the only code that calls `views.publish` and `conversations.open`. A
person's Home tab is published when they open it (`home_opened`) or press one of its
buttons (`publish_home`), and again when one of its jobs changes: the poll marks the view
stale in its own transaction (store/personal.py) and `run` re-publishes stale views at
most once a minute per person (Slack rate-limits views.publish), away from the poll. A
publish that fails leaves the view stale for the next minute (a rate limit pauses them
all); a stale view is harmless, a storm of publishes is not. Publishes are one at a time.
`run` is the engine's `PeriodicLoop` (a tick a second; a refused database skips one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.engine.loop import PeriodicLoop
from bot.errors import SlackDeliveryError, SlackFailure
from bot.slack.api import SlackCaller
from bot.slack.personal_render import render_home
from store import AsyncStore, HomeItem, HomeView, Store

log = logging.getLogger(__name__)

HOME_EVERY = 60.0  # a person's view is re-published after a job change at most this often
TICK_EVERY = 1.0


class HomePublisher(PeriodicLoop):
    def __init__(
        self,
        store: AsyncStore,
        slack: SlackCaller,
        *,
        command: str,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        every: float = HOME_EVERY,
    ) -> None:
        super().__init__(what="home publisher cycle", log=log, every=TICK_EVERY, sleep=sleep)
        self._store = store
        self._slack = slack
        self._command = command
        self._clock = clock
        self._view_every = every
        self._dms: dict[str, str] = {}  # user id -> their DM with the bot
        self._lock = asyncio.Lock()
        self._paused_until = 0.0
        self.published = 0

    # ----------------------------------------------------------------- DMs
    async def dm_channel(self, user_id: str) -> str:
        """The person's DM with the bot (conversations.open; the same id every time)."""
        found = self._dms.get(user_id)
        if found is None:
            answer = await self._slack.call("conversations.open", users=user_id)
            found = str((answer.get("channel") or {}).get("id") or "")
            if not found.startswith("D"):
                raise SlackDeliveryError("no_dm_channel", kind=SlackFailure.REFUSED)
            self._dms[user_id] = found
        return found

    # ----------------------------------------------------------------- Home tab
    async def home_opened(self, user_id: str, team_id: str | None) -> None:
        """The person opened the Home tab: keep it current from now on, and draw it now."""
        await self._store.home_opened(user_id=user_id, team_id=team_id, now=self._clock())
        await self.publish_home(user_id)

    async def publish_home(self, user_id: str) -> bool:
        """Publish the person's view now; True when Slack took it."""
        async with self._lock:
            return await self._publish(user_id)

    async def tick(self) -> int:
        """Re-publish the stale views due now; how many were published."""
        now = self._clock()
        if now < self._paused_until:
            return 0
        due = await self._store.homes_due(now=now, every=self._view_every)
        done = 0
        async with self._lock:
            for view in due:
                if self._clock() < self._paused_until:
                    break
                done += await self._publish(view.user_id)
        return done

    async def run(self) -> None:
        log.info("home publisher started")
        await super().run()

    async def _round(self) -> int:
        return await self.tick()  # a failed round leaves views stale: harmless

    async def _publish(self, user_id: str) -> bool:
        def read(store: Store) -> tuple[HomeView | None, list[HomeItem]]:
            return store.get_home_view(user_id), store.home_items(user_id)

        view, items = await self._store.run(read)  # the version first: a later change stays
        version = view.version if view is not None else 0
        now = self._clock()
        try:
            await self._slack.call(
                "views.publish",
                user_id=user_id,
                view=render_home(items, now=now, command=self._command),
            )
        except SlackDeliveryError as err:
            if err.kind is SlackFailure.RATE_LIMITED:
                self._paused_until = now + (err.retry_after or self._view_every)
            log.warning("could not publish the Home tab of %s: %s", user_id, err.error)
            # refused for good (the user is gone): dropped until their next change
            lost = err.kind in (SlackFailure.PERMANENT, SlackFailure.REFUSED)
            await self._store.home_published(user_id=user_id, version=version, clean=lost, now=now)
            return False
        await self._store.home_published(user_id=user_id, version=version, clean=True, now=now)
        self.published += 1
        return True
