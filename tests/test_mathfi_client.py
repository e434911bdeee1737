"""MathFiClient over real HTTP on 127.0.0.1 against the small fake in tests/fake_mathfi.py."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import BaseTestServer, TestServer
from pydantic import SecretStr

from bot.config import Settings
from bot.errors import (
    MathFiAuthError,
    MathFiParseError,
    MathFiRequestError,
    MathFiUnavailable,
    TrainingJobNotFound,
)
from bot.mathfi.auth import renewal_delay
from bot.mathfi.client import MathFiClient
from tests.fake_mathfi import PASSWORD, USERNAME, FakeMathFi, json_body, raw, slow, status
from tests.scripts import REFERENCE_PROGRESS

KEY = "3b8f5c1e-2d4a-4e6b-9c7d-0a1b2c3d4e5f"
PROGRESS = f"/api/v1/training/{KEY}/progress"


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeMathFi:
    fake = FakeMathFi()
    fake.bodies[PROGRESS] = REFERENCE_PROGRESS
    return fake


@pytest.fixture
async def server(fake: FakeMathFi) -> AsyncIterator[BaseTestServer]:
    async with TestServer(fake.app(), host="127.0.0.1") as srv:
        yield srv


@pytest.fixture
def sleeps() -> list[float]:
    return []


MakeClient = Callable[..., MathFiClient]


@pytest.fixture
async def make_client(server: BaseTestServer, sleeps: list[float]) -> AsyncIterator[MakeClient]:
    clients: list[MathFiClient] = []

    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    def make(**overrides: Any) -> MathFiClient:
        options: dict[str, Any] = {
            "username": USERNAME,
            "password": SecretStr(PASSWORD),
            "backoff_base": 0.01,
            "sleep": record_sleep,
        }
        options.update(overrides)
        base_url = options.pop("base_url", str(server.make_url("")))
        clients.append(MathFiClient(base_url, **options))
        return clients[-1]

    yield make
    for client in clients:
        await client.close()


# --- login and tokens ----------------------------------------------------------------


async def test_login_posts_credentials_and_calls_carry_the_bearer_token(
    fake: FakeMathFi, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    with caplog.at_level(logging.INFO, logger="bot.mathfi.client"):
        await client.login()
        await client.get_progress(KEY)
    login, progress = fake.seen
    assert login.path == "/api/login" and login.method == "POST"
    assert login.headers["Content-Type"].startswith("application/json")
    assert login.headers["Accept"] == "application/json"
    assert login.body == (f'{{"username": "{USERNAME}", "password": "{PASSWORD}"}}').encode()
    assert "Authorization" not in login.headers
    assert progress.headers["Authorization"] == f"Bearer {next(iter(fake.tokens))}"
    assert progress.headers["Accept"] == "application/json"
    assert client.logins == 1
    assert f"logged in to MathFi as {USERNAME}, token valid 3600 s" in caplog.messages


async def test_token_is_renewed_margin_seconds_before_it_expires(
    fake: FakeMathFi, make_client: MakeClient
) -> None:
    clock = ManualClock()
    client = make_client(clock=clock, token_margin=300)
    await client.get_progress(KEY)
    clock.now = 3299.0
    await client.get_progress(KEY)
    assert fake.logins == 1
    clock.now = 3301.0
    await client.get_progress(KEY)
    assert fake.logins == 2 and client.logins == 2
    assert [s.path for s in fake.seen][-2:] == ["/api/login", PROGRESS]


async def test_a_one_second_token_is_renewed_at_half_its_life(
    fake: FakeMathFi, make_client: MakeClient
) -> None:
    fake.expires_in = 1
    clock = ManualClock()
    client = make_client(clock=clock, token_margin=300)
    for now in (0.0, 0.2, 0.49):
        clock.now = now
        await client.get_progress(KEY)
    assert fake.logins == 1
    clock.now = 0.51
    await client.get_progress(KEY)
    assert fake.logins == 2


@pytest.mark.parametrize(
    ("expires_in", "margin", "expected"),
    [(3600, 300, 3300), (1, 300, 0.5), (600, 300, 300), (3600, 0, 3600)],
)
def test_renewal_delay(expires_in: float, margin: float, expected: float) -> None:
    assert renewal_delay(expires_in, margin=margin) == expected


async def test_fifty_concurrent_calls_share_one_login(
    fake: FakeMathFi, make_client: MakeClient
) -> None:
    fake.login_delay = 0.05
    client = make_client()
    results = await asyncio.gather(*(client.get_progress(KEY) for _ in range(50)))
    assert len(results) == 50 and all(r.status == "COMPLETED" for r in results)
    assert fake.logins == 1 and client.logins == 1


async def test_revoked_token_means_one_relogin_and_the_calls_succeed(
    fake: FakeMathFi, make_client: MakeClient
) -> None:
    client = make_client()
    await client.get_progress(KEY)
    fake.revoke_all()
    results = await asyncio.gather(*(client.get_progress(KEY) for _ in range(20)))
    assert all(r.status == "COMPLETED" for r in results)
    assert fake.logins == 2 and client.logins == 2


async def test_401_after_a_fresh_login_is_an_auth_error_without_a_login_storm(
    fake: FakeMathFi, make_client: MakeClient, sleeps: list[float]
) -> None:
    fake.accept_tokens = False
    client = make_client()
    with pytest.raises(MathFiAuthError, match="refused a fresh token"):
        await client.get_progress(KEY)
    assert fake.logins == 2
    assert len(fake.requests_to(PROGRESS)) == 2
    assert sleeps == []


@pytest.mark.parametrize("code", [401, 403])
async def test_refused_login_is_an_auth_error_and_not_retried(
    fake: FakeMathFi, make_client: MakeClient, code: int
) -> None:
    fake.login_answers.append(status(code, text="nope"))
    client = make_client()
    with pytest.raises(MathFiAuthError) as caught:
        await client.get_progress(KEY)
    assert str(caught.value) == (
        f"MathFi refused the login for {USERNAME}: check MATHFI_USERNAME and MATHFI_PASSWORD"
    )
    assert fake.logins == 1 and fake.requests_to(PROGRESS) == []


async def test_concurrent_callers_share_one_refused_login(
    fake: FakeMathFi, make_client: MakeClient
) -> None:
    fake.login_delay = 0.05
    fake.login_answers.append(status(401))
    client = make_client()
    results = await asyncio.gather(
        *(client.get_progress(KEY) for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, MathFiAuthError) for r in results)
    assert fake.logins == 1


async def test_wrong_password_is_refused(fake: FakeMathFi, make_client: MakeClient) -> None:
    client = make_client(password=SecretStr("wrong"))
    with pytest.raises(MathFiAuthError):
        await client.login()
    assert fake.logins == 1


async def test_login_is_retried_on_503_and_429(
    fake: FakeMathFi, make_client: MakeClient, sleeps: list[float]
) -> None:
    fake.login_answers.extend([status(503), status(429, headers={"Retry-After": "0.3"})])
    client = make_client()
    await client.get_progress(KEY)
    assert fake.logins == 3 and client.logins == 3
    assert len(sleeps) == 2 and sleeps[1] == 0.3


# --- retries -------------------------------------------------------------------------


async def test_5xx_then_success(
    fake: FakeMathFi, make_client: MakeClient, sleeps: list[float]
) -> None:
    fake.queue("GET", PROGRESS, status(500), status(502), status(503, text="<html>down"))
    client = make_client(backoff_max=30.0)
    random.seed(20)  # tenacity's jitter draws from the random module
    progress = await client.get_progress(KEY)
    assert progress.status == "COMPLETED"
    assert len(fake.requests_to(PROGRESS)) == 4
    # full-jitter exponential: uniform(0, 0.01 * 2**i), the cap doubling each time
    jitter = random.Random(20)
    assert sleeps == pytest.approx([jitter.uniform(0, 0.01 * 2**i) for i in range(3)])


async def test_429_retry_after_is_honoured_and_capped(
    fake: FakeMathFi, make_client: MakeClient, sleeps: list[float]
) -> None:
    fake.queue(
        "GET",
        PROGRESS,
        status(429, headers={"Retry-After": "0.7"}),
        status(429, headers={"Retry-After": "120"}),
    )
    client = make_client(backoff_max=1.5)
    await client.get_progress(KEY)
    assert sleeps == [0.7, 1.5]


async def test_retries_exhausted_is_one_readable_line_without_secrets(
    fake: FakeMathFi, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake.queue("GET", PROGRESS, *[status(503)] * 5)
    client = make_client(max_retries=4)
    with caplog.at_level(logging.DEBUG), pytest.raises(MathFiUnavailable) as caught:
        await client.get_progress(KEY)
    message = str(caught.value)
    assert message == (
        f"MathFi unreachable: 503 Service Unavailable on GET {PROGRESS} after 5 attempts"
    )
    assert caught.value.status == 503
    assert len(fake.requests_to(PROGRESS)) == 5
    (token,) = fake.tokens
    for text in [message, *caplog.messages]:
        assert token not in text and PASSWORD not in text
    assert any(r.levelno == logging.DEBUG and r.message == message for r in caplog.records)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_is_unavailable(
    make_client: MakeClient, sleeps: list[float]
) -> None:
    client = make_client(base_url=f"http://127.0.0.1:{_closed_port()}", max_retries=2)
    with pytest.raises(MathFiUnavailable) as caught:
        await client.get_progress(KEY)
    assert caught.value.status is None
    assert "on POST /api/login after 3 attempts" in str(caught.value)
    assert "\n" not in str(caught.value) and PASSWORD not in str(caught.value)
    assert client.logins == 3 and len(sleeps) == 2


async def test_timeout_is_retried_then_unavailable(
    fake: FakeMathFi, make_client: MakeClient
) -> None:
    fake.queue("GET", PROGRESS, *[slow(0.6, status(200))] * 2)
    client = make_client(timeout=0.2, max_retries=1)
    await client.login()
    started = time.monotonic()
    with pytest.raises(MathFiUnavailable) as caught:
        await client.get_progress(KEY)
    assert time.monotonic() - started < 0.55
    assert str(caught.value) == (
        f"MathFi unreachable: no answer within 0.2 s on GET {PROGRESS} after 2 attempts"
    )
    assert caught.value.status is None


# --- errors that are not retried -----------------------------------------------------


async def test_404_on_a_training_job_is_training_job_not_found(
    fake: FakeMathFi, make_client: MakeClient, sleeps: list[float]
) -> None:
    client = make_client()
    with pytest.raises(TrainingJobNotFound) as caught:
        await client.get_training("no-such-job")
    assert caught.value.key == "no-such-job" and caught.value.status == 404
    assert len(fake.requests_to("/api/v1/training/no-such-job")) == 1 and sleeps == []


@pytest.mark.parametrize("code", [400, 403, 409, 422])
async def test_other_4xx_is_a_request_error_without_retry(
    fake: FakeMathFi, make_client: MakeClient, sleeps: list[float], code: int
) -> None:
    fake.queue("GET", PROGRESS, status(code, text="not json at all"))
    client = make_client()
    with pytest.raises(MathFiRequestError) as caught:
        await client.get_progress(KEY)
    assert type(caught.value) is MathFiRequestError and caught.value.status == code
    assert len(fake.requests_to(PROGRESS)) == 1 and sleeps == []


async def test_404_on_a_dataset_is_a_plain_request_error(make_client: MakeClient) -> None:
    client = make_client()
    with pytest.raises(MathFiRequestError) as caught:
        await client.get_dataset("nope")
    assert type(caught.value) is MathFiRequestError and caught.value.status == 404


async def test_malformed_json_is_a_parse_error(fake: FakeMathFi, make_client: MakeClient) -> None:
    fake.queue("GET", PROGRESS, raw(b'{"status": "RUNNING", "jobs": ['))
    client = make_client()
    with pytest.raises(MathFiParseError, match="not JSON") as caught:
        await client.get_progress(KEY)
    assert caught.value.field is None


async def test_wrong_type_names_the_field(fake: FakeMathFi, make_client: MakeClient) -> None:
    job = {"algorithm": "BSEV01", "status": "RUNNING", "latestPerformance": "high"}
    body = {"status": "RUNNING", "jobs": [job]}
    fake.queue("GET", PROGRESS, json_body(body))
    client = make_client()
    with pytest.raises(MathFiParseError) as caught:
        await client.get_progress(KEY)
    assert caught.value.field == "jobs.0.latestPerformance"
    assert "jobs.0.latestPerformance" in str(caught.value)


# --- caps ----------------------------------------------------------------------------


async def test_max_rps_limits_the_rate(fake: FakeMathFi, make_client: MakeClient) -> None:
    client = make_client(max_rps=20)
    await client.login()
    started = time.monotonic()
    await asyncio.gather(*(client.get_progress(KEY) for _ in range(11)))
    assert time.monotonic() - started >= 0.45
    times = [s.at for s in fake.requests_to(PROGRESS)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 10 and min(gaps) >= 0.03


async def test_max_concurrency_caps_requests_in_flight(
    fake: FakeMathFi, make_client: MakeClient
) -> None:
    fake.queue("GET", PROGRESS, *[slow(0.05, json_body(REFERENCE_PROGRESS))] * 10)
    client = make_client(max_concurrency=3)
    await asyncio.gather(*(client.get_progress(KEY) for _ in range(10)))
    assert fake.max_in_flight == 3


# --- payloads and endpoints ----------------------------------------------------------


async def test_reference_progress_example_parses_exactly(make_client: MakeClient) -> None:
    progress = await make_client().get_progress(KEY)
    assert progress.status == "COMPLETED" and progress.target_performance is None
    assert len(progress.jobs) == 4
    for job, wire in zip(progress.jobs, REFERENCE_PROGRESS["jobs"], strict=True):
        assert job.training_job_key == wire["trainingJobKey"]
        assert job.algorithm == wire["algorithm"]
        assert job.status == wire["status"]
        assert job.latest_performance == wire["latestPerformance"]
        assert job.recent_performances == tuple(wire["recentPerformances"])
    assert [j.algorithm for j in progress.jobs] == ["BSEV01", "BFIF01", "BSIX01", "BSEV02"]
    assert progress.jobs[3].recent_performances == (0.9194, 0.92, 0.92, 0.9197, 0.92)


async def test_unknown_statuses_and_fields_are_tolerated(
    fake: FakeMathFi, make_client: MakeClient
) -> None:
    body = {
        "status": "WARMING_UP",
        "targetPerformance": 0.8,
        "newField": {"x": 1},
        "jobs": [
            {"algorithm": "MSEV01", "status": "PROCESSING", "recentPerformances": None},
            {"algorithm": "BSEV02", "status": "RUNNING", "latestPerformance": 0.5},
        ],
    }
    fake.queue("GET", PROGRESS, json_body(body, code=203))
    progress = await make_client().get_progress(KEY)
    assert progress.status == "WARMING_UP" and progress.target_performance == 0.8
    assert progress.jobs[0].status == "PROCESSING"
    assert progress.jobs[0].recent_performances == ()
    assert progress.jobs[1].recent_performances == ()


async def test_the_other_endpoints(fake: FakeMathFi, make_client: MakeClient) -> None:
    job = {"trainingJobKey": KEY, "datasetKey": "ds-1", "status": "COMPLETED",
           "targetPerformance": 0.85, "achievedPerformance": 0.92, "modelKey": "m-1"}  # fmt: skip
    fake.bodies[f"/api/v1/training/{KEY}"] = job
    fake.queue("PATCH", f"/api/v1/training/{KEY}/cancel", json_body({"status": "CANCELLED"}))
    started = {"trainingJobKey": KEY, "datasetKey": "ds-1", "status": "PENDING"}
    fake.queue("POST", "/api/v1/training/datasets/ds-1", json_body(started, code=201))
    fake.bodies["/api/v1/datasets"] = {"datasets": [{"datasetKey": "ds-1", "status": "COMPLETED"}],
                                      "offset": 20, "limit": 5, "total": 21}  # fmt: skip
    created = {"datasetKey": "ds-2", "status": "PENDING", "numberOfBuckets": 10}
    fake.queue("POST", "/api/v1/datasets", json_body(created, code=201))
    fake.bodies["/api/v1/datasets/ds-2"] = {"datasetKey": "ds-2", "status": "PROCESSING"}
    client = make_client()

    assert (await client.get_training(KEY)).model_key == "m-1"
    assert (await client.cancel_training(KEY)).status == "CANCELLED"
    start = await client.start_training("ds-1", scaling_factor=19, performance_threshold=0.85)
    assert start.training_job_key == KEY and start.status == "PENDING"
    page = await client.list_datasets(offset=20, limit=5)
    assert page.total == 21 and page.datasets[0].dataset_key == "ds-1"
    made = await client.create_dataset("OilPlantV22", number_of_buckets=10)
    assert made.dataset_key == "ds-2" and made.number_of_buckets == 10
    assert (await client.get_dataset("ds-2")).status == "PROCESSING"

    seen = {(s.method, s.path): s for s in fake.seen}
    assert seen[("POST", "/api/v1/training/datasets/ds-1")].body == (
        b'{"scalingFactor": 19, "performanceThreshold": 0.85}'
    )
    assert seen[("GET", "/api/v1/datasets")].query == {"offset": "20", "limit": "5"}
    made_request = seen[("POST", "/api/v1/datasets")]
    assert made_request.body == b'{"datasetName": "OilPlantV22", "numberOfBuckets": 10}'
    assert made_request.headers["Content-Type"].startswith("application/json")


async def test_a_key_cannot_change_the_route(fake: FakeMathFi, make_client: MakeClient) -> None:
    with pytest.raises(TrainingJobNotFound):
        await make_client().get_progress("../datasets")
    assert fake.seen[-1].path == "/api/v1/training/../datasets/progress"
    assert fake.requests_to("/api/v1/datasets") == []


async def test_from_settings_and_owned_session(fake: FakeMathFi, server: BaseTestServer) -> None:
    settings = Settings(
        mathfi_base_url=str(server.make_url("/")),
        mathfi_username=USERNAME,
        mathfi_password=SecretStr(PASSWORD),
        slack_bot_token=SecretStr("xoxb-test"),
        slack_signing_secret=SecretStr("signing"),
    )
    async with MathFiClient.from_settings(settings) as client:
        assert (await client.get_progress(KEY)).status == "COMPLETED"
    assert client.logins == 1


async def test_a_refused_login_is_not_repeated_until_a_cooldown_has_passed(
    fake: FakeMathFi, make_client: MakeClient
) -> None:
    clock = ManualClock()
    fake.login_answers.extend([status(401), status(401)])
    client = make_client(clock=clock)
    for _ in range(5):  # every watched job asking: one login, not five
        with pytest.raises(MathFiAuthError):
            await client.get_progress(KEY)
    assert fake.logins == 1
    clock.now += 31
    with pytest.raises(MathFiAuthError):
        await client.get_progress(KEY)
    assert fake.logins == 2
    clock.now += 31  # the cooldown doubled to 60 s
    with pytest.raises(MathFiAuthError):
        await client.get_progress(KEY)
    assert fake.logins == 2
    clock.now += 30
    await client.get_progress(KEY)  # the credentials were fixed: a login goes through
    assert fake.logins == 3
