"""The service's HTTP routes: `POST /slack/events`, `GET /healthz` and `GET /metrics` (or,
with METRICS_PORT, a second listener that serves `/metrics` alone), and the listeners that
serve them.

/healthz and /metrics answer from what the loops keep fresh plus a bounded database probe:
nothing here waits on SQLite on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request

from bot.config import Settings
from bot.metrics import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from bot.app.service import Service

# /healthz waits this long for the database probe, then says "busy" rather than wait.
PROBE_WITHIN = 0.05
# A probe's answer is reused this long: a busy database is asked at most this often.
PROBE_EVERY = 1.0

# The service's log lines keep the logger name they had before this module was cut out.
log = logging.getLogger("bot.app.service")


class Routes:
    """The routes over one `Service`'s parts (read when a request comes, so they answer
    "starting" before `Service.start` has built them)."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self._probe: asyncio.Task[bool] | None = None
        self._probed: tuple[float, bool] | None = None  # (monotonic time, database ok)

    def web_app(self) -> web.Application:
        """The main listener's routes; /metrics only when METRICS_PORT does not move it to
        a listener of its own (`metrics_app`)."""
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/slack/events", self._slack_events)
        app.router.add_get("/healthz", self._healthz)
        if self._service.settings.metrics_port is None:
            app.router.add_get("/metrics", self._metrics)
        return app

    def metrics_app(self) -> web.Application:
        """The METRICS_PORT listener: GET /metrics and nothing else."""
        app = web.Application(client_max_size=1024)
        app.router.add_get("/metrics", self._metrics)
        return app

    def close(self) -> None:
        """The service stops: a database probe still waiting is cancelled."""
        if self._probe is not None:
            self._probe.cancel()

    async def _slack_events(self, request: web.Request) -> web.Response:
        service = self._service
        if not service.accepting:
            state = "starting" if not hasattr(service, "bolt") else "shutting down"
            return web.json_response({"error": state}, status=503)
        if service.replays.is_replay(await request.read(), request.headers):
            log.warning("refused a replayed Slack request (same timestamp and signature)")
            return web.json_response({"error": "replayed request"}, status=401)
        bolt_response = await service.bolt.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    async def health(self) -> tuple[int, dict[str, Any]]:
        """The loops' ages and the outbox counts as the sender last read them, plus a
        database probe waited for at most PROBE_WITHIN seconds ("busy" when it takes
        longer: another process holds the database, or the store's thread is behind)."""
        service = self._service
        if not hasattr(service, "sender"):  # the port is bound before start() has run
            return 503, {"status": "starting", "accepting_commands": False}
        database = await self._database_state()
        now = service.clock()
        stale = service.settings.stale_after
        ages = {
            "poller": _age(now, service.poller.last_cycle_at),
            "sender": _age(now, service.sender.last_cycle_at),
        }
        counts = service.sender.outbox_counts
        database_ok = database == "ok"
        loops_ok = all(age is not None and age <= stale for age in ages.values())
        mathfi_ok = not service.poller.mathfi_down
        alert_wait = service.sender.alert_wait(now)
        alerts_ok = alert_wait is None or alert_wait <= service.settings.alert_max_wait
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
            "watched_jobs": service.poller.watched,
            "unacknowledged_alerts": service.oncall.unacknowledged,
            "accepting_commands": service.accepting,
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
            self._probe = asyncio.create_task(self._service.store.ping(), name="database-probe")
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
            body=self._service.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


class Listeners:
    """The ports `serve` binds: the main listener and, with METRICS_PORT, the metrics one."""

    def __init__(self, routes: Routes, settings: Settings) -> None:
        self._routes = routes
        self._settings = settings
        self._main = web.AppRunner(routes.web_app(), access_log=None)
        self._metrics: web.AppRunner | None = None

    async def open(self) -> None:
        settings = self._settings
        if settings.metrics_port is not None:
            # Its line does not read "listening on http://host:port ": tests and scripts
            # read the main port from that one.
            self._metrics = web.AppRunner(self._routes.metrics_app(), access_log=None)
            await self._metrics.setup()
            await web.TCPSite(self._metrics, settings.metrics_host, settings.metrics_port).start()
            log.info(
                "serving metrics on http://%s:%d/metrics (and nowhere else)",
                settings.metrics_host,
                self._metrics.addresses[0][1],
            )
        await self._main.setup()
        site = web.TCPSite(self._main, settings.http_host, settings.http_port)
        await site.start()
        routes = "POST /slack/events, GET /healthz"
        if settings.metrics_port is None:
            routes += ", GET /metrics"
        log.info(
            "listening on http://%s:%d (%s)",
            settings.http_host,
            self._main.addresses[0][1],  # the bound port, also when HTTP_PORT is 0
            routes,
        )

    async def close(self) -> None:
        await self._main.cleanup()
        if self._metrics is not None:
            await self._metrics.cleanup()


def _age(now: float, at: float | None) -> float | None:
    return None if at is None else round(max(now - at, 0.0), 3)
