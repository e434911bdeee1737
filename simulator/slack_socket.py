"""Socket Mode for the local Slack sink: `apps.connections.open` and the WebSocket.

Slack's Socket Mode: the app calls `apps.connections.open` with its app-level token
(`xapp-…`), opens the returned wss URL, receives a `hello`, then envelopes
(`{"envelope_id", "type": "slash_commands" | "interactive" | "events_api", "payload"}`) that
it acknowledges by sending `{"envelope_id", "payload"?}` back. Here the URL is a plain
ws:// one on the sink, and tests push envelopes with `push`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from aiohttp import WSMsgType, web


class SocketModeEndpoint:
    def __init__(self, *, app_token: str) -> None:
        self.app_token = app_token
        self.base_url = ""
        self.acks: dict[str, dict[str, Any]] = {}
        self.connections = 0
        self._sockets: list[web.WebSocketResponse] = []
        self._acked: dict[str, asyncio.Event] = {}

    def install(self, app: web.Application) -> None:
        app.router.add_get("/_sink/socket", self._socket)

    def open_connection(self, authorization: str | None) -> dict[str, Any]:
        """The body of `apps.connections.open` for the given Authorization header."""
        if authorization != f"Bearer {self.app_token}":
            return {"ok": False, "error": "invalid_auth"}
        ws_url = self.base_url.replace("http://", "ws://", 1) + "/_sink/socket"
        return {"ok": True, "url": f"{ws_url}?ticket={secrets.token_hex(8)}"}

    @property
    def connected(self) -> bool:
        return any(not ws.closed for ws in self._sockets)

    async def push(
        self, kind: str, payload: dict[str, Any], *, wait: float = 5.0
    ) -> dict[str, Any]:
        """Send an envelope to the connected app and wait for its acknowledgement."""
        envelope_id = secrets.token_hex(8)
        self._acked[envelope_id] = asyncio.Event()
        message = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": 0,
            "retry_reason": "",
        }
        live = [ws for ws in self._sockets if not ws.closed]
        if not live:
            raise RuntimeError("no Socket Mode connection")
        await live[-1].send_str(json.dumps(message))
        await asyncio.wait_for(self._acked[envelope_id].wait(), wait)
        return self.acks[envelope_id]

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections += 1
        self._sockets.append(ws)
        await ws.send_str(
            json.dumps(
                {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0SINK"}}
            )
        )
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            envelope_id = data.get("envelope_id")
            if envelope_id in self._acked:
                self.acks[envelope_id] = data
                self._acked[envelope_id].set()
        return ws
