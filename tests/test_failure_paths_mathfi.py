"""MathFi's answers that no other test gives (issue #20), from the simulator's faults: a
status code outside the standard ones (a gateway's 520, an nginx 499) and a `Retry-After`
given as an HTTP date. The client must word them without a reason phrase it does not
have, and back off on its own when it cannot read the date. And, from the client tests'
small fake, a compressed answer that only reading shows to be over MATHFI_MAX_BODY."""

from __future__ import annotations

import gzip
import json
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bot.errors import MathFiParseError, MathFiRequestError, MathFiUnavailable
from bot.mathfi.client import MathFiClient
from simulator.faults import Fault
from tests.conftest import Env
from tests.fake_mathfi import PASSWORD, USERNAME, Answer, FakeMathFi
from tests.scripts import REFERENCE_PROGRESS
from tests.test_commands import RUNNING, answer, nothing_created


def progress(key: str) -> str:
    return f"/api/v1/training/{key}/progress"


async def test_a_gateways_520_is_mathfi_unreachable_in_words_and_in_the_log(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    key = env.sim.script_job(RUNNING)
    env.sim.add_fault(Fault(kind="status", status=520, path_prefix=progress(key)))
    with caplog.at_level(logging.DEBUG, logger="bot.mathfi.client"):
        reply = await answer(env, f"subscribe {key}")
    assert "MathFi cannot be reached" in reply["text"]
    await nothing_created(env, key)
    given_up = f"MathFi unreachable: 520 on GET {progress(key)} after 2 attempts"
    assert given_up in caplog.messages  # no reason phrase: 520 has none
    with pytest.raises(MathFiUnavailable) as caught:
        await env.service.mathfi.get_progress(key)
    assert (str(caught.value), caught.value.public_reason) == (given_up, "HTTP 520")


async def test_a_nonstandard_4xx_is_a_refusal_named_by_its_number(env: Env) -> None:
    key = env.sim.script_job(RUNNING)
    env.sim.add_fault(Fault(kind="status", status=499, path_prefix=progress(key)))
    with pytest.raises(MathFiRequestError) as caught:
        await env.service.mathfi.get_progress(key)
    assert str(caught.value) == f"MathFi rejected GET {progress(key)}: 499"
    assert caught.value.status == 499
    assert env.sim.stats.requests[("GET", "/api/v1/training/{key}/progress")] == 1  # not retried


async def test_a_retry_after_given_as_a_date_is_backed_off_on_our_own(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    key = env.sim.script_job(RUNNING)
    env.sim.add_fault(
        Fault(
            kind="status",
            status=429,
            retry_after="Wed, 21 Oct 2026 07:28:00 GMT",  # RFC 9110 allows it; we cannot wait
            count=1,
            path_prefix=progress(key),
        )
    )
    with caplog.at_level(logging.DEBUG, logger="bot.mathfi.client"):
        reply = await answer(env, f"subscribe {key}")
    assert "Now watching" in reply["text"]
    assert f"MathFi answered GET {progress(key)} with 429" in caplog.messages
    assert env.sim.stats.requests[("GET", "/api/v1/training/{key}/progress")] == 2


def gzipped(data: bytes) -> Answer:
    """An answer compressed on the wire (`Content-Encoding: gzip`): its declared length is
    the compressed one, so only reading it shows how large it is."""

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=gzip.compress(data),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    return answer


async def test_a_compressed_answer_that_inflates_past_the_cap_is_stopped_while_read() -> None:
    key = "3b8f5c1e-2d4a-4e6b-9c7d-0a1b2c3d4e5f"
    path = progress(key)
    body = json.dumps(REFERENCE_PROGRESS).encode()
    fake = FakeMathFi()
    fake.queue("GET", path, gzipped(body), gzipped(body + b" " * 300_000))
    async with TestServer(fake.app(), host="127.0.0.1") as server:
        client = MathFiClient(
            str(server.make_url("")),
            username=USERNAME,
            password=SecretStr(PASSWORD),
            max_retries=0,
            max_body=200_000,
        )
        try:
            assert (await client.get_progress(key)).status == "COMPLETED"  # under the cap
            with pytest.raises(MathFiParseError) as caught:
                await client.get_progress(key)
        finally:
            await client.close()
    assert str(caught.value) == (
        f"MathFi answered GET {path} with a body over the 200000-byte cap "
        "(MATHFI_MAX_BODY); reading stopped"
    )
