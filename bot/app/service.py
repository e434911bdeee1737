"""The service `mathfi-bot run` runs: its life cycle (start order, background loops, stop).

`Service.start` opens the store and the clients, identifies the bot, builds the poller,
the sender and the other loops and the bolt app, and starts the loops; Socket Mode (bolt's
aiohttp adapter) replaces `/slack/events` when SLACK_APP_TOKEN is set. `serve` takes the
instance lock and the port first. The store is an `AsyncStore` (its own thread): nothing
here waits on SQLite on the event loop. The HTTP routes are `bot.app.routes`, the bolt
app and the bot's Slack ids `bot.app.bolt`, the start-up guards `bot.app.startup`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.app.bolt import SlackFront, action_tools, build_bolt, socket_mode_handler
from bot.app.orphans import expire_orphaned_actions
from bot.app.replay import ReplayGuard
from bot.app.routes import Listeners, Routes
from bot.app.startup import InstanceLock, InstanceLocked, check_writable
from bot.config import Settings
from bot.core.forecast import ForecastRules
from bot.core.forecast_state import rules_for
from bot.engine.digest import DigestConfig, DigestLoop
from bot.engine.oncall import Oncall, OncallConfig
from bot.engine.poller import Poller, PollerConfig
from bot.engine.retention import Retention, RetentionConfig
from bot.mathfi.client import MathFiClient
from bot.metrics import Metrics
from bot.slack.api import SlackCaller
from bot.slack.commands import ActionTools
from bot.slack.home import HomePublisher
from bot.slack.sender import BudgetConfig, Sender, SenderConfig
from store import AsyncStore

log = logging.getLogger(__name__)


class Service:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        poller_config: PollerConfig | None = None,
        sender_config: SenderConfig | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = Metrics()
        self._poller_config = poller_config or PollerConfig(
            interval=settings.poll_interval,
            concurrency=settings.poll_concurrency,
            unreachable_after=settings.unreachable_after,
            forecast=forecast_rules(settings),
            warning_cooldown=settings.warning_cooldown,
        )
        self._sender_config = sender_config or SenderConfig(pace=1.0 / settings.slack_post_rate)
        self.accepting = False
        self._tasks: list[asyncio.Task[None]] = []
        self._socket: AsyncSocketModeHandler | None = None
        self.routes = Routes(self)
        self.store: AsyncStore
        self.mathfi: MathFiClient
        self.slack: AsyncWebClient
        self.front: SlackFront  # the bot's own ids (auth.test) and its same-team guard
        self.replays: ReplayGuard
        self.poller: Poller
        self.sender: Sender
        self.acting: ActionTools
        self.bolt: AsyncApp
        self._session: aiohttp.ClientSession

    # ----------------------------------------------------------------- lifecycle
    async def start(self, *, run_loops: bool = True) -> None:
        """Open everything; `run_loops=False` leaves the poller and sender to be ticked by tests."""
        s = self.settings
        self.store = await AsyncStore.open(s.database_path, clock=self.clock)
        check_writable(s.database_path)  # a read-only file refuses the start, not /healthz
        await expire_orphaned_actions(
            self.store, self.metrics, now=self.clock(), mathfi_timeout=s.mathfi_timeout
        )
        # A backstop: each client also sets its own, shorter, per-request timeout.
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self.mathfi = MathFiClient.from_settings(s, session=self._session)
        self.slack = AsyncWebClient(
            token=s.slack_bot_token.get_secret_value(),
            base_url=s.slack_api_url,
            session=self._session,
            timeout=s.slack_timeout,
            retry_handlers=[],
        )
        self.front = SlackFront(self.slack)
        await self.front.identify()
        self.poller = Poller(
            self.store,
            self.mathfi,
            config=self._poller_config,
            metrics=self.metrics,
            clock=self.clock,
        )
        self.sender = Sender(
            self.store,
            self.slack,
            metrics=self.metrics,
            config=self._sender_config,
            clock=self.clock,
            identity=self.front.identity,
            budget=BudgetConfig(
                update_per_minute=s.slack_update_rate, history_per_minute=s.slack_history_rate
            ),
            acting=s.actions_policy.mode != "off",  # buttons that could only refuse: none
        )
        self.home = HomePublisher(
            self.store,
            SlackCaller(
                self.slack,
                metrics=self.metrics,
                identity=self.front.identity,
                budget=self.sender.budget,
            ),
            command=s.slack_command,
            clock=self.clock,
        )
        self.retention = Retention(
            self.store,
            config=RetentionConfig(
                outbox_retention=s.outbox_retention, job_retention=s.job_retention
            ),
            metrics=self.metrics,
        )
        self.digests = DigestLoop(self.store, config=DigestConfig(), clock=self.clock)
        self.oncall = Oncall(
            self.store,
            config=OncallConfig(
                repage=s.oncall_repage,
                max_pages=s.oncall_repage_max,
                every=min(5.0, s.oncall_repage or 5.0),  # no later than a page is due
            ),
            metrics=self.metrics,
            clock=self.clock,
        )
        self.acting = action_tools(
            s, self.slack, store=self.store, mathfi=self.mathfi, clock=self.clock
        )
        self.bolt = build_bolt(
            self.front,
            s,
            store=self.store,
            mathfi=self.mathfi,
            metrics=self.metrics,
            forecast=self._poller_config.forecast,
            watch=self.poller.watch,
            home=self.home,
            acting=self.acting,
            clock=self.clock,
        )
        # Slack's timestamps are wall-clock time, whatever clock the loops run on.
        self.replays = ReplayGuard(s.slack_signing_secret.get_secret_value(), clock=time.time)
        self.metrics.active_subscriptions.set(await self.store.count_all_active())
        await self.sender.reconcile()
        if run_loops:
            self._tasks = [
                asyncio.create_task(self.poller.run(), name="poller"),
                asyncio.create_task(self.sender.run(), name="sender"),
                asyncio.create_task(self.retention.run(), name="retention"),
                asyncio.create_task(self.digests.run(), name="digests"),
                asyncio.create_task(self.oncall.run(), name="oncall"),
                asyncio.create_task(self.home.run(), name="home"),
            ]
        if s.slack_app_token is not None:
            await self._start_socket_mode(s.slack_app_token.get_secret_value())
        self.accepting = True

    async def _start_socket_mode(self, app_token: str) -> None:
        """Checked first (`socket_mode_handler`), then connected in the background so that
        /healthz and /metrics answer while Slack is slow."""
        self._socket = await socket_mode_handler(self.bolt, app_token, self.slack)
        self._tasks.append(
            asyncio.create_task(self._socket.connect_async(), name="socket-mode")  # type: ignore[no-untyped-call]
        )
        log.info("connecting to Slack in Socket Mode")

    async def stop(self, *, grace: float = 10.0) -> None:
        """Stop accepting commands, finish the poll in flight, send what is due, close."""
        self.accepting = False
        deadline = time.monotonic() + grace
        if self._socket is not None:
            # Never raises: slack_sdk's SocketModeClient.close and aiohttp's WebSocket close
            # under it catch every error of a broken connection themselves.
            await self._socket.close_async()  # type: ignore[no-untyped-call]
        started = hasattr(self, "sender")  # False when start() failed early
        if started:
            self.poller.stop()
            self.sender.stop()
            self.retention.stop()
            self.digests.stop()
            self.oncall.stop()
            self.home.stop()
        await asyncio.gather(
            _within(
                asyncio.gather(*self._tasks, return_exceptions=True),
                max(deadline - time.monotonic() - 4.0, 1.0),
            ),
            self._settle_clicks(deadline),
        )
        if started and self._tasks:  # loops ran: send what is due while Slack answers
            await _within(self.sender.flush(within=3.0), max(deadline - time.monotonic() - 1, 0.5))
        for task in self._tasks:
            task.cancel()
        if hasattr(self, "mathfi"):
            await self.mathfi.close()
        if hasattr(self, "_session"):
            await self._session.close()
        self.routes.close()
        if hasattr(self, "store"):
            await self.store.close()
        log.info("stopped")

    async def _settle_clicks(self, deadline: float) -> None:
        """The clicks in progress finish, or are told 'outcome unknown', while the store is
        open: none is left `requested` (which would hold its job's cancel or retrain)."""
        if hasattr(self, "acting"):
            await self.acting.settle(within=max(deadline - time.monotonic() - 6.0, 0.5))

    def web_app(self) -> web.Application:
        """The main listener: POST /slack/events, GET /healthz, GET /metrics (`bot.app.routes`)."""
        return self.routes.web_app()

    def metrics_app(self) -> web.Application:
        """The METRICS_PORT listener: GET /metrics and nothing else."""
        return self.routes.metrics_app()


def forecast_rules(settings: Settings) -> ForecastRules:
    """MATHFI_STALL_WINDOW, MATHFI_STALL_DELTA and MATHFI_TIME_BUDGET, as the forecaster's rules."""
    return rules_for(
        stall_window=settings.mathfi_stall_window,
        stall_delta=settings.mathfi_stall_delta,
        time_budget=settings.mathfi_time_budget,
    )


async def _within(awaitable: Awaitable[Any], seconds: float) -> None:
    try:
        await asyncio.wait_for(awaitable, timeout=seconds)
    except TimeoutError:
        log.warning("shutdown step took longer than %.1f s; moving on", seconds)


async def serve(settings: Settings, *, stop: asyncio.Event) -> None:
    """Run until `stop` is set: the HTTP server plus the loops.

    The order is the point: first the database's instance lock (or, with STANDBY, wait for
    it), then the port, and only then the store, the crash reconciliation and the loops,
    so a second instance or a taken port exits before it has polled or posted anything.
    """
    lock = InstanceLock(settings.database_path)
    if not lock.try_acquire():
        if not settings.standby:
            raise InstanceLocked(settings.database_path, lock.holder())
        log.info(
            "standby: another mathfi-bot holds %s (pid %s); taking over when it stops",
            settings.database_path,
            lock.holder(),
        )
        if not await lock.wait_for(stop):
            log.info("stopped while standing by")
            return
        log.info("the other mathfi-bot stopped; taking over %s", settings.database_path)
    service = Service(settings)
    listeners = Listeners(service.routes, settings)
    try:
        await listeners.open()
        await service.start()
        gc.freeze()  # start-up's objects leave the collector's scans (docs/benchmarks.md)
        await stop.wait()
        log.info("shutting down")
    finally:
        try:
            await service.stop(grace=9.0)
            await listeners.close()
        finally:
            lock.release()  # last: the next instance starts on a quiet database
