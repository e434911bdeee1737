"""The cheap path for an unchanged answer (issue 16, point 1).

The client digests each raw progress body and parses it only when the digest differs from
the caller's previous one; the poller keeps the digest of the body its snapshot came from.
A byte-identical body is not parsed; any other body is parsed as before, with the body cap
and every error rule applied before the digest is taken.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bot.core.models import TrainingJob
from bot.engine.jobs import ProgressAnswer
from bot.engine.poller import Poller, PollerConfig
from bot.errors import MathFiParseError, MathFiUnavailable, TrainingJobNotFound
from bot.mathfi.client import MathFiClient
from bot.metrics import Metrics
from simulator.faults import Fault
from tests.conftest import Env
from tests.fake_mathfi import PASSWORD, USERNAME, FakeMathFi, raw, status
from tests.scripts import LIFECYCLE, REFERENCE_PROGRESS

KEY = "3b8f5c1e-2d4a-4e6b-9c7d-0a1b2c3d4e5f"
PROGRESS = f"/api/v1/training/{KEY}/progress"
BODY = json.dumps(REFERENCE_PROGRESS).encode()


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeMathFi, MathFiClient]]:
    fake = FakeMathFi()
    fake.bodies[PROGRESS] = REFERENCE_PROGRESS
    async with TestServer(fake.app(), host="127.0.0.1") as server:
        client = MathFiClient(
            str(server.make_url("")),
            username=USERNAME,
            password=SecretStr(PASSWORD),
            max_retries=0,
            max_body=len(BODY) + 10,
        )
        try:
            yield fake, client
        finally:
            await client.close()


async def test_a_byte_identical_body_is_not_parsed_any_other_body_is(
    fake: tuple[FakeMathFi, MathFiClient],
) -> None:
    server, client = fake
    server.queue("GET", PROGRESS, *(raw(body) for body in (BODY, BODY, BODY, BODY + b"\n", BODY)))
    first = await client.get_progress_if_changed(KEY, None)
    assert first.progress == await client.get_progress(KEY)  # parsed as get_progress parses
    again = await client.get_progress_if_changed(KEY, first.digest)
    assert again.progress is None and again.digest == first.digest
    # One byte more: a different body, parsed (into the same progress) with a new digest.
    spaced = await client.get_progress_if_changed(KEY, first.digest)
    assert spaced.digest != first.digest and spaced.progress == first.progress
    # Without a previous digest (after a restart) a body is always parsed.
    fresh = await client.get_progress_if_changed(KEY, None)
    assert fresh.progress == first.progress and fresh.digest == first.digest


async def test_the_cap_and_the_error_rules_come_before_the_digest(
    fake: tuple[FakeMathFi, MathFiClient],
) -> None:
    server, client = fake
    known = (await client.get_progress_if_changed(KEY, None)).digest
    server.queue(
        "GET",
        PROGRESS,
        raw(BODY + b" " * 11),  # over max_body
        raw(b'{"status": "RUNNING", "jobs": ['),
        status(503),
        status(404),
    )
    with pytest.raises(MathFiParseError, match="cap"):
        await client.get_progress_if_changed(KEY, known)
    with pytest.raises(MathFiParseError, match="not JSON"):
        await client.get_progress_if_changed(KEY, known)
    with pytest.raises(MathFiUnavailable):
        await client.get_progress_if_changed(KEY, known)
    with pytest.raises(TrainingJobNotFound):
        await client.get_progress_if_changed(KEY, known)


class Recording:
    """The service's real client, noting for each progress poll whether it was parsed."""

    def __init__(self, client: MathFiClient) -> None:
        self._client = client
        self.parsed: list[bool] = []

    async def get_progress_if_changed(
        self, key: str, previous_digest: bytes | None
    ) -> ProgressAnswer:
        answer = await self._client.get_progress_if_changed(key, previous_digest)
        self.parsed.append(answer.progress is not None)
        return answer

    async def get_training(self, key: str) -> TrainingJob:
        return await self._client.get_training(key)


async def test_the_poller_parses_only_answers_that_changed(env: Env) -> None:
    key = env.sim.script_job([LIFECYCLE[1], LIFECYCLE[2]])
    status_code, _, url = await env.command(f"subscribe {key}")
    assert status_code == 200
    await env.reply(url)
    source = Recording(env.service.mathfi)
    config = PollerConfig(interval=10.0, jitter=0.0, unreachable_after=30.0, resync_every=1e9)
    poller = Poller(env.service.store, source, config=config, metrics=Metrics(), clock=env.clock)

    async def poll(seconds: float = 10.0) -> int:
        env.clock.advance(seconds)
        await poller.tick()
        record = await env.service.store.get_job(key)
        assert record is not None
        return record.version

    await poller.watch(key)
    version = await poll(0.0)  # no digest yet: parsed (the same snapshot as the baseline)
    assert await poll() == version and await poll() == version
    assert source.parsed == [True, False, False]
    env.sim.advance(key)
    assert await poll() == version + 1  # a new body: parsed, diffed, written
    assert await poll() == version + 1
    assert source.parsed[3:] == [True, False]
    # MathFi fails until the job is unreachable; its first answer after that is the very
    # body seen before the outage, yet it is parsed: the recovery is news.
    env.sim.add_fault(Fault(kind="status", status=503, path_prefix=f"/api/v1/training/{key}"))
    while not (await env.service.store.get_job(key)).unreachable:  # type: ignore[union-attr]
        await poll()
    env.sim.clear_faults()
    del source.parsed[:]
    for _ in range(12):  # the backoff has grown: the next poll comes within 80 s
        await poll()
    assert source.parsed[:2] == [True, False]
    kinds = [r.kind for r in await env.service.store.rows_in_state("pending")]
    assert "recovered" in kinds
