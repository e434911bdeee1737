"""A local Slack Web API sink: answers like Slack, records every call, injects faults.

Used by the tests, the demo and the benchmarks in place of https://slack.com/api/:
point `AsyncWebClient(base_url=sink.api_url)` at it. Routes:

    GET|POST /api/<method>     auth.test, chat.postMessage, chat.update, chat.postEphemeral,
                               conversations.history, conversations.replies, conversations.info
    POST     /response/<id>    response_url webhooks handed out by `new_response_url()`
    GET      /_sink/messages, /_sink/calls, /_sink/responses      (for a bot in another process)
    POST     /_sink/faults, /_sink/archive/{channel};  DELETE /_sink/faults

Imports nothing from bot/ or store/.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from aiohttp import web

from simulator.slack_socket import SocketModeEndpoint

log = logging.getLogger(__name__)

FaultKind = Literal["ratelimit", "status", "error", "hang", "fail_after_commit"]
FAULT_KINDS = ("ratelimit", "status", "error", "hang", "fail_after_commit")
Listener = Callable[[str, "SinkMessage"], None]
Params = dict[str, Any]
RESPONSE_URL_USES, RESPONSE_URL_TTL = 5, 30 * 60  # Slack: 5 uses within 30 minutes
MAX_BLOCKS, MAX_TEXT = 50, 40_000
# Per-block limits Slack enforces: block type -> (text limit, list key, list limit).
BLOCK_LIMITS = {"section": (3000, "fields", 10), "header": (150, "", 0)}
BLOCK_LIMITS |= {"context": (0, "elements", 10), "actions": (0, "elements", 25)}


@dataclass(frozen=True)
class SlackFault:
    """A failure to inject. `count` calls are hit (None: until cleared).

    ratelimit: HTTP 429 + Retry-After; status: that HTTP status; error: 200 with
    ok:false; hang: wait `seconds`, then answer normally; fail_after_commit: do the
    work, then answer 500 (a lost answer).
    """

    kind: FaultKind
    method: str | None = None
    channel: str | None = None
    count: int | None = None
    retry_after: int = 1
    status: int = 500
    error: str = "internal_error"
    seconds: float = 5.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlackFault:
        if data.get("kind") not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def matches(self, method: str, channel: Any) -> bool:
        return self.method in (None, method) and self.channel in (None, channel)


@dataclass
class SinkMessage:
    ts: str
    channel: str
    text: str
    blocks: list[dict[str, Any]]
    metadata: dict[str, Any] | None
    thread_ts: str | None
    reply_broadcast: bool
    edits: int
    user: str


class ApiError(Exception):
    """Answer `{"ok": false, "error": code}` with HTTP 200, as Slack does."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class SlackSink:
    """An in-memory Slack workspace behind the Web API. See the module docstring."""

    def __init__(
        self,
        *,
        token: str = "xoxb-test-token",
        team_id: str = "T0DEMO",
        team: str = "demo",
        bot_user_id: str = "U0BOT",
        app_token: str = "xapp-test-token",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._token, self.team_id, self.team, self.bot_user_id = token, team_id, team, bot_user_id
        self._clock, self._sleep = clock, sleep
        self.base_url = ""
        self.channels: dict[str, list[SinkMessage]] = {}
        self.ephemerals: dict[str, list[SinkMessage]] = {}
        self.calls: list[tuple[str, Params]] = []
        self.responses: dict[str, list[dict[str, Any]]] = {}
        self.archived: set[str] = set()
        self._response_urls: dict[str, tuple[float, str | None]] = {}
        self._faults: list[list[Any]] = []  # [fault, calls left or None]
        self._listeners: list[Listener] = []
        self.socket = SocketModeEndpoint(app_token=app_token)
        self._last_micros = 0
        self._methods: dict[str, Callable[[Params], Params]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "conversations.info": self._info,
        }

    @property
    def token(self) -> str:
        """The one bot token the sink accepts (hand it to the bot under test)."""
        return self._token

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/"

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{id}", self._response_url)
        app.router.add_get("/_sink/messages", self._get_messages)
        app.router.add_get("/_sink/calls", self._get_calls)
        app.router.add_get("/_sink/responses", self._get_responses)
        app.router.add_post("/_sink/faults", self._post_faults)
        app.router.add_delete("/_sink/faults", self._delete_faults)
        app.router.add_post("/_sink/archive/{channel}", self._post_archive)
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
        self._faults.append([fault, fault.count])

    def clear_faults(self) -> None:
        self._faults.clear()

    def archive(self, channel: str) -> None:
        self.archived.add(channel)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def top_level(self, channel: str) -> list[SinkMessage]:
        return [m for m in self.channels.get(channel, []) if m.thread_ts is None]

    def replies(self, channel: str, thread_ts: str) -> list[SinkMessage]:
        return [m for m in self.channels.get(channel, []) if m.thread_ts == thread_ts]

    # ---- the Web API ---------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            params = await _read_params(request)
        except ValueError:
            return _fail("invalid_json")
        self.calls.append((method, {k: v for k, v in params.items() if k != "token"}))
        if method == "apps.connections.open":
            return web.json_response(
                self.socket.open_connection(request.headers.get("Authorization"))
            )
        if request.headers.get("Authorization") != f"Bearer {self._token}":
            return _fail("invalid_auth")
        fault = self._take_fault(method, params.get("channel"))
        if fault is not None and fault.kind == "hang":
            await self._sleep(fault.seconds)
        elif fault is not None and fault.kind != "fail_after_commit":
            return _fault_response(fault)
        handler = self._methods.get(method)
        if handler is None:
            return _fail("unknown_method")
        try:
            body = handler(params)
        except ApiError as err:
            return _fail(err.code)
        except (ValueError, TypeError):
            return _fail("invalid_arguments")
        if fault is not None and fault.kind == "fail_after_commit":
            return web.json_response({"ok": False, "error": "internal_error"}, status=500)
        return web.json_response({"ok": True, **body})

    def _take_fault(self, method: str, channel: Any) -> SlackFault | None:
        for entry in self._faults:
            fault: SlackFault = entry[0]
            if fault.matches(method, channel):
                if entry[1] is not None:
                    entry[1] -= 1
                    if entry[1] <= 0:
                        self._faults.remove(entry)
                return fault
        return None

    def _auth_test(self, params: Params) -> Params:
        return {
            "url": f"https://{self.team}.slack.com/",
            "team": self.team,
            "team_id": self.team_id,
            "user": "mathfi-bot",
            "user_id": self.bot_user_id,
            "bot_id": "B0BOT",
        }

    def _post_message(self, params: Params) -> Params:
        channel = self._channel(params, writing=True)
        text, blocks = _content(params)
        thread_ts: str | None = None
        if params.get("thread_ts"):
            parent = self._find(channel, str(params["thread_ts"]), "thread_not_found")
            thread_ts = parent.thread_ts or parent.ts  # a reply's ts means its thread
        message = SinkMessage(
            ts=self._next_ts(),
            channel=channel,
            text=text,
            blocks=blocks,
            metadata=_metadata(params),
            thread_ts=thread_ts,
            reply_broadcast=thread_ts is not None and _truthy(params.get("reply_broadcast")),
            edits=0,
            user=self.bot_user_id,
        )
        self._store(message)
        return {"channel": channel, "ts": message.ts, "message": self._to_api(message, True)}

    def _update(self, params: Params) -> Params:
        channel = self._channel(params, writing=True)
        message = self._find(channel, str(params.get("ts") or ""), "message_not_found")
        text, blocks = _content(params)
        if "text" in params:
            message.text = text
        if "blocks" in params or "text" in params:  # text without blocks drops the blocks
            message.blocks = blocks
        if "metadata" in params:
            message.metadata = _metadata(params)
        message.edits += 1
        self._notify("update", message)
        return {
            "channel": channel,
            "ts": message.ts,
            "text": message.text,
            "message": self._to_api(message, True),
        }

    def _post_ephemeral(self, params: Params) -> Params:
        channel = self._channel(params, writing=True)
        user = params.get("user")
        if not isinstance(user, str) or not user:
            raise ApiError("user_not_found")
        text, blocks = _content(params)
        ts = self._next_ts()
        message = SinkMessage(ts, channel, text, blocks, None, None, False, 0, user)
        self.ephemerals.setdefault(channel, []).append(message)
        return {"message_ts": ts}

    def _history(self, params: Params) -> Params:
        channel = self._channel(params, writing=False)
        visible = [
            m
            for m in reversed(self.channels.get(channel, []))
            if m.thread_ts is None or m.reply_broadcast  # broadcast replies show in the channel
        ]
        oldest, latest = float(params.get("oldest") or 0), float(params.get("latest") or "inf")
        visible = [m for m in visible if oldest < float(m.ts) < latest]
        return self._page(visible, params)

    def _replies(self, params: Params) -> Params:
        channel = self._channel(params, writing=False)
        root = self._find(channel, str(params.get("ts") or ""), "thread_not_found")
        if root.thread_ts is not None:
            root = self._find(channel, root.thread_ts, "thread_not_found")
        return self._page([root, *self.replies(channel, root.ts)], params)

    def _info(self, params: Params) -> Params:
        channel = self._channel(params, writing=False)
        kind = channel[0]
        return {
            "channel": {
                "id": channel,
                "name": f"channel-{channel.lower()}",
                "is_channel": kind == "C",
                "is_group": kind == "G",
                "is_im": kind == "D",
                "is_archived": channel in self.archived,
                "is_member": True,
            }
        }

    # ---- helpers -------------------------------------------------------------------

    def _channel(self, params: Params, *, writing: bool) -> str:
        channel = params.get("channel")
        if not isinstance(channel, str) or channel[:1] not in ("C", "G", "D"):
            raise ApiError("channel_not_found")
        if writing and channel in self.archived:
            raise ApiError("is_archived")
        return channel

    def _find(self, channel: str, ts: str, error: str) -> SinkMessage:
        for message in self.channels.get(channel, []):
            if message.ts == ts:
                return message
        raise ApiError(error)

    def _next_ts(self) -> str:
        """Strictly increasing, Slack-shaped ("1700000000.000100"), from the clock."""
        self._last_micros = max(self._last_micros + 1, int(self._clock() * 1_000_000))
        seconds, micros = divmod(self._last_micros, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def _store(self, message: SinkMessage) -> None:
        self.channels.setdefault(message.channel, []).append(message)
        self._notify("post", message)

    def _notify(self, kind: str, message: SinkMessage) -> None:
        for listener in self._listeners:
            try:
                listener(kind, message)
            except Exception:  # a broken live view must not break the sink
                log.exception("sink listener failed on %s of %s", kind, message.ts)

    def _page(self, messages: list[SinkMessage], params: Params) -> Params:
        start = int(str(params.get("cursor") or "0").removeprefix("next_") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 999)
        with_metadata = _truthy(params.get("include_all_metadata"))
        chunk = messages[start : start + limit]
        more = start + limit < len(messages)
        return {
            "messages": [self._to_api(m, with_metadata) for m in chunk],
            "has_more": more,
            "response_metadata": {"next_cursor": f"next_{start + limit}" if more else ""},
        }

    def _to_api(self, message: SinkMessage, with_metadata: bool) -> Params:
        out: Params = {"type": "message", "user": message.user, "text": message.text}
        out |= {"ts": message.ts, "bot_id": "B0BOT", "team": self.team_id}
        if message.blocks:
            out["blocks"] = message.blocks
        if message.edits:
            out["edited"] = {"user": message.user, "ts": message.ts}
        if message.thread_ts is not None:
            out["thread_ts"] = message.thread_ts
            if message.reply_broadcast:
                out["subtype"] = "thread_broadcast"
        elif replies := self.replies(message.channel, message.ts):
            out |= {"thread_ts": message.ts, "reply_count": len(replies)}
        if with_metadata and message.metadata is not None:
            out["metadata"] = message.metadata
        return out

    # ---- response_url and control routes -------------------------------------------

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
            text, blocks = _content(body)
        except (ValueError, ApiError):
            return web.Response(status=400, text="invalid_payload")
        self.responses[url_id].append(body)
        if channel is not None and body.get("response_type") == "in_channel":
            ts = self._next_ts()
            self._store(SinkMessage(ts, channel, text, blocks, None, None, False, 0, "U0BOT"))
        return web.Response(text="ok")

    async def _get_messages(self, request: web.Request) -> web.Response:
        channels = {ch: [asdict(m) for m in msgs] for ch, msgs in self.channels.items()}
        return web.json_response({"channels": channels, "archived": sorted(self.archived)})

    async def _get_calls(self, request: web.Request) -> web.Response:
        calls = [{"method": method, "params": params} for method, params in self.calls]
        return web.json_response({"calls": calls})

    async def _get_responses(self, request: web.Request) -> web.Response:
        return web.json_response({"responses": self.responses})

    async def _post_faults(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise TypeError('send a fault object or {"faults": [...]}')
            items = body.get("faults", [body])
            faults = [SlackFault.from_dict(item) for item in items]
        except (ValueError, TypeError, KeyError) as err:
            return web.json_response({"ok": False, "error": str(err)}, status=400)
        for fault in faults:
            self.add_fault(fault)
        return web.json_response({"ok": True, "faults": len(self._faults)})

    async def _delete_faults(self, request: web.Request) -> web.Response:
        self.clear_faults()
        return web.json_response({"ok": True})

    async def _post_archive(self, request: web.Request) -> web.Response:
        self.archive(request.match_info["channel"])
        return web.json_response({"ok": True})


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


async def _read_params(request: web.Request) -> Params:
    """Query string plus the body, JSON or form-encoded (slack_sdk sends chat.* as JSON)."""
    params: Params = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("the JSON body must be an object")
            params.update(body)
        else:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def _fail(error: str, *, status: int = 200) -> web.Response:
    return web.json_response({"ok": False, "error": error}, status=status)


def _fault_response(fault: SlackFault) -> web.Response:
    if fault.kind == "ratelimit":
        response = _fail("ratelimited", status=429)
        response.headers["Retry-After"] = str(fault.retry_after)
        return response
    if fault.kind == "status":
        return _fail("fatal_error", status=fault.status)
    return _fail(fault.error)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _decoded(value: Any, error: str) -> Any:
    """Blocks and metadata arrive as objects (JSON bodies) or JSON strings (forms)."""
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else None
        except ValueError:
            raise ApiError(error) from None
    return value


def _content(params: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(text, blocks) of a message, checked against Slack's limits."""
    text = params.get("text") or ""
    blocks = _decoded(params.get("blocks"), "invalid_blocks") or []
    if not isinstance(text, str):
        raise ApiError("invalid_arguments")
    if not text and not blocks:
        raise ApiError("no_text")
    if len(text) > MAX_TEXT:
        raise ApiError("msg_too_long")
    if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
        raise ApiError("invalid_blocks")
    if not all(_block_ok(block) for block in blocks):
        raise ApiError("invalid_blocks")
    return text, blocks


def _block_ok(block: Any) -> bool:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        return False
    text_limit, list_key, list_limit = BLOCK_LIMITS.get(block["type"], (0, "", 0))
    text = block.get("text")
    if text_limit and isinstance(text, dict) and len(str(text.get("text", ""))) > text_limit:
        return False
    return not list_key or len(block.get(list_key) or []) <= list_limit


def _metadata(params: Params) -> dict[str, Any] | None:
    metadata = _decoded(params.get("metadata"), "invalid_metadata_format")
    if metadata is None:
        return None
    valid = isinstance(metadata, dict) and isinstance(metadata.get("event_type"), str)
    if not valid or not isinstance(metadata.get("event_payload", {}), dict):
        raise ApiError("invalid_metadata_format")
    return dict(metadata)
