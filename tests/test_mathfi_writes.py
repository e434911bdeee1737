"""Requests that change something (start a training, create a dataset, cancel) are never
sent twice: retried only when the failure proves MathFi did not act, else MathFiOutcomeUnknown.

Against the simulator (a POST acted on whose answer is lost) and the small scriptable fake.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bot.errors import MathFiOutcomeUnknown, MathFiUnavailable, Trouble
from bot.mathfi.client import MathFiClient
from simulator import Fault, Simulator, start_in_background
from tests.fake_mathfi import PASSWORD, USERNAME, FakeMathFi, json_body, slow, status

START_ROUTE = ("POST", "/api/v1/training/datasets/{key}")
STARTED = {"trainingJobKey": "job-1", "datasetKey": "ds-1", "status": "PENDING"}
START_PATH = "/api/v1/training/datasets/ds-1"


def _sleeper(sleeps: list[float]) -> Callable[[float], Awaitable[None]]:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    return sleep


@pytest.fixture
async def sim_url() -> AsyncIterator[tuple[Simulator, str]]:
    sim = Simulator()
    runner, url = await start_in_background(sim)
    yield sim, url
    await runner.cleanup()


def _sim_client(url: str, sleeps: list[float], **options: Any) -> MathFiClient:
    return MathFiClient(
        url,
        username="demo@mathfi.ai",
        password=SecretStr("demo-password"),
        backoff_base=0.01,
        sleep=_sleeper(sleeps),
        **options,
    )


async def test_a_start_acted_on_whose_answer_is_lost_is_not_sent_again(
    sim_url: tuple[Simulator, str],
) -> None:
    sim, url = sim_url
    dataset = sim.create_dataset("ready")
    sim.add_fault(Fault("lost", method="POST", path_prefix="/api/v1/training/", count=1))
    sleeps: list[float] = []
    async with _sim_client(url, sleeps) as client:
        with pytest.raises(MathFiOutcomeUnknown) as caught:
            await client.start_training(dataset, scaling_factor=19, performance_threshold=0.8)
    assert sim.stats.requests[START_ROUTE] == 1 and sleeps == []
    err = caught.value
    assert err.public_reason == "outcome unknown" and err.trouble is Trouble.LOST
    assert "check MathFi" in str(err) and "\n" not in str(err)
    assert "demo-password" not in str(err)
    assert err.__cause__ is not None  # the transport error, chained


async def test_a_create_dataset_that_times_out_is_not_sent_again(
    sim_url: tuple[Simulator, str],
) -> None:
    sim, url = sim_url
    sim.add_fault(Fault("latency", seconds=0.5, method="POST", path_prefix="/api/v1/datasets"))
    sleeps: list[float] = []
    async with _sim_client(url, sleeps, timeout=0.2) as client:
        await client.login()
        with pytest.raises(MathFiOutcomeUnknown) as caught:
            await client.create_dataset("slow")
    assert sim.stats.requests[("POST", "/api/v1/datasets")] == 1 and sleeps == []
    assert caught.value.trouble is Trouble.TIMEOUT
    assert "no answer within 0.2 s on POST /api/v1/datasets" in str(caught.value)


@pytest.fixture
async def fake_url() -> AsyncIterator[tuple[FakeMathFi, str]]:
    fake = FakeMathFi()
    async with TestServer(fake.app(), host="127.0.0.1") as server:
        yield fake, str(server.make_url(""))


def _fake_client(url: str, sleeps: list[float], **options: Any) -> MathFiClient:
    options.setdefault("sleep", _sleeper(sleeps))
    return MathFiClient(
        url, username=USERNAME, password=SecretStr(PASSWORD), backoff_base=0.01, **options
    )


@pytest.mark.parametrize("code", [500, 502, 503, 504])
async def test_a_5xx_on_a_post_is_an_unknown_outcome_not_a_retry(
    fake_url: tuple[FakeMathFi, str], code: int
) -> None:
    fake, url = fake_url
    fake.queue("POST", START_PATH, status(code), json_body(STARTED))
    sleeps: list[float] = []
    async with _fake_client(url, sleeps) as client:
        with pytest.raises(MathFiOutcomeUnknown) as caught:
            await client.start_training("ds-1", scaling_factor=19, performance_threshold=0.8)
    assert len(fake.requests_to(START_PATH)) == 1 and sleeps == []
    assert caught.value.status == code and caught.value.public_reason == "outcome unknown"


async def test_a_cancel_that_times_out_is_not_sent_again(fake_url: tuple[FakeMathFi, str]) -> None:
    fake, url = fake_url
    cancel = "/api/v1/training/job-1/cancel"
    fake.queue("PATCH", cancel, slow(0.5, json_body({"status": "CANCELLED"})))
    sleeps: list[float] = []
    async with _fake_client(url, sleeps, timeout=0.2) as client:
        await client.login()
        with pytest.raises(MathFiOutcomeUnknown):
            await client.cancel_training("job-1")
    assert len(fake.requests_to(cancel)) == 1 and sleeps == []


async def test_a_429_on_a_post_is_retried_after_retry_after(
    fake_url: tuple[FakeMathFi, str],
) -> None:
    fake, url = fake_url
    fake.queue("POST", START_PATH, status(429, headers={"Retry-After": "0.4"}), json_body(STARTED))
    sleeps: list[float] = []
    async with _fake_client(url, sleeps) as client:
        started = await client.start_training("ds-1", scaling_factor=19, performance_threshold=0.8)
    assert started.training_job_key == "job-1"
    assert len(fake.requests_to(START_PATH)) == 2 and sleeps == [0.4]


async def test_a_401_on_a_post_is_sent_again_after_a_fresh_login(
    fake_url: tuple[FakeMathFi, str],
) -> None:
    fake, url = fake_url
    async with _fake_client(url, []) as client:
        await client.login()
        fake.revoke_all()
        fake.queue("POST", START_PATH, json_body(STARTED))
        await client.start_training("ds-1", scaling_factor=19, performance_threshold=0.8)
    assert [s.path for s in fake.seen] == ["/api/login", START_PATH, "/api/login", START_PATH]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_post_refused_before_connecting_is_retried_and_acts_once() -> None:
    """Connection refused proves nothing was sent: the POST is tried again once MathFi is
    back (the injected sleep brings it back), and MathFi sees it exactly once."""
    fake = FakeMathFi()
    fake.queue("POST", START_PATH, json_body(STARTED))
    port = _free_port()
    first = TestServer(fake.app(), host="127.0.0.1", port=port)
    await first.start_server()
    servers: list[TestServer] = [first]

    async def sleep_then_restart(seconds: float) -> None:
        sleeps.append(seconds)
        if len(servers) == 1:
            servers.append(TestServer(fake.app(), host="127.0.0.1", port=port))
            await servers[-1].start_server()

    sleeps: list[float] = []
    client = _fake_client(f"http://127.0.0.1:{port}", sleeps, sleep=sleep_then_restart)
    try:
        await client.login()
        await first.close()  # MathFi goes away between the login and the POST
        started = await client.start_training("ds-1", scaling_factor=19, performance_threshold=0.8)
    finally:
        await client.close()
        for server in servers:
            await server.close()
    assert started.training_job_key == "job-1"
    assert len(sleeps) == 1 and len(fake.requests_to(START_PATH)) == 1


async def test_a_post_refused_every_time_is_unavailable_so_nothing_was_done() -> None:
    fake = FakeMathFi()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    sleeps: list[float] = []
    async with _fake_client(str(server.make_url("")), sleeps, max_retries=2) as client:
        await client.login()
        await server.close()
        with pytest.raises(MathFiUnavailable) as caught:
            await client.create_dataset("x")
    assert caught.value.public_reason == "connection refused" and len(sleeps) == 2
    assert "after 3 attempts" in str(caught.value)
    assert fake.requests_to("/api/v1/datasets") == []


async def test_the_simulators_lost_fault_acts_then_loses_the_answer(
    sim_url: tuple[Simulator, str],
) -> None:
    sim, url = sim_url
    sim.add_fault(Fault("lost", method="POST", path_prefix="/api/v1/datasets", count=1))
    async with _sim_client(url, []) as client:
        with pytest.raises(MathFiOutcomeUnknown):
            await client.create_dataset("first")
        made = await client.create_dataset("second")
    assert made.status and sim.stats.requests[("POST", "/api/v1/datasets")] == 2
