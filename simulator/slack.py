"""A local Slack Web API sink: answers like Slack, records every call, injects faults.

Used by the tests, the demo and the benchmarks in place of https://slack.com/api/:
point `AsyncWebClient(base_url=sink.api_url)` at it. Routes:

    GET|POST /api/<method>     auth.test, chat.postMessage, chat.update, chat.delete,
                               chat.postEphemeral, conversations.history,
                               conversations.replies, conversations.info, conversations.open,
                               users.info, usergroups.users.list, views.publish
    POST     /response/<id>    response_url webhooks handed out by `new_response_url()`
    GET      /_sink/messages, /_sink/calls, /_sink/responses, /_sink/views, /_sink/stats
    POST     /_sink/faults, /_sink/archive/{channel}, /_sink/limits, /_sink/users,
             /_sink/usergroups, /_sink/plant;  DELETE /_sink/faults

The parts: slack_store (channels and messages), slack_directory (people, user groups,
IMs, App Home views), slack_shapes (what Slack accepts), slack_faults, slack_limits (the
rate limits, off by default). Imports nothing from bot/ or store/.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from aiohttp import web

from simulator.slack_control import ControlRoutes
from simulator.slack_directory import Directory, SinkUser
from simulator.slack_faults import FaultBook, SlackFault, fail, ratelimited
from simulator.slack_limits import RateLimiter, RateLimits
from simulator.slack_shapes import ApiError, Params, read_params
from simulator.slack_shapes import content as shapes_content
from simulator.slack_socket import SocketModeEndpoint
from simulator.slack_store import Listener, MessageStore, SinkMessage

__all__ = [
    "ApiError",
    "RateLimits",
    "SinkMessage",
    "SinkUser",
    "SlackFault",
    "SlackSink",
    "start_in_background",
]

RESPONSE_URL_USES, RESPONSE_URL_TTL = 5, 30 * 60  # Slack: 5 uses within 30 minutes


class SlackSink:
    """An in-memory Slack workspace behind the Web API. See the module docstring."""

    def __init__(
        self,
        *,
        token: str = "xoxb-test-token",
        team_id: str = "T0DEMO",
        team: str = "demo",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        app_token: str = "xapp-test-token",
        limits: RateLimits | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._token, self.team_id, self.team = token, team_id, team
        self.bot_user_id, self.bot_id = bot_user_id, bot_id
        self._clock, self._sleep = clock, sleep
        self.base_url = ""
        self.store = MessageStore(
            team_id=team_id, bot_user_id=bot_user_id, bot_id=bot_id, clock=clock
        )
        self.directory = Directory(self.store, team_id=team_id, bot_user_id=bot_user_id)
        self.store.known_user = self.directory.exists
        self.limiter = RateLimiter(clock, limits)
        self.calls: list[tuple[str, Params]] = []
        self.responses: dict[str, list[dict[str, Any]]] = {}
        self.ratelimited: Counter[str] = Counter()  # 429s answered, per method
        self._response_urls: dict[str, tuple[float, str | None]] = {}
        self._faults = FaultBook()
        self._held: set[asyncio.Task[web.Response]] = set()
        self.socket = SocketModeEndpoint(app_token=app_token)
        self._methods: dict[str, Callable[[Params], Params]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self.store.post_message,
            "chat.update": self.store.update,
            "chat.delete": self.store.delete,
            "chat.postEphemeral": self.store.post_ephemeral,
            "conversations.history": self.store.history,
            "conversations.replies": self.store.replies_of,
            "conversations.info": self.store.info,
            "conversations.open": self.directory.open_conversation,
            "users.info": self.directory.users_info,
            "usergroups.users.list": self.directory.usergroup_users,
            "views.publish": self.directory.publish_view,
        }

    @property
    def token(self) -> str:
        """The one bot token the sink accepts (hand it to the bot under test)."""
        return self._token

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/"

    @property
    def channels(self) -> dict[str, list[SinkMessage]]:
        return self.store.channels

    @property
    def ephemerals(self) -> dict[str, list[SinkMessage]]:
        return self.store.ephemerals

    @property
    def archived(self) -> set[str]:
        return self.store.archived

    @property
    def views(self) -> dict[str, Params]:
        """The latest App Home view published for each user id."""
        return self.directory.views

    @property
    def held(self) -> int:
        """Calls a hang fault is holding (they complete even if their client has gone)."""
        return len(self._held)

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{id}", self._response_url)
        ControlRoutes(self).install(app)
        self.socket.install(app)
        return app

    # ---- test controls -------------------------------------------------------------

    def new_response_url(self, *, channel: str | None = None) -> str:
        """A response_url; `in_channel` posts to it also land in `channel` when given."""
        if not self.base_url:
            raise RuntimeError("the sink has no base_url yet: start it first")
        url_id = str(len(self._response_urls) + 1)
        self._response_urls[url_id] = (self._clock(), channel)
        self.responses[url_id] = []
        return f"{self.base_url}/response/{url_id}"

    def add_fault(self, fault: SlackFault) -> None:
        self._faults.add(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def fault_count(self) -> int:
        return len(self._faults)

    def set_limits(self, limits: RateLimits) -> None:
        """Switch the rate limits on or off (their windows start afresh)."""
        self.limiter.configure(limits)

    def add_user(self, user: SinkUser) -> None:
        self.directory.add_user(user)

    def add_usergroup(self, usergroup_id: str, user_ids: list[str]) -> None:
        self.directory.add_usergroup(usergroup_id, user_ids)

    def open_im(self, user_id: str) -> str:
        """The IM channel of `user_id` with the bot, as if they had opened it."""
        return self.store.open_im(user_id)[0]

    def plant(self, channel: str, text: str, *, user: str, **kwargs: Any) -> SinkMessage:
        """A message "posted by another app" (`bot_id=`) or a person; see MessageStore."""
        return self.store.plant(channel, text, user=user, **kwargs)

    def archive(self, channel: str) -> None:
        self.archived.add(channel)

    def subscribe(self, listener: Listener) -> None:
        self.store.listeners.append(listener)

    def top_level(self, channel: str) -> list[SinkMessage]:
        return self.store.top_level(channel)

    def replies(self, channel: str, thread_ts: str) -> list[SinkMessage]:
        return self.store.replies(channel, thread_ts)

    async def settle(self) -> None:
        """Wait until every call held by a hang fault has completed."""
        while self._held:
            await asyncio.gather(*self._held, return_exceptions=True)

    def stats(self) -> Params:
        return {
            "calls": dict(Counter(method for method, _ in self.calls)),
            "ratelimited": dict(self.ratelimited),
            "held": self.held,
            "limits": asdict(self.limiter.limits),
        }

    # ---- the Web API ---------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        response = await self._answer(request)
        if response.status == 429:
            self.ratelimited[request.match_info["method"]] += 1
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            params = await read_params(request)
        except ValueError:
            return fail("invalid_json")
        self.calls.append((method, {k: v for k, v in params.items() if k != "token"}))
        if method == "apps.connections.open":
            # the app-level token's call: only a fault naming it applies (a hang: held)
            fault = self._faults.take(method, None, named=True)
            if fault is not None and fault.kind == "hang":
                await self._sleep(fault.seconds)
            elif fault is not None:
                return fault.response()
            return web.json_response(
                self.socket.open_connection(request.headers.get("Authorization"))
            )
        if request.headers.get("Authorization") != f"Bearer {self._token}":
            return fail("invalid_auth")
        fault = self._faults.take(method, params.get("channel"))
        if fault is not None and fault.kind == "hang":
            # Detached from this request: the call completes even if its client has gone.
            task = asyncio.ensure_future(self._held_call(fault.seconds, method, params))
            self._held.add(task)
            task.add_done_callback(self._held.discard)
            return await asyncio.shield(task)
        if fault is not None and fault.kind != "fail_after_commit":
            return fault.response()
        response, done = self._call(method, params)
        if fault is not None and done:  # fail_after_commit: the work is done, the answer lost
            return web.json_response({"ok": False, "error": "internal_error"}, status=500)
        return response

    async def _held_call(self, seconds: float, method: str, params: Params) -> web.Response:
        await self._sleep(seconds)
        return self._call(method, params)[0]

    def _call(self, method: str, params: Params) -> tuple[web.Response, bool]:
        """The method's answer, and whether it did its work."""
        handler = self._methods.get(method)
        if handler is None:
            return fail("unknown_method"), False
        wait = self.limiter.check(method, params.get("channel"))
        if wait is not None:
            return ratelimited(wait), False
        try:
            body = handler(params)
        except ApiError as err:
            failure: Params = {"ok": False, "error": err.code}
            if err.messages:
                failure["response_metadata"] = {"messages": err.messages}
            return web.json_response(failure), False
        except (ValueError, TypeError):
            return fail("invalid_arguments"), False
        return web.json_response({"ok": True, **body}), True

    def _auth_test(self, params: Params) -> Params:
        return {
            "url": f"https://{self.team}.slack.com/",
            "team": self.team,
            "team_id": self.team_id,
            "user": "mathfi-bot",
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
        }

    # ---- response_url --------------------------------------------------------------

    async def _response_url(self, request: web.Request) -> web.Response:
        url_id = request.match_info["id"]
        if url_id not in self._response_urls:
            return web.Response(status=404, text="no_such_url")
        created, channel = self._response_urls[url_id]
        if self._clock() - created > RESPONSE_URL_TTL:
            return web.Response(status=404, text="expired_url")
        if len(self.responses[url_id]) >= RESPONSE_URL_USES:
            return web.Response(status=404, text="used_url")
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("the JSON body must be an object")
            text, blocks = shapes_content(body)
        except (ValueError, ApiError):
            return web.Response(status=400, text="invalid_payload")
        self.responses[url_id].append(body)
        if channel is not None and body.get("response_type") == "in_channel":
            ts = self.store.next_ts()
            message = SinkMessage(ts, channel, text, blocks, None, None, False, 0, self.bot_user_id)
            message.bot_id = self.bot_id
            self.store.store(message)
        return web.Response(text="ok")


async def start_in_background(
    sink: SlackSink, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Serve the sink on host:port (0: a free port); sets and returns `sink.base_url`.

    The caller owns the runner: `await runner.cleanup()` stops it.
    """
    runner = web.AppRunner(sink.make_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound_port = runner.addresses[0][1]
    sink.base_url = sink.socket.base_url = f"http://{host}:{bound_port}"
    return runner, sink.base_url
