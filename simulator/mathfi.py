"""A faithful local MathFi API server (aiohttp), for the demo, the tests and the benchmarks.

Documented endpoints (REFERENCE.md §2-5): POST /api/login; GET/POST /api/v1/datasets;
GET /api/v1/datasets/{key}; POST /api/v1/training/datasets/{key}; GET /api/v1/training/{key};
GET /api/v1/training/{key}/progress; PATCH /api/v1/training/{key}/cancel.

Our choices where MathFi documents nothing:
- Errors answer `{"message": "..."}`: missing, malformed, unknown, expired or revoked token ->
  401; bad username or password -> 401; invalid JSON or field -> 400; unknown key -> 404;
  duplicate dataset name, training on a dataset that is not COMPLETED, cancelling a job that
  has ended, or a second upload -> 409. Creates answer 200.
- Tokens are JWT-shaped opaque strings valid `token_lifetime` seconds of the clock (not of
  simulated time, so a fast demo does not expire them); `expires_in` is that, rounded up.
- Datasets: `numberOfBuckets` defaults to 20; listing is newest first (`createdOn`, then
  creation order), `offset` 0 and `limit` 20 by default, `state` filters, `total` counts
  every match. A test may create a dataset held in any status (`create_dataset(status=…)`,
  `POST /_sim/datasets`). The upload URL is this server's `PUT /_upload/{key}`
  (no token, like a signed URL; `Content-Type: text/csv`, 10 to 534,773,760 bytes). After
  the upload the dataset is PROCESSING for `pending_seconds` of simulated time, then
  COMPLETED, or FAILED when the CSV has no data row or fewer than two columns.
- Per-algorithm statuses: PENDING, RUNNING, then the job's vocabulary; while PENDING the
  algorithms carry no performance. `achievedPerformance` is the best value so far; the
  champion fields (`modelKey`, `trainingPerformance`, `testPerformance`) appear on COMPLETED.
  Hyperparameters are echoed and validated (API-reference ranges), not modelled.
- Scripted jobs answer their current payload verbatim; cancelling one answers 200 unless its
  current payload's status is terminal (409), and never changes the script.
- `stats` counts every request that reached the server except the `/_sim/` control routes
  (faulted ones too); `logins` counts tokens issued.

Simulated time is `(clock() - start) * speed`; job state is computed lazily when asked.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from simulator.curves import FAMILIES
from simulator.faults import CONTROL_PREFIX, Fault, FaultBook, fault_middleware
from simulator.training import (
    FATES,
    TERMINAL_STATUSES,
    Rules,
    ScriptedJob,
    TrainingRun,
    new_key,
    plan_job,
)

logger = logging.getLogger(__name__)

DEMO_USERS: Mapping[str, str] = MappingProxyType({"demo@mathfi.ai": "demo-password"})
EXTRA_HEADERS = "X-Goog-Content-Length-Range:10,534773760"
UPLOAD_RANGE = (10, 534_773_760)
DATASET_STATUSES = frozenset({"PENDING", "PROCESSING", "COMPLETED", "FAILED"})
PROGRESS_ROUTE = "/api/v1/training/{key}/progress"
_JWT_HEADER = "eyJhbGciOiJIUzI1NiJ9"  # base64url of {"alg":"HS256"}


class SimulatorError(Exception):
    """A request the simulated API refuses; it answers `status` with {"message": ...}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class SimulatorStats:
    logins: int = 0
    progress_polls: int = 0
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        counts = {f"{method} {route}": n for (method, route), n in sorted(self.requests.items())}
        return {"logins": self.logins, "progress_polls": self.progress_polls, "requests": counts}


@dataclass
class _Dataset:
    key: str
    name: str
    buckets: int
    description: str | None
    created_on: str
    ready: bool
    uploaded_at: float | None = None
    valid: bool = True
    held_status: str | None = None  # a test's fixed status, whatever the upload did


def _number(
    data: Mapping[str, Any], name: str, *, lo: float, hi: float, integer: bool, default: Any = None
) -> Any:
    value = data.get(name, default)
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise SimulatorError(400, f"{name} must be {kind} between {lo:g} and {hi:g}")
    return value


def _text(data: Mapping[str, Any], name: str, *, lo: int, hi: int, required: bool) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not lo <= len(value) <= hi:
        raise SimulatorError(400, f"{name} must be a string of {lo} to {hi} characters")
    return value


async def _json_object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    if optional and not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError as err:
        raise SimulatorError(400, "the body is not valid JSON") from err
    if not isinstance(data, dict):
        raise SimulatorError(400, "the body must be a JSON object")
    return data


def _query_int(request: web.Request, name: str, *, default: int, lo: int) -> int:
    raw = request.query.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        value = lo - 1
    if value < lo:
        raise SimulatorError(400, f"{name} must be an integer >= {lo}")
    return value


def _new_token(username: str) -> str:
    claims = {"iss": "butterfly-ai-simulator", "sub": username, "jti": secrets.token_hex(8)}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{_JWT_HEADER}.{payload}.{secrets.token_urlsafe(32)}"


class Simulator:
    """MathFi's API as an aiohttp app, plus direct controls for tests and the demo."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        speed: float = 1.0,
        seed: int = 0,
        token_lifetime: float = 3600.0,
        failure_rate: float = 0.0,
        users: Mapping[str, str] = DEMO_USERS,
        pending_seconds: float = 5.0,
        stall_window: float = 300.0,
        stall_delta: float = 0.02,
        time_limit: float = 3600.0,
        tick_seconds: float = 10.0,
        time_scale: float = 1.0,
        families: Sequence[str] = FAMILIES,
    ) -> None:
        self._clock, self._speed, self._seed = clock, speed, seed
        self._token_lifetime, self._failure_rate = token_lifetime, failure_rate
        self.users = dict(users)
        self._rules = Rules(
            pending_seconds, stall_window, stall_delta, time_limit, tick_seconds, time_scale
        )
        unknown = set(families) - set(FAMILIES)
        if unknown or not families:
            raise ValueError(f"families must be a non-empty subset of {FAMILIES}")
        self._families = tuple(families)
        self._rng = random.Random(f"mathfi-simulator:{seed}")
        self._datasets: dict[str, _Dataset] = {}
        self._names: set[str] = set()
        self._runs: dict[str, tuple[TrainingRun, float]] = {}
        self._scripts: dict[str, ScriptedJob] = {}
        self._tokens: dict[str, float] = {}
        self._faults = FaultBook()
        self.stats = SimulatorStats()

    # --- direct control -------------------------------------------------------------

    def create_dataset(
        self,
        name: str,
        *,
        number_of_buckets: int = 10,
        ready: bool = True,
        status: str | None = None,
        created_on: str | None = None,
    ) -> str:
        """A dataset: COMPLETED (`ready`), waiting for its upload, or held in `status`."""
        if name in self._names:
            raise SimulatorError(409, f"a dataset named {name!r} already exists")
        if status is not None and status not in DATASET_STATUSES:
            raise SimulatorError(400, f"status must be one of {sorted(DATASET_STATUSES)}")
        key = new_key(self._rng)
        created_on = created_on or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        dataset = _Dataset(key, name, number_of_buckets, None, created_on, ready)
        dataset.held_status = status
        self._datasets[key] = dataset
        self._names.add(name)
        return key

    def start_training(
        self,
        dataset_key: str,
        *,
        scaling_factor: int = 19,
        performance_threshold: float = 0.8,
        fate: str | None = None,
    ) -> str:
        if fate is not None and fate not in FATES:
            raise SimulatorError(400, f"fate must be one of {sorted(FATES)} or null")
        status = self._dataset_status(self._dataset(dataset_key))
        if status != "COMPLETED":
            raise SimulatorError(409, f"dataset {dataset_key} is {status}, not COMPLETED")
        key = new_key(self._rng)
        rng = random.Random(f"{self._seed}:{key}")
        plan = plan_job(
            rng,
            threshold=performance_threshold,
            rules=self._rules,
            fate=fate,
            failure_rate=self._failure_rate,
            families=self._families,
        )
        run = TrainingRun(
            key,
            dataset_key=dataset_key,
            scaling_factor=scaling_factor,
            threshold=performance_threshold,
            rules=self._rules,
            plan=plan,
            rng=rng,
        )
        self._runs[key] = (run, self._clock())
        return key

    def script_job(
        self,
        payloads: Sequence[Mapping[str, Any]],
        *,
        training: Mapping[str, Any] | None = None,
        key: str | None = None,
    ) -> str:
        key = key or new_key(self._rng)
        if key in self._runs or key in self._scripts:
            raise SimulatorError(409, f"training job {key} already exists")
        if not payloads:
            raise SimulatorError(400, "payloads must not be empty")
        training = training or {}
        dataset_key = str(training.get("datasetKey") or new_key(self._rng))
        self._scripts[key] = ScriptedJob(
            key, dataset_key=dataset_key, payloads=payloads, training=training
        )
        return key

    def advance(self, key: str, steps: int = 1) -> int:
        script = self._scripts.get(key)
        if script is None:
            raise SimulatorError(404, f"no scripted training job {key}")
        return script.advance(steps)

    def add_fault(self, fault: Fault) -> None:
        self._faults.add(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    def revoke_tokens(self) -> None:
        self._tokens.clear()

    # --- state ----------------------------------------------------------------------

    def _since(self, start: float) -> float:
        return (self._clock() - start) * self._speed

    def _dataset(self, key: str) -> _Dataset:
        dataset = self._datasets.get(key)
        if dataset is None:
            raise SimulatorError(404, f"no dataset {key}")
        return dataset

    def _dataset_status(self, dataset: _Dataset) -> str:
        if dataset.held_status is not None:
            return dataset.held_status
        if dataset.ready:
            return "COMPLETED"
        if dataset.uploaded_at is None:
            return "PENDING"
        if self._since(dataset.uploaded_at) < self._rules.pending_seconds:
            return "PROCESSING"
        return "COMPLETED" if dataset.valid else "FAILED"

    def _dataset_body(self, dataset: _Dataset) -> dict[str, Any]:
        body = {
            "datasetKey": dataset.key,
            "datasetName": dataset.name,
            "numberOfBuckets": dataset.buckets,
            "status": self._dataset_status(dataset),
            "createdOn": dataset.created_on,
        }
        return body if dataset.description is None else body | {"description": dataset.description}

    def _run(self, key: str) -> tuple[TrainingRun, float]:
        entry = self._runs.get(key)
        if entry is None:
            raise SimulatorError(404, f"no training job {key}")
        run, start = entry
        return run, self._since(start)

    def _check_token(self, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise SimulatorError(401, "missing bearer token")
        expires = self._tokens.get(token.strip())
        if expires is None:
            raise SimulatorError(401, "unknown or revoked token")
        if self._clock() >= expires:
            raise SimulatorError(401, "token expired")

    # --- HTTP -----------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._observe_middleware(), fault_middleware(self._faults)],
            client_max_size=64 * 1024 * 1024,
        )
        app.router.add_post("/api/login", self._login)
        app.router.add_get("/api/v1/datasets", self._list_datasets)
        app.router.add_post("/api/v1/datasets", self._create_dataset)
        app.router.add_get("/api/v1/datasets/{key}", self._get_dataset)
        app.router.add_put("/_upload/{key}", self._upload)
        app.router.add_post("/api/v1/training/datasets/{key}", self._start_training)
        app.router.add_get("/api/v1/training/{key}", self._get_training)
        app.router.add_get(PROGRESS_ROUTE, self._get_progress)
        app.router.add_patch("/api/v1/training/{key}/cancel", self._cancel)
        app.router.add_post("/_sim/faults", self._sim_add_fault)
        app.router.add_delete("/_sim/faults", self._sim_clear_faults)
        app.router.add_post("/_sim/datasets", self._sim_create_dataset)
        app.router.add_post("/_sim/jobs", self._sim_start_job)
        app.router.add_post("/_sim/script", self._sim_script)
        app.router.add_post("/_sim/jobs/{key}/advance", self._sim_advance)
        app.router.add_post("/_sim/revoke-tokens", self._sim_revoke)
        app.router.add_get("/_sim/stats", self._sim_stats)
        return app

    def _observe_middleware(self) -> Any:
        """Counts requests, checks the token on /api/v1/, turns SimulatorError into JSON."""

        @web.middleware
        async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not request.path.startswith(CONTROL_PREFIX):
                resource = request.match_info.route.resource
                route = resource.canonical if resource is not None else request.path
                self.stats.requests[(request.method, route)] += 1
                if route == PROGRESS_ROUTE:
                    self.stats.progress_polls += 1
            try:
                if request.path.startswith("/api/v1/"):
                    self._check_token(request)
                return await handler(request)
            except SimulatorError as err:
                return web.json_response({"message": err.message}, status=err.status)

        return observe

    async def _login(self, request: web.Request) -> web.Response:
        data = await _json_object(request)
        username = _text(data, "username", lo=1, hi=320, required=True)
        password = _text(data, "password", lo=1, hi=1024, required=True)
        if username is None or self.users.get(username) != password:
            raise SimulatorError(401, "bad username or password")
        token = _new_token(username)
        self._tokens[token] = self._clock() + self._token_lifetime
        self.stats.logins += 1
        expires_in = max(1, math.ceil(self._token_lifetime))
        return web.json_response(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": expires_in,
                "username": username,
            }
        )

    async def _list_datasets(self, request: web.Request) -> web.Response:
        offset = _query_int(request, "offset", default=0, lo=0)
        limit = _query_int(request, "limit", default=20, lo=1)
        state = request.query.get("state")
        if state is not None and state not in DATASET_STATUSES:
            raise SimulatorError(400, f"state must be one of {sorted(DATASET_STATUSES)}")
        newest_first = sorted(
            enumerate(self._datasets.values()),
            key=lambda pair: (pair[1].created_on, pair[0]),
            reverse=True,
        )
        bodies = [self._dataset_body(dataset) for _, dataset in newest_first]
        if state is not None:
            bodies = [body for body in bodies if body["status"] == state]
        page = bodies[offset : offset + limit]
        return web.json_response(
            {"datasets": page, "offset": offset, "limit": limit, "total": len(bodies)}
        )

    async def _create_dataset(self, request: web.Request) -> web.Response:
        data = await _json_object(request)
        name = _text(data, "datasetName", lo=3, hi=30, required=True)
        description = _text(data, "description", lo=3, hi=150, required=False)
        buckets = _number(data, "numberOfBuckets", lo=4, hi=1000, integer=True, default=20)
        key = self.create_dataset(str(name), number_of_buckets=buckets, ready=False)
        self._datasets[key].description = description
        origin = str(request.url.origin())
        return web.json_response(
            {
                "datasetKey": key,
                "numberOfBuckets": buckets,
                "status": "PENDING",
                "datasetCreationProgressUrl": f"{origin}/api/v1/datasets/{key}",
                "datasetUploadInfo": {
                    "uploadUrl": f"{origin}/_upload/{key}",
                    "extraHeaders": EXTRA_HEADERS,
                },
            }
        )

    async def _get_dataset(self, request: web.Request) -> web.Response:
        return web.json_response(self._dataset_body(self._dataset(request.match_info["key"])))

    async def _upload(self, request: web.Request) -> web.Response:
        dataset = self._dataset(request.match_info["key"])
        if dataset.ready or dataset.uploaded_at is not None or dataset.held_status is not None:
            raise SimulatorError(409, f"dataset {dataset.key} already has its data")
        if request.content_type != "text/csv":
            raise SimulatorError(400, "the upload must be Content-Type: text/csv")
        body = await request.read()
        if not UPLOAD_RANGE[0] <= len(body) <= UPLOAD_RANGE[1]:
            raise SimulatorError(400, f"the upload must be {UPLOAD_RANGE} bytes")
        lines = body.decode("utf-8", errors="replace").strip().splitlines()
        dataset.valid = len(lines) >= 2 and len(lines[0].split(",")) >= 2
        dataset.uploaded_at = self._clock()
        return web.Response()

    async def _start_training(self, request: web.Request) -> web.Response:
        dataset_key = request.match_info["key"]
        data = await _json_object(request)
        scaling = _number(data, "scalingFactor", lo=0, hi=499, integer=True)
        threshold = _number(data, "performanceThreshold", lo=0, hi=1, integer=False)
        key = self.start_training(
            dataset_key, scaling_factor=scaling, performance_threshold=float(threshold)
        )
        progress_url = f"{request.url.origin()}/api/v1/training/{key}/progress"
        return web.json_response(
            {
                "trainingJobKey": key,
                "datasetKey": dataset_key,
                "status": "PENDING",
                "trainingJobProgressUrl": progress_url,
            }
        )

    async def _get_training(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if (script := self._scripts.get(key)) is not None:
            return web.json_response(script.summary())
        run, seconds = self._run(key)
        return web.json_response(run.summary(seconds))

    async def _get_progress(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if (script := self._scripts.get(key)) is not None:
            return web.json_response(script.progress())
        run, seconds = self._run(key)
        return web.json_response(run.progress(seconds))

    async def _cancel(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if (script := self._scripts.get(key)) is not None:
            if script.status() in TERMINAL_STATUSES:
                raise SimulatorError(409, f"training job {key} is {script.status()}")
            return web.json_response({"status": "CANCELLED"})
        run, seconds = self._run(key)
        if not run.cancel(seconds):
            raise SimulatorError(409, f"training job {key} is {run.outcome}")
        return web.json_response(run.progress(seconds))

    # --- /_sim control routes -------------------------------------------------------

    async def _sim_add_fault(self, request: web.Request) -> web.Response:
        try:
            fault = Fault.from_json(await _json_object(request))
        except (TypeError, ValueError) as err:
            raise SimulatorError(400, str(err)) from err
        self.add_fault(fault)
        return web.json_response({"faults": [f.to_json() for f in self._faults.active()]})

    async def _sim_clear_faults(self, request: web.Request) -> web.Response:
        self.clear_faults()
        return web.json_response({"faults": []})

    async def _sim_create_dataset(self, request: web.Request) -> web.Response:
        """{"name": …, "status": "PENDING" | "PROCESSING" | "COMPLETED" | "FAILED",
        "createdOn": "2025-10-24T08:35:36Z"} (status and createdOn optional)."""
        data = await _json_object(request)
        name, status, created_on = data.get("name"), data.get("status"), data.get("createdOn")
        if not isinstance(name, str) or not all(
            isinstance(value, str | None) for value in (status, created_on)
        ):
            raise SimulatorError(400, "expected {name, status?, createdOn?} as strings")
        key = self.create_dataset(name, status=status, created_on=created_on)
        return web.json_response(self._dataset_body(self._datasets[key]))

    async def _sim_start_job(self, request: web.Request) -> web.Response:
        data = await _json_object(request, optional=True)
        dataset_key = data.get("dataset_key")
        if not isinstance(dataset_key, str):
            dataset_key = self.create_dataset(f"sim-{new_key(self._rng)[:8]}")
        scaling = _number(data, "scaling_factor", lo=0, hi=499, integer=True, default=19)
        threshold = _number(data, "performance_threshold", lo=0, hi=1, integer=False, default=0.8)
        fate = data.get("fate")
        key = self.start_training(
            dataset_key,
            scaling_factor=scaling,
            performance_threshold=float(threshold),
            fate=fate if isinstance(fate, str) else None,
        )
        return web.json_response({"key": key, "datasetKey": dataset_key})

    async def _sim_script(self, request: web.Request) -> web.Response:
        data = await _json_object(request)
        payloads, training, key = data.get("payloads"), data.get("training"), data.get("key")
        if not isinstance(payloads, list) or not isinstance(training, dict | None):
            raise SimulatorError(400, "expected {payloads: [...], training: {...}}")
        key = self.script_job(
            payloads, training=training, key=key if isinstance(key, str) else None
        )
        return web.json_response({"key": key})

    async def _sim_advance(self, request: web.Request) -> web.Response:
        data = await _json_object(request, optional=True)
        steps = _number(data, "steps", lo=-1e9, hi=1e9, integer=True, default=1)
        key = request.match_info["key"]
        return web.json_response({"key": key, "index": self.advance(key, steps)})

    async def _sim_revoke(self, request: web.Request) -> web.Response:
        self.revoke_tokens()
        return web.json_response({"revoked": True})

    async def _sim_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.to_json())


async def start_in_background(
    sim: Simulator, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Serve `sim` on host:port (0 = a free port); returns the runner and the base URL."""
    runner = web.AppRunner(sim.make_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound_port = runner.addresses[0][1]
    return runner, f"http://{host}:{bound_port}"


async def serve(
    *, host: str = "127.0.0.1", port: int = 8080, speed: float = 1.0, seed: int = 0, **kwargs: Any
) -> None:
    """Run a simulator until cancelled, logging its URL and the demo credentials."""
    sim = Simulator(speed=speed, seed=seed, **kwargs)
    runner, url = await start_in_background(sim, host=host, port=port)
    logger.info("MathFi simulator listening on %s (speed x%s, seed %s)", url, speed, seed)
    for username, password in sim.users.items():
        logger.info("demo credentials: username=%s password=%s", username, password)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
