"""The request URLs of MathFiClient: built from the base URL parsed once, they are exactly the
URLs a plain string gives (`base_url + path`), for any job key and a base with a path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from yarl import URL

from bot.errors import MathFiRequestError, TrainingJobNotFound
from bot.mathfi.client import MathFiClient, quote_key
from tests.scripts import REFERENCE_PROGRESS

KEYS = ["3b8f5c1e-2d4a", "a..b", "x y", "a/b?c#d", "é", "a%2Fb", ".hidden", ".", ".."]


@given(st.text())
def test_quote_key_is_quote_with_nothing_safe(key: str) -> None:
    assert quote_key(key) == quote(key, safe="")


class Recorder:
    """A MathFi that logs anyone in and records the raw path of every other request."""

    def __init__(self) -> None:
        self.raw_paths: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.answer)
        return app

    async def answer(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/api/login"):
            return web.json_response({"access_token": "t0ken", "expires_in": 3600})
        self.raw_paths.append(request.raw_path)
        if request.raw_path.endswith(f"/{quote_key(KEYS[0])}/progress"):
            return web.json_response(REFERENCE_PROGRESS)
        return web.Response(status=404)


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, TestServer]]:
    recorder = Recorder()
    async with TestServer(recorder.app(), host="127.0.0.1") as server:
        yield recorder, server


@pytest.mark.parametrize("prefix", ["", "/mathfi", "/math fi/"])
async def test_each_request_goes_to_the_url_the_plain_string_names(
    recorder: tuple[Recorder, TestServer], prefix: str
) -> None:
    fake, server = recorder
    base_url = str(server.make_url(prefix))
    async with MathFiClient(base_url, username="u", password=SecretStr("p")) as client:
        assert (await client.get_progress_if_changed(KEYS[0], None)).progress is not None
        for key in KEYS[1:]:
            with pytest.raises(TrainingJobNotFound):
                await client.get_progress(key)
        with pytest.raises(MathFiRequestError):
            await client.get_dataset("d 1")
    expected = [
        URL(base_url.rstrip("/") + f"/api/v1/training/{quote(key, safe='')}/progress").raw_path
        for key in KEYS
    ]
    expected.append(URL(base_url.rstrip("/") + "/api/v1/datasets/d%201").raw_path)
    assert fake.raw_paths == expected
    assert fake.raw_paths[0] == prefix.replace(" ", "%20").rstrip("/") + (
        "/api/v1/training/3b8f5c1e-2d4a/progress"
    )
