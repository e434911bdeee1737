"""The service `mathfi-bot run` runs: store, clients, poller, sender, bolt app, HTTP routes.

Our aiohttp application owns `POST /slack/events`, `GET /healthz` and `GET /metrics` (or,
with METRICS_PORT, a second listener serves `/metrics` alone); the poller and the sender
are background loops started and cancelled with it. Socket Mode (bolt's aiohttp adapter)
replaces `/slack/events` when SLACK_APP_TOKEN is set. The store is an `AsyncStore` (its own
thread): nothing here waits on SQLite on the event loop, and /healthz and /metrics answer
from what the loops keep fresh plus a bounded database probe.

Longer than 300 lines: the lifecycle, the bolt wiring and the three HTTP routes share
the one `Service` object; start-up guards live in `bot.app.startup`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.app.replay import ReplayGuard
from bot.app.startup import InstanceLock, InstanceLocked, check_writable
from bot.config import Settings
from bot.core.forecast import ForecastRules
from bot.core.forecast_state import rules_for
from bot.engine.digest import DigestConfig, DigestLoop
from bot.engine.oncall import Oncall, OncallConfig
from bot.engine.poller import Poller, PollerConfig
from bot.engine.retention import Retention, RetentionConfig
from bot.errors import ConfigError
from bot.mathfi.client import MathFiClient
from bot.metrics import CONTENT_TYPE_LATEST, Metrics
from bot.slack import commands
from bot.slack.actions import ActionRunner
from bot.slack.api import SlackCaller, SlackIdentity
from bot.slack.commands import Confirmations
from bot.slack.home import HomePublisher
from bot.slack.permissions import PermissionCheck
from bot.slack.sender import BudgetConfig, Sender, SenderConfig
from store import AsyncStore

# /healthz waits this long for the database probe, then says "busy" rather than wait.
PROBE_WITHIN = 0.05
# A probe's answer is reused this long: a busy database is asked at most this often.
PROBE_EVERY = 1.0

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
        self.team_id: str | None = None
        self.identity: SlackIdentity | None = None  # the bot's own ids, from auth.test
        self.accepting = False
        self._tasks: list[asyncio.Task[None]] = []
        self._socket: AsyncSocketModeHandler | None = None
        self.store: AsyncStore
        self._probe: asyncio.Task[bool] | None = None
        self._probed: tuple[float, bool] | None = None  # (monotonic time, database ok)
        self.mathfi: MathFiClient
        self.slack: AsyncWebClient
        self.poller: Poller
        self.sender: Sender
        self.bolt: AsyncApp
        self._session: aiohttp.ClientSession

    # ----------------------------------------------------------------- lifecycle
    async def start(self, *, run_loops: bool = True) -> None:
        """Open everything; `run_loops=False` leaves the poller and sender to be ticked by tests."""
        s = self.settings
        self.store = await AsyncStore.open(s.database_path, clock=self.clock)
        check_writable(s.database_path)  # a read-only file refuses the start, not /healthz
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
        await self._identify()
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
            identity=self.identity,
            budget=BudgetConfig(
                update_per_minute=s.slack_update_rate, history_per_minute=s.slack_history_rate
            ),
        )
        self.home = HomePublisher(
            self.store,
            SlackCaller(
                self.slack, metrics=self.metrics, identity=self.identity, budget=self.sender.budget
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
        self.bolt = self._build_bolt()
        # Slack's timestamps are wall-clock time, whatever clock the loops run on.
        self._replays = ReplayGuard(s.slack_signing_secret.get_secret_value(), clock=time.time)
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
        """One `apps.connections.open` first: a refused token is a configuration error (the
        SDK would retry it forever); then connect in the background so that /healthz and
        /metrics answer while Slack is slow."""
        problem = await socket_mode_problem(app_token, self.slack)
        if problem is not None:
            raise ConfigError(f"SLACK_APP_TOKEN: {problem}; run `mathfi-bot check`")
        self._socket = AsyncSocketModeHandler(self.bolt, app_token=app_token, web_client=self.slack)
        self._tasks.append(
            asyncio.create_task(self._socket.connect_async(), name="socket-mode")  # type: ignore[no-untyped-call]
        )
        log.info("connecting to Slack in Socket Mode")

    async def _identify(self) -> None:
        """auth.test: which team the bot belongs to (commands from others are refused), and
        its own user and bot ids (reconciliation adopts only messages they posted)."""
        try:
            answer = await self.slack.auth_test()
        except SlackApiError as err:
            error = err.response.get("error") if err.response.status_code < 500 else None
            if error in {"invalid_auth", "not_authed", "token_revoked", "account_inactive"}:
                raise ConfigError(
                    f"SLACK_BOT_TOKEN was refused by Slack ({error}); run `mathfi-bot check`"
                ) from None
            log.warning(
                "Slack auth.test failed (%s); will try again on the first command",
                err.response.get("error"),
            )
            return
        except (aiohttp.ClientError, TimeoutError) as err:
            log.warning("Slack unreachable at start (%s); will try again later", err)
            return
        self.team_id = str(answer.get("team_id") or "") or None
        self.identity = SlackIdentity.from_auth_test(answer)
        log.info(
            "Slack: bot %s in team %s (%s)", answer.get("user"), answer.get("team"), self.team_id
        )

    async def stop(self, *, grace: float = 10.0) -> None:
        """Stop accepting commands, finish the poll in flight, send what is due, close."""
        self.accepting = False
        deadline = time.monotonic() + grace
        if self._socket is not None:
            await _quietly(self._socket.close_async())  # type: ignore[no-untyped-call]
        started = hasattr(self, "sender")  # False when start() failed early
        if started:
            self.poller.stop()
            self.sender.stop()
            self.retention.stop()
            self.digests.stop()
            self.oncall.stop()
            self.home.stop()
            await _within(
                asyncio.gather(*self._tasks, return_exceptions=True),
                max(deadline - time.monotonic() - 4.0, 1.0),
            )
            if self._tasks:  # loops ran: send what is due while Slack answers
                await _within(
                    self.sender.flush(within=3.0), max(deadline - time.monotonic() - 1, 0.5)
                )
        for task in self._tasks:
            task.cancel()
        if hasattr(self, "mathfi"):
            await self.mathfi.close()
        if hasattr(self, "_session"):
            await self._session.close()
        if self._probe is not None:
            self._probe.cancel()
        if hasattr(self, "store"):
            await self.store.close()
        log.info("stopped")

    # ----------------------------------------------------------------- bolt
    def _build_bolt(self) -> AsyncApp:
        s = self.settings
        with _hidden_slack_environment():
            app = AsyncApp(
                client=self.slack,
                signing_secret=s.slack_signing_secret.get_secret_value(),
                process_before_response=False,
                logger=logging.getLogger("slack_bolt"),
            )
        app.middleware(self._same_team_only)
        app.error(self._on_bolt_error)
        # one ACTIONS check (and one cache of Slack's answers) for every button that acts
        permissions = PermissionCheck(s.actions_policy, self.slack)
        commands.register(
            app,
            commands.CommandContext(
                store=self.store,
                mathfi=self.mathfi,
                metrics=self.metrics,
                command=s.slack_command,
                subscription_limit=s.subscription_limit,
                max_subscriptions=s.max_subscriptions,
                allow_broadcast_mentions=s.allow_broadcast_mentions,
                poll_interval=s.poll_interval,
                forecast=self._poller_config.forecast,
                watch=self.poller.watch,
                permissions=permissions,
                clock=self.clock,
                acting=self._action_tools(permissions),
                personal=self.home,
            ),
        )
        return app

    def _action_tools(self, permissions: PermissionCheck) -> commands.ActionTools:
        """Acting from Slack: who may act (ACTIONS), the runner, the confirmations shown."""
        return commands.ActionTools(
            runner=ActionRunner(self.store, self.mathfi, permissions),
            mathfi=self.mathfi,
            permissions=permissions,
            confirmations=Confirmations(clock=self.clock),
        )

    async def _same_team_only(
        self,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse:
        if self.team_id is None:
            await self._identify()
        team = req.context.team_id
        if self.team_id and team and team != self.team_id:
            log.warning(
                "refused a request from Slack team %s (this bot serves %s)", team, self.team_id
            )
            body = {
                "response_type": "ephemeral",
                "text": "This MathFi bot serves another Slack workspace.",
            }
            return BoltResponse(
                status=200, body=json.dumps(body), headers={"content-type": "application/json"}
            )
        return await next()

    async def _on_bolt_error(self, error: Exception, body: dict[str, Any]) -> BoltResponse:
        ref = f"{int(time.time()) % 100000:05d}"
        log.error(
            "unhandled error in a Slack listener (reference %s): %s",
            ref,
            type(error).__name__,
            exc_info=error,
        )
        return BoltResponse(
            status=200,
            body=json.dumps(
                {
                    "response_type": "ephemeral",
                    "text": f"Something went wrong on our side (reference {ref}).",
                }
            ),
            headers={"content-type": "application/json"},
        )

    # ----------------------------------------------------------------- HTTP
    def web_app(self) -> web.Application:
        """The main listener's routes; /metrics only when METRICS_PORT does not move it to
        a listener of its own (`metrics_app`)."""
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/slack/events", self._slack_events)
        app.router.add_get("/healthz", self._healthz)
        if self.settings.metrics_port is None:
            app.router.add_get("/metrics", self._metrics)
        return app

    def metrics_app(self) -> web.Application:
        """The METRICS_PORT listener: GET /metrics and nothing else."""
        app = web.Application(client_max_size=1024)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _slack_events(self, request: web.Request) -> web.Response:
        if not self.accepting:
            state = "starting" if not hasattr(self, "bolt") else "shutting down"
            return web.json_response({"error": state}, status=503)
        if self._replays.is_replay(await request.read(), request.headers):
            log.warning("refused a replayed Slack request (same timestamp and signature)")
            return web.json_response({"error": "replayed request"}, status=401)
        bolt_response = await self.bolt.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    async def health(self) -> tuple[int, dict[str, Any]]:
        """The loops' ages and the outbox counts as the sender last read them, plus a
        database probe waited for at most PROBE_WITHIN seconds ("busy" when it takes
        longer: another process holds the database, or the store's thread is behind)."""
        if not hasattr(self, "sender"):  # the port is bound before start() has run
            return 503, {"status": "starting", "accepting_commands": False}
        database = await self._database_state()
        now = self.clock()
        stale = self.settings.stale_after
        ages = {
            "poller": _age(now, self.poller.last_cycle_at),
            "sender": _age(now, self.sender.last_cycle_at),
        }
        counts = self.sender.outbox_counts
        database_ok = database == "ok"
        loops_ok = all(age is not None and age <= stale for age in ages.values())
        mathfi_ok = not self.poller.mathfi_down
        alert_wait = self.sender.alert_wait(now)
        alerts_ok = alert_wait is None or alert_wait <= self.settings.alert_max_wait
        status = "ok" if loops_ok and database_ok and mathfi_ok and alerts_ok else "degraded"
        if not loops_ok:
            status = "stale"
        body = {
            "status": status,
            "last_poll_cycle_age_seconds": ages["poller"],
            "last_send_cycle_age_seconds": ages["sender"],
            "outbox_backlog": counts.get("pending", 0) + counts.get("sending", 0),
            "outbox_dead": counts.get("dead", 0),
            "oldest_alert_age_seconds": alert_wait,
            "database": database,
            "mathfi": "ok" if mathfi_ok else "unreachable",
            "watched_jobs": self.poller.watched,
            "unacknowledged_alerts": self.oncall.unacknowledged,
            "accepting_commands": self.accepting,
        }
        return (200 if loops_ok and database_ok else 503), body

    async def _database_state(self) -> str:
        """ "ok", "unavailable" or "busy". One probe at a time (a ping on the store's
        thread); its answer is reused for PROBE_EVERY seconds, so hammering /healthz does
        not queue pings in front of the loops' work."""
        fresh = self._probed is not None and time.monotonic() - self._probed[0] < PROBE_EVERY
        if self._probed is not None and fresh:
            return "ok" if self._probed[1] else "unavailable"
        if self._probe is None:
            self._probe = asyncio.create_task(self.store.ping(), name="database-probe")
            self._probe.add_done_callback(self._probe_done)
        done, _ = await asyncio.wait({self._probe}, timeout=PROBE_WITHIN)
        if not done:
            return "busy"
        return "ok" if self._probed is not None and self._probed[1] else "unavailable"

    def _probe_done(self, probe: asyncio.Task[bool]) -> None:
        self._probe = None
        ok = not probe.cancelled() and probe.exception() is None and probe.result()
        self._probed = (time.monotonic(), ok)

    async def _healthz(self, request: web.Request) -> web.Response:
        code, body = await self.health()
        return web.json_response(body, status=code)

    async def _metrics(self, request: web.Request) -> web.Response:
        """The outbox backlog is the sender's last reading (set each tick): no database
        call here."""
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def forecast_rules(settings: Settings) -> ForecastRules:
    """MATHFI_STALL_WINDOW, MATHFI_STALL_DELTA and MATHFI_TIME_BUDGET, as the forecaster's rules."""
    return rules_for(
        stall_window=settings.mathfi_stall_window,
        stall_delta=settings.mathfi_stall_delta,
        time_budget=settings.mathfi_time_budget,
    )


async def socket_mode_problem(app_token: str, slack: AsyncWebClient) -> str | None:
    """None when Slack accepts the app-level token for Socket Mode, else what is wrong."""
    if not app_token.startswith("xapp-"):
        return "not an app-level token (xapp-…)"
    probe = AsyncWebClient(base_url=slack.base_url, session=slack.session, timeout=10)
    try:
        await probe.apps_connections_open(app_token=app_token)
    except SlackApiError as err:
        if err.response.status_code >= 500 or err.response.status_code == 429:
            return None  # Slack's trouble, not ours: the SDK keeps trying
        return f"Slack refused it ({err.response.get('error')})"
    except (aiohttp.ClientError, TimeoutError):
        return None
    return None


@contextlib.contextmanager
def _hidden_slack_environment() -> Iterator[None]:
    """bolt falls back on SLACK_BOT_TOKEN, SLACK_CLIENT_ID, ... from the environment (and
    turns OAuth on when it finds a client id). Everything it needs is passed explicitly, so
    it must not see those while the app is built."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("SLACK_")}
    for name in saved:
        del os.environ[name]
    try:
        yield
    finally:
        os.environ.update(saved)


def _age(now: float, at: float | None) -> float | None:
    return None if at is None else round(max(now - at, 0.0), 3)


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception as err:  # shutdown must go on
        log.debug("ignored during shutdown: %s", err)


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
    runner = web.AppRunner(service.web_app(), access_log=None)
    metrics_runner: web.AppRunner | None = None
    try:
        if settings.metrics_port is not None:
            # Its line does not read "listening on http://host:port ": tests and scripts
            # read the main port from that one.
            metrics_runner = web.AppRunner(service.metrics_app(), access_log=None)
            await metrics_runner.setup()
            await web.TCPSite(metrics_runner, settings.metrics_host, settings.metrics_port).start()
            log.info(
                "serving metrics on http://%s:%d/metrics (and nowhere else)",
                settings.metrics_host,
                metrics_runner.addresses[0][1],
            )
        await runner.setup()
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        await site.start()
        routes = "POST /slack/events, GET /healthz"
        if settings.metrics_port is None:
            routes += ", GET /metrics"
        log.info(
            "listening on http://%s:%d (%s)",
            settings.http_host,
            runner.addresses[0][1],  # the bound port, also when HTTP_PORT is 0
            routes,
        )
        await service.start()
        gc.freeze()  # start-up's objects leave the collector's scans (docs/benchmarks.md)
        await stop.wait()
        log.info("shutting down")
    finally:
        try:
            await service.stop(grace=9.0)
            await runner.cleanup()
            if metrics_runner is not None:
                await metrics_runner.cleanup()
        finally:
            lock.release()  # last: the next instance starts on a quiet database
