"""The MathFi simulator over real HTTP on 127.0.0.1, driven by a manual clock."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from simulator import Fault, Simulator, SimulatorError, start_in_background
from simulator.curves import FAMILIES, Curve, draw_curve
from simulator.training import ALGORITHMS, Plan, Rules, TrainingRun, plan_job

CREDENTIALS = {"username": "demo@mathfi.ai", "password": "demo-password"}
TERMINAL = {"COMPLETED", "NOT_COMPLETED", "TIMED_OUT", "FAILED", "CANCELLED"}
TRAIN = {"scalingFactor": 19, "performanceThreshold": 0.8}
CSV = {"Content-Type": "text/csv"}


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Api:
    sim: Simulator
    clock: ManualClock
    base: str
    session: aiohttp.ClientSession
    token: str | None = None

    async def raw(
        self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        sent = dict(headers or {})
        if self.token is not None:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        url = path if path.startswith("http") else self.base + path
        async with self.session.request(method, url, json=body, headers=sent) as resp:
            return resp.status, await resp.text(), resp

    async def call(self, method: str, path: str, *, body: Any = None, expect: int = 200) -> Any:
        status, text, _ = await self.raw(method, path, body=body)
        assert status == expect, text
        return json.loads(text) if text else None

    async def login(self) -> str:
        answer = await self.call("POST", "/api/login", body=CREDENTIALS)
        self.token = answer["access_token"]
        return str(self.token)

    async def progress(self, key: str) -> Any:
        return await self.call("GET", f"/api/v1/training/{key}/progress")

    async def training(self, key: str) -> Any:
        return await self.call("GET", f"/api/v1/training/{key}")


MakeApi = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api() -> AsyncIterator[MakeApi]:
    runners = []
    session = aiohttp.ClientSession()

    async def factory(**kwargs: Any) -> Api:
        clock = ManualClock()
        kwargs.setdefault("token_lifetime", 10**9)  # tests that advance hours keep their token
        sim = Simulator(clock=clock, **kwargs)
        runner, base = await start_in_background(sim)
        runners.append(runner)
        return Api(sim, clock, base, session)

    yield factory
    await session.close()
    for runner in runners:
        await runner.cleanup()


async def logged_in(make_api: MakeApi, **kwargs: Any) -> Api:
    api = await make_api(**kwargs)
    await api.login()
    return api


# --- auth -------------------------------------------------------------------------------


async def test_login_answers_a_bearer_token_and_refuses_bad_credentials(make_api: MakeApi) -> None:
    api = await make_api(token_lifetime=1)
    answer = await api.call("POST", "/api/login", body=CREDENTIALS)
    assert answer["token_type"] == "Bearer"
    assert answer["expires_in"] == 1
    assert answer["username"] == "demo@mathfi.ai"
    assert answer["access_token"].count(".") == 2
    wrong = await api.call("POST", "/api/login", body=CREDENTIALS | {"password": "x"}, expect=401)
    assert wrong["message"]
    await api.call("POST", "/api/login", body={"username": "who@x.io", "password": "p"}, expect=401)
    await api.call("POST", "/api/login", body={"username": "demo@mathfi.ai"}, expect=400)
    status, _, _ = await api.raw("POST", "/api/login", headers={"Content-Type": "text/plain"})
    assert status == 400
    assert api.sim.stats.logins == 1


async def test_missing_unknown_expired_and_revoked_tokens_answer_401(make_api: MakeApi) -> None:
    api = await make_api(token_lifetime=1)
    missing = await api.call("GET", "/api/v1/datasets", expect=401)
    assert "missing" in missing["message"]
    api.token = "not-a-token"
    await api.call("GET", "/api/v1/datasets", expect=401)
    await api.login()
    await api.call("GET", "/api/v1/datasets")
    api.clock.advance(0.9)
    await api.call("GET", "/api/v1/datasets")
    api.clock.advance(0.2)
    expired = await api.call("GET", "/api/v1/datasets", expect=401)
    assert "expired" in expired["message"]
    await api.login()
    await api.call("GET", "/api/v1/datasets")
    api.sim.revoke_tokens()
    await api.call("GET", "/api/v1/datasets", expect=401)


# --- datasets ---------------------------------------------------------------------------


async def test_dataset_create_get_upload_then_processing_then_completed(make_api: MakeApi) -> None:
    api = await logged_in(make_api, pending_seconds=5)
    created = await api.call("POST", "/api/v1/datasets", body={"datasetName": "oilplantv4"})
    key = created["datasetKey"]
    assert created["status"] == "PENDING"
    assert created["numberOfBuckets"] == 20
    assert created["datasetCreationProgressUrl"] == f"{api.base}/api/v1/datasets/{key}"
    upload = created["datasetUploadInfo"]
    assert upload["extraHeaders"] == "X-Goog-Content-Length-Range:10,534773760"
    got = await api.call("GET", f"/api/v1/datasets/{key}")
    assert (got["datasetName"], got["status"]) == ("oilplantv4", "PENDING")
    assert got["createdOn"].endswith("Z")
    await api.call("POST", f"/api/v1/training/datasets/{key}", body=TRAIN, expect=409)

    csv = b"ID,Feature0,Target\n1,5,N\n2,7,P\n"
    status, _, _ = await api.raw("PUT", upload["uploadUrl"], body={"not": "csv"})
    assert status == 400
    async with api.session.put(upload["uploadUrl"], data=csv, headers=CSV) as resp:
        assert resp.status == 200
    assert (await api.call("GET", f"/api/v1/datasets/{key}"))["status"] == "PROCESSING"
    await api.call("POST", f"/api/v1/training/datasets/{key}", body=TRAIN, expect=409)
    api.clock.advance(5)
    assert (await api.call("GET", f"/api/v1/datasets/{key}"))["status"] == "COMPLETED"
    async with api.session.put(upload["uploadUrl"], data=csv, headers=CSV) as resp:
        assert resp.status == 409
    await api.call("POST", f"/api/v1/training/datasets/{key}", body=TRAIN)


async def test_an_upload_without_data_rows_ends_failed(make_api: MakeApi) -> None:
    api = await logged_in(make_api, pending_seconds=1)
    created = await api.call("POST", "/api/v1/datasets", body={"datasetName": "headeronly"})
    url = created["datasetUploadInfo"]["uploadUrl"]
    async with api.session.put(url, data=b"ID,Target\n", headers=CSV) as resp:
        assert resp.status == 200
    api.clock.advance(1)
    got = await api.call("GET", f"/api/v1/datasets/{created['datasetKey']}")
    assert got["status"] == "FAILED"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"datasetName": "ab"},
        {"datasetName": "x" * 31},
        {"datasetName": "fine", "numberOfBuckets": 3},
        {"datasetName": "fine", "numberOfBuckets": 1001},
        {"datasetName": "fine", "numberOfBuckets": True},
        {"datasetName": "fine", "description": "no"},
    ],
)
async def test_invalid_dataset_bodies_answer_400(make_api: MakeApi, body: dict[str, Any]) -> None:
    api = await logged_in(make_api)
    answer = await api.call("POST", "/api/v1/datasets", body=body, expect=400)
    assert answer["message"]


async def test_dataset_list_pages_newest_first_and_duplicates_conflict(make_api: MakeApi) -> None:
    api = await logged_in(make_api)
    for name in ("first", "second", "third"):
        api.sim.create_dataset(name)
    waiting = api.sim.create_dataset("fourth", ready=False)
    await api.call("POST", "/api/v1/datasets", body={"datasetName": "first"}, expect=409)
    page = await api.call("GET", "/api/v1/datasets?offset=0&limit=2")
    assert [d["datasetName"] for d in page["datasets"]] == ["fourth", "third"]
    assert (page["offset"], page["limit"], page["total"]) == (0, 2, 4)
    rest = await api.call("GET", "/api/v1/datasets?offset=2&limit=10")
    assert [d["datasetName"] for d in rest["datasets"]] == ["second", "first"]
    pending = await api.call("GET", "/api/v1/datasets?state=PENDING")
    assert [d["datasetKey"] for d in pending["datasets"]] == [waiting]
    await api.call("GET", "/api/v1/datasets?limit=0", expect=400)
    await api.call("GET", "/api/v1/datasets?offset=x", expect=400)
    await api.call("GET", "/api/v1/datasets/no-such-key", expect=404)


@pytest.mark.parametrize("status", ["PENDING", "PROCESSING", "COMPLETED", "FAILED"])
async def test_a_dataset_held_in_any_status_stays_there_and_only_completed_trains(
    make_api: MakeApi, status: str
) -> None:
    api = await logged_in(make_api)
    key = api.sim.create_dataset(f"held-{status.lower()}", status=status)
    api.clock.advance(3600)
    got = await api.call("GET", f"/api/v1/datasets/{key}")
    assert (got["datasetKey"], got["status"]) == (key, status)
    listed = await api.call("GET", f"/api/v1/datasets?state={status}")
    assert [d["datasetKey"] for d in listed["datasets"]] == [key]
    expect = 200 if status == "COMPLETED" else 409
    answer = await api.call("POST", f"/api/v1/training/datasets/{key}", body=TRAIN, expect=expect)
    if expect == 409:
        assert status in answer["message"] and "COMPLETED" in answer["message"]
    else:
        assert answer["datasetKey"] == key
    with pytest.raises(SimulatorError, match="status must be one of"):
        api.sim.create_dataset("bad-status", status="READY")


async def test_sim_route_creates_datasets_and_the_list_pages_newest_first_by_date(
    make_api: MakeApi,
) -> None:
    api = await logged_in(make_api)
    dates = ["2025-10-02T18:09:48Z", "2025-10-24T08:35:36Z", "2025-09-01T00:00:00Z"]
    for n, (date, status) in enumerate(
        zip(dates, ["COMPLETED", "FAILED", "PROCESSING"], strict=True)
    ):
        body = {"name": f"oilplantv{n}", "status": status, "createdOn": date}
        made = await api.call("POST", "/_sim/datasets", body=body)
        assert (made["datasetName"], made["status"], made["createdOn"]) == (
            f"oilplantv{n}", status, date,
        )  # fmt: skip
    api.sim.create_dataset("same-day", created_on=dates[1])  # same date: the later one first
    await api.call("POST", "/_sim/datasets", body={"name": 3}, expect=400)
    await api.call("POST", "/_sim/datasets", body={"name": "x", "status": "NEW"}, expect=400)
    seen: list[str] = []
    for offset in range(0, 6, 2):
        page = await api.call("GET", f"/api/v1/datasets?offset={offset}&limit=2")
        assert (page["offset"], page["limit"], page["total"]) == (offset, 2, 4)
        seen += [d["datasetName"] for d in page["datasets"]]
    assert seen == ["same-day", "oilplantv1", "oilplantv0", "oilplantv2"]


# --- training ---------------------------------------------------------------------------


async def test_start_training_validates_and_answers_a_progress_url(make_api: MakeApi) -> None:
    api = await logged_in(make_api)
    dataset = api.sim.create_dataset("ready")
    path = f"/api/v1/training/datasets/{dataset}"
    for bad in (
        {},
        {"scalingFactor": 19},
        TRAIN | {"performanceThreshold": 1.5},
        TRAIN | {"scalingFactor": 500},
        TRAIN | {"scalingFactor": 1.5},
    ):
        await api.call("POST", path, body=bad, expect=400)
    await api.call("POST", "/api/v1/training/datasets/unknown", body=TRAIN, expect=404)
    started = await api.call("POST", path, body=TRAIN)
    assert (started["datasetKey"], started["status"]) == (dataset, "PENDING")
    progress = await api.call("GET", started["trainingJobProgressUrl"])
    assert progress["status"] == "PENDING"
    assert [j["algorithm"] for j in progress["jobs"]] == ["BSEV01", "BSEV02", "BSIX01", "BFIF01"]
    assert all(j["status"] == "PENDING" and j["recentPerformances"] == [] for j in progress["jobs"])
    await api.call("GET", "/api/v1/training/unknown", expect=404)
    await api.call("GET", "/api/v1/training/unknown/progress", expect=404)


def check_progress(progress: dict[str, Any]) -> None:
    """Invariants every realistic progress payload keeps."""
    for job in progress["jobs"]:
        recent = job["recentPerformances"]
        assert len(recent) <= 5
        assert all(0.0 <= value <= 1.0 and round(value, 4) == value for value in recent)
        if recent:
            assert job["latestPerformance"] == recent[-1]


async def run_to_end(api: Api, key: str, *, step: float, limit: float) -> list[dict[str, Any]]:
    """Poll every `step` clock seconds until terminal; returns every payload seen."""
    seen = [await api.progress(key)]
    waited = 0.0
    while seen[-1]["status"] not in TERMINAL:
        assert waited < limit, f"still {seen[-1]['status']} after {limit} s"
        api.clock.advance(step)
        waited += step
        seen.append(await api.progress(key))
        check_progress(seen[-1])
    return seen


CASES = [
    ("natural COMPLETED", {}, {"performanceThreshold": 0.6}, None, "COMPLETED"),
    ("natural NOT_COMPLETED", {}, {"performanceThreshold": 0.99}, None, "NOT_COMPLETED"),
    ("natural TIMED_OUT", {"time_limit": 60}, {"performanceThreshold": 0.99}, None, "TIMED_OUT"),
    ("natural FAILED", {"failure_rate": 1.0}, {}, None, "FAILED"),
    ("forced COMPLETED", {}, {"performanceThreshold": 0.97}, "COMPLETED", "COMPLETED"),
    ("forced NOT_COMPLETED", {}, {"performanceThreshold": 0.5}, "NOT_COMPLETED", "NOT_COMPLETED"),
    ("forced TIMED_OUT", {}, {}, "TIMED_OUT", "TIMED_OUT"),
    ("forced FAILED", {}, {}, "FAILED", "FAILED"),
]


@pytest.mark.parametrize(
    ("sim_args", "train", "fate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_each_terminal_status_is_reached_by_advancing_the_clock(
    make_api: MakeApi,
    sim_args: dict[str, Any],
    train: dict[str, Any],
    fate: str | None,
    expected: str,
) -> None:
    api = await logged_in(make_api, **sim_args)
    body = TRAIN | train
    dataset = api.sim.create_dataset("d")
    key = api.sim.start_training(
        dataset,
        scaling_factor=body["scalingFactor"],
        performance_threshold=body["performanceThreshold"],
        fate=fate,
    )
    # Forced fates happen within a few simulated minutes; natural ones within the hour.
    seen = await run_to_end(api, key, step=30, limit=600 if fate else 3600)
    statuses = [p["status"] for p in seen]
    assert statuses[0] == "PENDING" and "RUNNING" in statuses and statuses[-1] == expected
    final, summary = seen[-1], await api.training(key)
    assert summary["status"] == expected
    assert (
        final["targetPerformance"] == summary["targetPerformance"] == body["performanceThreshold"]
    )
    by_status = sorted(j["status"] for j in final["jobs"])
    if expected == "COMPLETED":
        winner = next(j for j in final["jobs"] if j["status"] == "COMPLETED")
        assert by_status == ["COMPLETED", "NOT_COMPLETED", "NOT_COMPLETED", "NOT_COMPLETED"]
        assert winner["latestPerformance"] >= body["performanceThreshold"]
        assert summary["achievedPerformance"] == winner["latestPerformance"]
        assert summary["modelKey"] and summary["trainingPerformance"] and summary["testPerformance"]
    else:
        assert "COMPLETED" not in by_status and "RUNNING" not in by_status
        assert summary["modelKey"] is None and "trainingPerformance" not in summary
    if expected == "NOT_COMPLETED":
        assert by_status == ["NOT_COMPLETED"] * 4
    if expected == "TIMED_OUT" and fate is None:
        assert (len(seen) - 1) * 30 >= 60
    api.clock.advance(600)
    assert await api.progress(key) == final


async def test_speed_scales_simulated_time(make_api: MakeApi) -> None:
    api = await logged_in(make_api, speed=100)
    key = api.sim.start_training(api.sim.create_dataset("fast"), fate="COMPLETED")
    api.clock.advance(6)  # 600 simulated seconds
    assert (await api.progress(key))["status"] == "COMPLETED"


async def test_cancel_from_pending_or_running_and_409_once_terminal(make_api: MakeApi) -> None:
    api = await logged_in(make_api)
    dataset = api.sim.create_dataset("d")
    pending = api.sim.start_training(dataset)
    cancelled = await api.call("PATCH", f"/api/v1/training/{pending}/cancel")
    assert cancelled["status"] == "CANCELLED"
    assert {j["status"] for j in cancelled["jobs"]} == {"CANCELLED"}
    await api.call("PATCH", f"/api/v1/training/{pending}/cancel", expect=409)

    running = api.sim.start_training(dataset, fate="NOT_COMPLETED")
    api.clock.advance(60)
    assert (await api.progress(running))["status"] == "RUNNING"
    cancelled = await api.call("PATCH", f"/api/v1/training/{running}/cancel")
    assert cancelled["status"] == "CANCELLED"
    assert all(len(j["recentPerformances"]) == 5 for j in cancelled["jobs"])
    api.clock.advance(3600)
    assert await api.progress(running) == cancelled
    assert (await api.training(running))["status"] == "CANCELLED"

    done = api.sim.start_training(dataset, fate="FAILED")
    api.clock.advance(600)
    refused = await api.call("PATCH", f"/api/v1/training/{done}/cancel", expect=409)
    assert "FAILED" in refused["message"]
    await api.call("PATCH", "/api/v1/training/unknown/cancel", expect=404)


async def test_a_lost_cancel_answer_still_cancels_and_a_second_cancel_is_409(
    make_api: MakeApi,
) -> None:
    api = await logged_in(make_api)
    job = api.sim.start_training(api.sim.create_dataset("d"))
    api.sim.add_fault(Fault("lost", method="PATCH", path_prefix="/api/v1/training/", count=1))
    with pytest.raises(aiohttp.ClientError):
        await api.raw("PATCH", f"/api/v1/training/{job}/cancel")
    assert (await api.training(job))["status"] == "CANCELLED"
    refused = await api.call("PATCH", f"/api/v1/training/{job}/cancel", expect=409)
    assert "CANCELLED" in refused["message"]


async def test_same_seed_and_clock_give_identical_payloads(make_api: MakeApi) -> None:
    async def trace(seed: int, *, every: int) -> list[Any]:
        api = await logged_in(make_api, seed=seed, failure_rate=0.3)
        dataset = api.sim.create_dataset("d")
        keys = [api.sim.start_training(dataset) for _ in range(3)]
        payloads: list[Any] = []
        for elapsed in range(every, 901, every):
            api.clock.advance(every)
            for k in keys:
                progress = await api.progress(k)
                if elapsed % 300 == 0:  # compare only what every trace sees
                    payloads += [progress, await api.training(k)]
        return payloads

    often = await trace(7, every=10)
    assert often == await trace(7, every=10)
    assert often == await trace(7, every=300)  # how often a job is polled changes nothing
    assert often != await trace(8, every=10)


# --- scripted jobs ------------------------------------------------------------------------

SCRIPT: list[dict[str, Any]] = [
    {"status": "PENDING", "jobs": []},
    {"status": "RUNNING", "targetPerformance": 0.9, "jobs": [{"algorithm": "X", "status": "?"}]},
    {"status": "COMPLETED", "jobs": [{"algorithm": "X", "latestPerformance": "0.9"}]},
]


async def test_scripted_job_replays_payloads_verbatim_and_advances(make_api: MakeApi) -> None:
    api = await logged_in(make_api)
    key = api.sim.script_job(SCRIPT, training={"modelKey": "m-1", "extra": [1]})
    assert await api.progress(key) == SCRIPT[0]
    summary = await api.training(key)
    assert summary["trainingJobKey"] == key and summary["status"] == "PENDING"
    assert (summary["modelKey"], summary["extra"]) == ("m-1", [1])
    assert api.sim.advance(key) == 1
    assert await api.progress(key) == SCRIPT[1]
    assert (await api.training(key))["targetPerformance"] == 0.9
    assert api.sim.advance(key, steps=5) == 2
    assert await api.progress(key) == SCRIPT[2]
    await api.call("PATCH", f"/api/v1/training/{key}/cancel", expect=409)
    own = api.sim.script_job([{"status": "RUNNING"}], key="my-key")
    assert own == "my-key"
    assert (await api.call("PATCH", "/api/v1/training/my-key/cancel"))["status"] == "CANCELLED"
    with pytest.raises(SimulatorError):
        api.sim.advance("unknown")
    with pytest.raises(SimulatorError):
        api.sim.script_job([])


# --- faults -------------------------------------------------------------------------------


async def test_status_fault_with_retry_after_body_and_count(make_api: MakeApi) -> None:
    api = await logged_in(make_api)
    api.sim.add_fault(
        Fault(
            "status",
            status=429,
            retry_after=2.0,
            body={"message": "slow"},
            path_prefix="/api/v1/datasets",
            count=2,
        )
    )
    for _ in range(2):
        status, text, resp = await api.raw("GET", "/api/v1/datasets")
        assert (status, json.loads(text), resp.headers["Retry-After"]) == (
            429,
            {"message": "slow"},
            "2",
        )
    await api.call("GET", "/api/v1/datasets")
    api.sim.add_fault(Fault("status", status=503))
    status, text, resp = await api.raw("GET", "/api/v1/datasets")
    assert (status, text, "Retry-After" in resp.headers) == (503, "", False)


async def test_latency_fault_delays_then_answers_normally(make_api: MakeApi) -> None:
    api = await logged_in(make_api)
    api.sim.add_fault(Fault("latency", seconds=0.2, count=1))
    started = time.perf_counter()
    await api.call("GET", "/api/v1/datasets")
    assert time.perf_counter() - started >= 0.2
    started = time.perf_counter()
    await api.call("GET", "/api/v1/datasets")
    assert time.perf_counter() - started < 0.2


async def test_malformed_and_body_faults(make_api: MakeApi) -> None:
    api = await logged_in(make_api)
    key = api.sim.start_training(api.sim.create_dataset("d"))
    path = f"/api/v1/training/{key}/progress"
    api.sim.add_fault(Fault("malformed", path_prefix=path, count=1))
    status, text, _ = await api.raw("GET", path)
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(text)
    weird = {"status": "EXPLODED", "jobs": [{"latestPerformance": math.nan}] * 3}
    api.sim.add_fault(Fault("body", body=weird, path_prefix=path, count=1))
    status, text, _ = await api.raw("GET", path)
    assert status == 200 and '"latestPerformance": NaN' in text and "EXPLODED" in text
    api.sim.add_fault(Fault("body", body='{"status": 1}', path_prefix=path, count=1))
    assert (await api.raw("GET", path))[1] == '{"status": 1}'
    assert (await api.progress(key))["status"] == "PENDING"


async def test_drop_fault_closes_the_connection_without_an_answer(make_api: MakeApi) -> None:
    api = await logged_in(make_api)
    api.sim.add_fault(Fault("drop", path_prefix="/api/v1/datasets", method="GET"))
    with pytest.raises(aiohttp.ClientError):
        await api.raw("GET", "/api/v1/datasets")
    await api.call("POST", "/api/v1/datasets", body={"datasetName": "other method"})
    api.sim.clear_faults()
    await api.call("GET", "/api/v1/datasets")


async def test_faults_match_path_and_method_first_match_wins(make_api: MakeApi) -> None:
    api = await logged_in(make_api)
    key = api.sim.start_training(api.sim.create_dataset("d"))
    api.sim.add_fault(
        Fault("status", status=502, path_prefix=f"/api/v1/training/{key}", method="patch")
    )
    api.sim.add_fault(Fault("status", status=500, path_prefix="/api/v1/training/"))
    api.sim.add_fault(Fault("status", status=504))
    assert (await api.raw("PATCH", f"/api/v1/training/{key}/cancel"))[0] == 502
    assert (await api.raw("GET", f"/api/v1/training/{key}"))[0] == 500
    assert (await api.raw("GET", "/api/v1/datasets"))[0] == 504
    assert (await api.raw("GET", "/_sim/stats"))[0] == 200  # control routes are never faulted


def test_fault_validation() -> None:
    with pytest.raises(ValueError):
        Fault("explode")
    with pytest.raises(ValueError):
        Fault("status", status=1000)
    with pytest.raises(ValueError):
        Fault("status", count=0)
    with pytest.raises(ValueError):
        Fault.from_json({"kind": "status", "status": "500"})
    with pytest.raises(ValueError):
        Fault.from_json({"kind": "status", "colour": "red"})
    assert Fault.from_json({"kind": "drop", "count": 1}) == Fault("drop", count=1)


# --- /_sim control routes -------------------------------------------------------------------


async def test_sim_routes_drive_a_simulator_in_another_process(make_api: MakeApi) -> None:
    api = await logged_in(make_api)
    fault = {"kind": "status", "status": 503, "path_prefix": "/api/v1/datasets", "count": 1}
    added = await api.call("POST", "/_sim/faults", body=fault)
    assert added["faults"][0]["status"] == 503
    await api.call("GET", "/api/v1/datasets", expect=503)
    await api.call("POST", "/_sim/faults", body={"kind": "status", "path_prefix": "/api/v1"})
    await api.call("GET", "/api/v1/datasets", expect=500)
    await api.call("DELETE", "/_sim/faults")
    await api.call("GET", "/api/v1/datasets")
    await api.call("POST", "/_sim/faults", body={"kind": "nope"}, expect=400)

    job = await api.call("POST", "/_sim/jobs", body={"fate": "COMPLETED"})
    await api.call("POST", "/_sim/jobs", body={"fate": "WHATEVER"}, expect=400)
    api.clock.advance(600)
    assert (await api.progress(job["key"]))["status"] == "COMPLETED"
    dataset = api.sim.create_dataset("mine")
    mine = await api.call(
        "POST", "/_sim/jobs", body={"dataset_key": dataset, "performance_threshold": 0.7}
    )
    assert (await api.training(mine["key"]))["datasetKey"] == dataset

    scripted = await api.call("POST", "/_sim/script", body={"payloads": SCRIPT, "training": {}})
    assert await api.progress(scripted["key"]) == SCRIPT[0]
    moved = await api.call("POST", f"/_sim/jobs/{scripted['key']}/advance")
    assert moved == {"key": scripted["key"], "index": 1}
    moved = await api.call("POST", f"/_sim/jobs/{scripted['key']}/advance", body={"steps": 1})
    assert moved["index"] == 2 and await api.progress(scripted["key"]) == SCRIPT[2]
    await api.call("POST", "/_sim/jobs/unknown/advance", expect=404)
    await api.call("POST", "/_sim/script", body={"payloads": "no"}, expect=400)

    await api.call("POST", "/_sim/revoke-tokens")
    await api.call("GET", "/api/v1/datasets", expect=401)
    stats = await api.call("GET", "/_sim/stats")
    assert stats["logins"] == 1
    assert stats["progress_polls"] == 3
    assert stats["requests"]["GET /api/v1/training/{key}/progress"] == 3
    assert stats["requests"]["GET /api/v1/datasets"] == 4  # faulted and refused ones count too
    assert not any(route.split()[1].startswith("/_sim") for route in stats["requests"])


# --- curve families ---------------------------------------------------------------------


def natural_plan(
    seed: int, families: tuple[str, ...] = FAMILIES, rules: Rules | None = None
) -> Plan:
    rng = random.Random(f"families:{seed}")
    return plan_job(
        rng, threshold=0.8, rules=rules or Rules(), fate=None, failure_rate=0.0, families=families
    )


def test_natural_jobs_draw_a_family_per_algorithm_from_the_seed() -> None:
    assert natural_plan(3).families == natural_plan(3).families
    seen = {family for seed in range(40) for family in natural_plan(seed).families}
    assert seen == set(FAMILIES)
    for family in FAMILIES:
        plan = natural_plan(5, (family,))
        assert plan.families == (family,) * 4
        assert {curve.family for curve in plan.curves} == {family}
    with pytest.raises(ValueError, match="unknown curve family"):
        natural_plan(1, ("zigzag",))
    with pytest.raises(ValueError, match="families"):
        Simulator(families=())


def curves_of(family: str, count: int = 30) -> list[Curve]:
    rng = random.Random(family)
    return [draw_curve(rng, name, family) for name in ALGORITHMS for _ in range(count)]


def test_each_family_has_its_shape() -> None:
    for curve in curves_of("early_plateau"):  # levelled off within five minutes
        assert curve.mean(600) - curve.mean(300) < 0.02 and curve.noise < 0.005
    for curve in curves_of("slow_climber"):  # faster than the stall rule until its plateau
        for t in range(0, 3000, 300):
            if curve.mean(t + 300) < curve.height:
                assert curve.mean(t + 300) - curve.mean(t) > 0.02
    for curve in curves_of("noisy"):
        assert curve.noise >= 0.01
    for curve in curves_of("late_bloomer"):  # the bloom outgrows the first window
        bloom = curve.mean(curve.delay + curve.width) - curve.mean(curve.delay - curve.width)
        assert bloom > curve.mean(300) - curve.mean(0) > 0.02
    for curve in curves_of("step_wise"):  # flat between jumps, each jump at least 0.02
        assert curve.steps and all(
            jump >= 0.02 or i == len(curve.steps) - 1 for i, (_, jump) in enumerate(curve.steps)
        )
        for (at, _), (after, _) in zip(curve.steps, curve.steps[1:], strict=False):
            assert curve.mean(at + 5) == pytest.approx(curve.mean(after))
    for curve in curves_of("saturating"):
        assert curve.mean(0) == pytest.approx(curve.start)
        assert curve.mean(5000) == pytest.approx(curve.height, abs=1e-3)


def test_compressed_rules_replay_the_same_job_faster() -> None:
    def trace(rules: Rules) -> tuple[list[Any], float]:
        plan = natural_plan(11, rules=rules)
        run = TrainingRun(
            "k",
            dataset_key="d",
            scaling_factor=19,
            threshold=0.99,
            rules=rules,
            plan=plan,
            rng=random.Random("families:11:run"),
        )
        seconds, payloads = 0.0, []
        while run.status_at(seconds) in ("PENDING", "RUNNING"):
            seconds += rules.tick_seconds
            payloads.append(run.progress(seconds))
        return payloads, seconds

    slow, slow_end = trace(Rules())
    fast, fast_end = trace(Rules.compressed(100))
    assert slow == fast and slow[-1]["status"] in ("NOT_COMPLETED", "TIMED_OUT")
    assert fast_end == pytest.approx(slow_end / 100)


async def test_a_natural_lifecycle_runs_in_simulated_seconds_with_small_rules(
    make_api: MakeApi,
) -> None:
    rules = Rules.compressed(100)
    api = await logged_in(
        make_api,
        pending_seconds=rules.pending_seconds,
        stall_window=rules.stall_window,
        time_limit=rules.time_limit,
        tick_seconds=rules.tick_seconds,
        time_scale=rules.time_scale,
        families=("early_plateau",),
    )
    key = api.sim.start_training(api.sim.create_dataset("d"), performance_threshold=0.99)
    seen = await run_to_end(api, key, step=0.5, limit=40)
    assert seen[-1]["status"] == "NOT_COMPLETED"
