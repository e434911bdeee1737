"""A hostile MathFi (issue #11, holes 1 and 2): redirects that would carry the password away
or plant a job's state, bodies built to exhaust memory or the parser.

Each test runs the real MathFiClient against small aiohttp servers on 127.0.0.1: one plays
MathFi (it logs in normally and answers the progress route with the attack), another plays
the attacker's origin and records whatever reaches it.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bot.core.models import MAX_ALGORITHMS, MAX_RECENT_PERFORMANCES
from bot.errors import MathFiParseError, MathFiRedirect
from bot.mathfi.client import MathFiClient

pytestmark = pytest.mark.reliability

PASSWORD = "hunter2-Secret"
KEY = "job-1"
PROGRESS = f"/api/v1/training/{KEY}/progress"
COMPLETED = {"status": "COMPLETED", "jobs": [{"algorithm": "BSEV01", "status": "COMPLETED"}]}
MB = 1_000_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Recorder:
    """The attacker's origin: answers everything with a plausible body, records it all."""

    seen: list[tuple[str, str, bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path, await request.read()))
        return web.json_response(COMPLETED | {"access_token": "planted", "expires_in": 3600})


async def _login(request: web.Request) -> web.StreamResponse:
    return web.json_response({"access_token": "tok-0123456789", "expires_in": 3600})


@pytest.fixture
async def attacker() -> AsyncIterator[tuple[Recorder, str]]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        yield recorder, str(server.make_url("")).rstrip("/")


Serve = Callable[..., Awaitable[MathFiClient]]


@pytest.fixture
async def hostile() -> AsyncIterator[Serve]:
    """`await hostile(progress=handler, login=handler)`: a client of such a MathFi."""
    servers: list[TestServer] = []
    clients: list[MathFiClient] = []

    async def serve(
        *, progress: Handler | None = None, login: Handler = _login, **options: Any
    ) -> MathFiClient:
        app = web.Application()
        app.router.add_post("/api/login", login)
        if progress is not None:
            app.router.add_get(PROGRESS, progress)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        client = MathFiClient(
            str(server.make_url("")),
            username="alice@example.com",
            password=SecretStr(PASSWORD),
            max_retries=0,
            timeout=5.0,
            **options,
        )
        clients.append(client)
        return client

    yield serve
    for client in clients:
        await client.close()
    for server in servers:
        await server.close()


# --- hole 1: redirects ------------------------------------------------------------------


async def test_a_307_on_login_does_not_carry_the_password_away(
    hostile: Serve, attacker: tuple[Recorder, str]
) -> None:
    recorder, elsewhere = attacker

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect(f"{elsewhere}/collect?from=login")

    client = await hostile(login=redirect)
    with pytest.raises(MathFiRedirect) as caught:
        await client.login()
    assert recorder.seen == []  # the password never left for the Location
    message = str(caught.value)
    assert "307" in message and "POST /api/login" in message
    assert elsewhere not in message and "collect" not in message and PASSWORD not in message
    assert caught.value.status == 307 and caught.value.public_reason == "redirect refused"


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_a_redirected_progress_is_not_followed_nor_trusted(
    hostile: Serve, attacker: tuple[Recorder, str], code: int
) -> None:
    recorder, elsewhere = attacker

    async def redirect(request: web.Request) -> web.StreamResponse:
        # The body, too, is the attacker's: a state the client must not take as the job's.
        return web.json_response(COMPLETED, status=code, headers={"Location": elsewhere + "/x"})

    client = await hostile(progress=redirect)
    with pytest.raises(MathFiRedirect, match=f"with {code} ") as caught:
        await client.get_progress(KEY)
    assert recorder.seen == []
    assert elsewhere not in str(caught.value)


async def test_a_hostile_reason_phrase_does_not_reach_the_message(hostile: Serve) -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, reason="Go to evil.example", headers={"Location": "/"})

    client = await hostile(progress=redirect)
    with pytest.raises(MathFiRedirect) as caught:
        await client.get_progress(KEY)
    assert "evil" not in str(caught.value) and "302 Found" in str(caught.value)


# --- hole 2: bodies ---------------------------------------------------------------------


@dataclass
class Flood:
    """Streams `total` bytes of spaces in 64 KB pieces; counts what it managed to send."""

    total: int
    declared: int | None = None
    sent: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if self.declared is not None:
            response.content_length = self.declared
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        piece = b" " * 65536
        try:
            while self.sent < self.total:
                await response.write(piece)
                self.sent += len(piece)
        except ConnectionError:  # the client hung up: what we want
            pass
        return response


async def test_a_400_mb_declared_body_is_refused_without_reading_it(hostile: Serve) -> None:
    flood = Flood(total=400 * MB, declared=400 * MB)
    client = await hostile(progress=flood.handle)
    await client.login()
    started = time.monotonic()
    with pytest.raises(MathFiParseError) as caught:
        await client.get_progress(KEY)
    assert time.monotonic() - started < 2
    assert str(caught.value) == (
        f"MathFi answered GET {PROGRESS} with a body of 400000000 bytes, "
        "over the 4000000-byte cap (MATHFI_MAX_BODY); not read"
    )
    await asyncio.sleep(0.1)
    assert flood.sent < 40 * MB  # what the socket buffers took before the hang-up
    assert caught.value.public_reason == "bad answer"


async def test_a_streamed_body_is_refused_once_it_passes_the_cap(hostile: Serve) -> None:
    flood = Flood(total=200 * MB)
    client = await hostile(progress=flood.handle, max_body=1 * MB)
    with pytest.raises(MathFiParseError, match=r"over the 1000000-byte cap .* reading stopped"):
        await client.get_progress(KEY)
    await asyncio.sleep(0.1)
    assert flood.sent < 40 * MB


async def test_a_compressed_bomb_is_capped_on_the_decompressed_size(hostile: Serve) -> None:
    bomb = gzip.compress(b" " * (50 * MB), compresslevel=9)
    assert len(bomb) < 100_000

    async def zipped(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return web.Response(body=bomb, headers=headers)

    client = await hostile(progress=zipped, max_body=1 * MB)
    with pytest.raises(MathFiParseError, match="reading stopped"):
        await client.get_progress(KEY)


def _answer(body: bytes) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/json")

    return handle


@pytest.mark.parametrize(
    "body", [b"[" * 200_000, b'{"status": "RUNNING", "jobs": ' + b"[" * 200_000]
)
async def test_a_nesting_bomb_is_a_parse_error_not_a_recursion_error(
    hostile: Serve, body: bytes
) -> None:
    client = await hostile(progress=_answer(body))
    with pytest.raises(MathFiParseError) as caught:
        await client.get_progress(KEY)
    assert (
        str(caught.value)
        == f"MathFi answered GET {PROGRESS} with a body nested too deeply to parse"
    )


def _algorithm(name: str, values: int = 3) -> dict[str, Any]:
    return {"algorithm": name, "status": "RUNNING", "recentPerformances": [0.5] * values}


@pytest.mark.parametrize(
    ("progress", "field_name"),
    [
        ({"status": "RUNNING", "jobs": [_algorithm(f"A{i}") for i in range(MAX_ALGORITHMS + 1)]},
         "jobs"),
        ({"status": "RUNNING", "jobs": [_algorithm("A", MAX_RECENT_PERFORMANCES + 1)]},
         "jobs.0.recentPerformances"),
    ],
)  # fmt: skip
async def test_too_long_lists_are_a_parse_error_naming_the_field(
    hostile: Serve, progress: dict[str, Any], field_name: str
) -> None:
    client = await hostile(progress=_answer(json.dumps(progress).encode()))
    with pytest.raises(MathFiParseError) as caught:
        await client.get_progress(KEY)
    assert caught.value.field == field_name
    assert "at most 1000 items" in str(caught.value) and "\n" not in str(caught.value)


async def test_lists_at_the_caps_are_accepted(hostile: Serve) -> None:
    jobs = [_algorithm(f"A{i}") for i in range(MAX_ALGORITHMS - 1)]
    jobs.append(_algorithm("LAST", MAX_RECENT_PERFORMANCES))
    client = await hostile(
        progress=_answer(json.dumps({"status": "RUNNING", "jobs": jobs}).encode())
    )
    progress = await client.get_progress(KEY)
    assert len(progress.jobs) == MAX_ALGORITHMS
    assert len(progress.jobs[-1].recent_performances) == MAX_RECENT_PERFORMANCES
