"""The local Slack sink's control routes, for a test or a bot in another process.

    GET    /_sink/messages     every channel's messages (and the archived channels)
    GET    /_sink/calls        every Web API call, in order, without the token
    GET    /_sink/responses    the bodies posted to each response_url
    GET    /_sink/views        the latest App Home view per user id
    GET    /_sink/stats        calls and 429s per method, held calls, the rate limits
    POST   /_sink/faults       a SlackFault object or {"faults": [...]};  DELETE: clear them
    POST   /_sink/archive/{channel}
    POST   /_sink/limits       {"enabled": true, "post_per_channel": 1, "update_per_workspace": 1}
    POST   /_sink/users        a SinkUser object or {"users": [...]}
    POST   /_sink/usergroups   {"S…": ["U…", …], …}
    POST   /_sink/plant        {"channel", "text", "user", "bot_id"?, "metadata"?,
                                "thread_ts"?, "blocks"?}: a message from another app

Imports nothing from bot/ or store/.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from simulator.slack_directory import SinkUser
from simulator.slack_faults import SlackFault

if TYPE_CHECKING:
    from simulator.slack import SlackSink

PLANT_FIELDS = ("bot_id", "metadata", "thread_ts", "blocks")


class ControlRoutes:
    def __init__(self, sink: SlackSink) -> None:
        self._sink = sink

    def install(self, app: web.Application) -> None:
        app.router.add_get("/_sink/messages", self._get_messages)
        app.router.add_get("/_sink/calls", self._get_calls)
        app.router.add_get("/_sink/responses", self._get_responses)
        app.router.add_get("/_sink/views", self._get_views)
        app.router.add_get("/_sink/stats", self._get_stats)
        app.router.add_post("/_sink/faults", self._post_faults)
        app.router.add_delete("/_sink/faults", self._delete_faults)
        app.router.add_post("/_sink/archive/{channel}", self._post_archive)
        app.router.add_post("/_sink/limits", self._post_limits)
        app.router.add_post("/_sink/users", self._post_users)
        app.router.add_post("/_sink/usergroups", self._post_usergroups)
        app.router.add_post("/_sink/plant", self._post_plant)

    async def _get_messages(self, request: web.Request) -> web.Response:
        sink = self._sink
        channels = {ch: [asdict(m) for m in msgs] for ch, msgs in sink.channels.items()}
        return web.json_response({"channels": channels, "archived": sorted(sink.archived)})

    async def _get_calls(self, request: web.Request) -> web.Response:
        calls = [{"method": method, "params": params} for method, params in self._sink.calls]
        return web.json_response({"calls": calls})

    async def _get_responses(self, request: web.Request) -> web.Response:
        return web.json_response({"responses": self._sink.responses})

    async def _get_views(self, request: web.Request) -> web.Response:
        return web.json_response({"views": self._sink.views})

    async def _get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self._sink.stats())

    async def _post_faults(self, request: web.Request) -> web.Response:
        try:
            body = await _object(request)
            faults = [SlackFault.from_dict(item) for item in body.get("faults", [body])]
        except (ValueError, TypeError, KeyError) as err:
            return _refused(err)
        for fault in faults:
            self._sink.add_fault(fault)
        return web.json_response({"ok": True, "faults": self._sink.fault_count})

    async def _delete_faults(self, request: web.Request) -> web.Response:
        self._sink.clear_faults()
        return web.json_response({"ok": True})

    async def _post_archive(self, request: web.Request) -> web.Response:
        self._sink.archive(request.match_info["channel"])
        return web.json_response({"ok": True})

    async def _post_limits(self, request: web.Request) -> web.Response:
        try:
            limits = self._sink.limiter.limits.changed(await _object(request))
        except (ValueError, TypeError) as err:
            return _refused(err)
        self._sink.set_limits(limits)
        return web.json_response({"ok": True, "limits": asdict(limits)})

    async def _post_users(self, request: web.Request) -> web.Response:
        try:
            body = await _object(request)
            users = [SinkUser.from_dict(item) for item in body.get("users", [body])]
        except (ValueError, TypeError, KeyError) as err:
            return _refused(err)
        for user in users:
            self._sink.add_user(user)
        return web.json_response({"ok": True})

    async def _post_usergroups(self, request: web.Request) -> web.Response:
        try:
            body = await _object(request)
            for group, members in body.items():
                if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                    raise TypeError("a user group maps to a list of user ids")
                self._sink.add_usergroup(group, members)
        except (ValueError, TypeError) as err:
            return _refused(err)
        return web.json_response({"ok": True})

    async def _post_plant(self, request: web.Request) -> web.Response:
        try:
            body = await _object(request)
            channel, text, user = body["channel"], body["text"], body["user"]
            if not all(isinstance(v, str) for v in (channel, text, user)):
                raise TypeError("channel, text and user are strings")
            extra = {k: body[k] for k in PLANT_FIELDS if k in body}
            message = self._sink.plant(channel, text, user=user, **extra)
        except (ValueError, TypeError, KeyError) as err:
            return _refused(err)
        return web.json_response({"ok": True, "ts": message.ts})


async def _object(request: web.Request) -> dict[str, Any]:
    body = await request.json()
    if not isinstance(body, dict):
        raise TypeError("send a JSON object")
    return body


def _refused(err: Exception) -> web.Response:
    return web.json_response({"ok": False, "error": str(err)}, status=400)
