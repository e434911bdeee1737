"""A tiny local Slack (aiohttp on 127.0.0.1) answering users.info and usergroups.users.list
as Slack does, for the permission tests until the sink at simulator/slack.py answers them."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

GUEST = {"is_restricted": True, "is_ultra_restricted": False}


@dataclass
class LocalSlack:
    """users.info and usergroups.users.list, answered like Slack (HTTP 200, ok true/false)."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None  # every call answers ok:false with this error
    calls: Counter[str] = field(default_factory=Counter)

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = dict(await request.post()) | dict(request.query)
        self.calls[method] += 1
        if self.error is not None:
            return web.json_response({"ok": False, "error": self.error})
        if method == "users.info":
            user = self.users.get(str(params.get("user")))
            if user is None:
                return web.json_response({"ok": False, "error": "user_not_found"})
            flags = {"is_restricted": False, "is_ultra_restricted": False, "is_bot": False}
            body = {"id": params["user"], "deleted": False, **flags, **user}
            return web.json_response({"ok": True, "user": body})
        if method == "usergroups.users.list":
            members = self.groups.get(str(params.get("usergroup")))
            if members is None:
                return web.json_response({"ok": False, "error": "no_such_subteam"})
            return web.json_response({"ok": True, "users": members})
        return web.json_response({"ok": False, "error": "unknown_method"}, status=404)


@asynccontextmanager
async def serve_local_slack(slack: LocalSlack) -> AsyncIterator[str]:
    """Serve `slack`; yields its Web API root (`http://127.0.0.1:port/api/`)."""
    app = web.Application()
    app.router.add_route("*", "/api/{method}", slack.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/api/"
    finally:
        await runner.cleanup()
