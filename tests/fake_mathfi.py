"""A tiny scriptable MathFi for the client tests (the full simulator lives in simulator/).

`FakeMathFi.app()` is a real aiohttp app: POST /api/login issues tokens, every /api/v1
route checks the bearer token, then answers from a per-route script of queued replies
(`fake.queue("GET", path, status(503), ...)`) and, once the script is used up, from
`fake.bodies[path]` (404 when the path is unknown). Every request is recorded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]

USERNAME = "alice@example.com"
PASSWORD = "s3cret-Pa55word"


def status(code: int, *, headers: dict[str, str] | None = None, text: str = "") -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, text=text, headers=headers)

    return answer


def json_body(data: Any, *, code: int = 200) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response(data, status=code)

    return answer


def raw(body: bytes, *, content_type: str = "application/json") -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=content_type)

    return answer


def slow(seconds: float, then: Answer) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return await then(request)

    return answer


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class FakeMathFi:
    expires_in: int = 3600
    login_answers: deque[Answer] = field(default_factory=deque)
    login_delay: float = 0.0
    accept_tokens: bool = True
    bodies: dict[str, Any] = field(default_factory=dict)
    script: dict[tuple[str, str], deque[Answer]] = field(default_factory=lambda: defaultdict(deque))
    tokens: set[str] = field(default_factory=set)
    seen: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/login", self._login)
        app.router.add_route("*", "/api/v1/{tail:.*}", self._v1)
        return app

    def queue(self, method: str, path: str, *answers: Answer) -> None:
        self.script[(method, path)].extend(answers)

    def revoke_all(self) -> None:
        self.tokens.clear()

    @property
    def logins(self) -> int:
        return sum(1 for s in self.seen if s.path == "/api/login")

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def _record(self, request: web.Request) -> None:
        body = await request.read()
        self.seen.append(
            Seen(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                body,
                time.monotonic(),
            )
        )

    async def _login(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        await asyncio.sleep(self.login_delay)
        if self.login_answers:
            return await self.login_answers.popleft()(request)
        credentials = json.loads(self.seen[-1].body)
        if credentials != {"username": USERNAME, "password": PASSWORD}:
            return web.Response(status=401)
        token = f"tok-{next(self._serial)}-0123456789abcdef"
        self.tokens.add(token)
        answer = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "username": USERNAME,
        }
        return web.json_response(answer)

    async def _v1(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        auth = request.headers.get("Authorization", "")
        if not self.accept_tokens or auth.removeprefix("Bearer ") not in self.tokens:
            return web.Response(status=401)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        pending = self.script.get((request.method, request.path))
        if pending:
            return await pending.popleft()(request)
        if request.path in self.bodies:
            return web.json_response(self.bodies[request.path])
        return web.Response(status=404, text="no such thing")
