"""Every simulator response validates against the reconstructed MathFi OpenAPI spec.

The schemas come from docs/mathfi-api/openapi.yaml (the repo's copy of the team's shared
research folder, ../shared/mathfi-api/), with the components resolved through a
`referencing` registry and formats (uuid, date-time, int32, double) checked by
openapi-schema-validator's OAS 3.0 validator.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from simulator import Simulator, start_in_background

ROOT = Path(__file__).resolve().parents[1]
API_DIR = ROOT / "docs" / "mathfi-api"
SPEC_PATH = API_DIR / "openapi.yaml"
COPIED = ("openapi.yaml", "REFERENCE.md")
SPEC_URI = "urn:mathfi-openapi"
CREDENTIALS = {"username": "demo@mathfi.ai", "password": "demo-password"}
TRAIN = {"scalingFactor": 19, "performanceThreshold": 0.8}


def _shared_folders() -> list[Path]:
    """Where ../shared/mathfi-api may be: beside this checkout, and, for a git worktree
    (`.git` is a file naming the main repository's git dir), beside the main checkout."""
    found = [ROOT.parent / "shared" / "mathfi-api"]
    git = ROOT / ".git"
    if git.is_file():
        gitdir = Path(git.read_text(encoding="utf-8").split(":", 1)[1].strip())
        main_checkout = gitdir.parents[1].parent  # <main>/.git/worktrees/<name>
        found.append(main_checkout.parent / "shared" / "mathfi-api")
    return [folder for folder in found if folder.is_dir()]


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


class Contract:
    """Finds the response schema of an operation in the spec and validates bodies with it."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        resource = Resource.from_contents(spec, default_specification=DRAFT4)
        self.registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)

    def pointer(self, method: str, template: str, status: int) -> str:
        responses = self.spec["paths"][template][method.lower()]["responses"]
        code = str(status) if str(status) in responses else "default"
        assert code in responses, f"{method} {template} documents no {status} and no default"
        pointer = f"/paths/{_escape(template)}/{method.lower()}/responses/{code}"
        ref = responses[code].get("$ref")
        if ref is not None:
            pointer = ref.removeprefix("#")
        return f"{pointer}/content/{_escape('application/json')}/schema"

    def errors(self, method: str, template: str, status: int, body: Any) -> list[str]:
        schema = {"$ref": f"{SPEC_URI}#{self.pointer(method, template, status)}"}
        validator = OAS30Validator(
            schema, registry=self.registry, format_checker=oas30_format_checker
        )
        return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str, contract: Contract) -> None:
        self.session, self.base, self.contract = session, base, contract
        self.token: str | None = None
        self.checked: list[tuple[str, str, int]] = []

    async def call(
        self,
        method: str,
        template: str,
        *,
        expect: int = 200,
        body: Any = None,
        query: str = "",
        **keys: str,
    ) -> Any:
        """Send a request, check its status, and validate the answer against the spec."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        path = template.format(**keys) + query
        async with self.session.request(
            method, self.base + path, json=body, headers=headers
        ) as resp:
            text = await resp.text()
            assert resp.status == expect, text
            assert resp.content_type == "application/json"
        answer = json.loads(text)
        errors = self.contract.errors(method, template, resp.status, answer)
        assert not errors, f"{method} {path} -> {resp.status}: {errors}\n{text}"
        self.checked.append((method, template, resp.status))
        return answer


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract(yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8")))


@pytest.fixture
async def setup(contract: Contract) -> AsyncIterator[tuple[Simulator, ManualClock, Client]]:
    clock = ManualClock()
    sim = Simulator(clock=clock, token_lifetime=10**9)
    runner, base = await start_in_background(sim)
    try:
        async with aiohttp.ClientSession() as session:
            client = Client(session, base, contract)
            login = await client.call("POST", "/api/login", body=CREDENTIALS)
            client.token = login["access_token"]
            yield sim, clock, client
    finally:
        await runner.cleanup()


def test_the_repo_copy_matches_the_shared_folder() -> None:
    """docs/mathfi-api/ holds a copy of the shared research folder ../shared/mathfi-api/.

    Fails when that folder exists and the copy differs from it. When no shared folder exists
    (any clone outside the team's workspace) there is nothing to compare: the test passes,
    the one case in the suite that is "not applicable" rather than run."""
    for folder in _shared_folders():
        for name in COPIED:
            shared = (folder / name).read_bytes()
            ours = (API_DIR / name).read_bytes()
            assert ours == shared, f"docs/mathfi-api/{name} differs from {folder / name}"


def test_the_validator_rejects_what_the_spec_forbids(contract: Contract) -> None:
    template = "/api/v1/training/{trainingJobKey}/progress"
    bad = {"status": "EXPLODED", "jobs": [{"latestPerformance": "0.9"}]}
    assert len(contract.errors("GET", template, 200, bad)) == 2
    job = {"trainingJobKey": "nope", "datasetKey": "x", "status": "RUNNING"}
    assert len(contract.errors("GET", "/api/v1/training/{trainingJobKey}", 200, job)) == 3


async def test_auth_and_dataset_responses_match_the_spec(
    setup: tuple[Simulator, ManualClock, Client],
) -> None:
    sim, clock, client = setup
    await client.call("POST", "/api/login", expect=401, body=CREDENTIALS | {"password": "no"})
    await client.call("POST", "/api/login", expect=400, body={"username": 1})
    body = {"datasetName": "oilplantv4", "description": "pumps", "numberOfBuckets": 10}
    created = await client.call("POST", "/api/v1/datasets", body=body)
    await client.call("POST", "/api/v1/datasets", expect=400, body={"datasetName": "x"})
    key = created["datasetKey"]
    sim.create_dataset("ready one")
    listing = await client.call("GET", "/api/v1/datasets", query="?offset=0&limit=10")
    assert listing["total"] == 2
    template = "/api/v1/datasets/{datasetKey}"
    assert (await client.call("GET", template, datasetKey=key))["status"] == "PENDING"
    upload = created["datasetUploadInfo"]["uploadUrl"]
    async with client.session.put(
        upload, data=b"ID,F,T\n1,2,N\n", headers={"Content-Type": "text/csv"}
    ) as resp:
        assert resp.status == 200
    assert (await client.call("GET", template, datasetKey=key))["status"] == "PROCESSING"
    clock.now += 5
    assert (await client.call("GET", template, datasetKey=key))["status"] == "COMPLETED"
    await client.call(
        "GET", template, expect=404, datasetKey="c2bd4dbd-b9e9-4fd2-9e52-36652b082060"
    )
    client.token = "expired"
    await client.call("GET", "/api/v1/datasets", expect=401)


@pytest.mark.parametrize("fate", ["COMPLETED", "NOT_COMPLETED", "TIMED_OUT", "FAILED", None])
async def test_training_responses_match_the_spec_at_every_stage(
    setup: tuple[Simulator, ManualClock, Client], fate: str | None
) -> None:
    sim, clock, client = setup
    dataset = sim.create_dataset("ready")
    start = "/api/v1/training/datasets/{datasetKey}"
    await client.call("POST", start, expect=400, body={"scalingFactor": 19}, datasetKey=dataset)
    if fate is None:
        body = TRAIN | {"performanceThreshold": 0.6}
        key = (await client.call("POST", start, body=body, datasetKey=dataset))["trainingJobKey"]
    else:
        key = sim.start_training(dataset, fate=fate)
    statuses = set()
    for _ in range(40):  # 20 simulated minutes in 30 s steps
        progress = await client.call(
            "GET", "/api/v1/training/{trainingJobKey}/progress", trainingJobKey=key
        )
        await client.call("GET", "/api/v1/training/{trainingJobKey}", trainingJobKey=key)
        statuses.add(progress["status"])
        clock.now += 30
    assert {"PENDING", "RUNNING"} <= statuses and progress["status"] == (fate or "COMPLETED")
    cancel = "/api/v1/training/{trainingJobKey}/cancel"
    await client.call("PATCH", cancel, expect=409, trainingJobKey=key)


async def test_cancel_and_error_responses_match_the_spec(
    setup: tuple[Simulator, ManualClock, Client],
) -> None:
    sim, clock, client = setup
    dataset = sim.create_dataset("ready")
    cancel = "/api/v1/training/{trainingJobKey}/cancel"
    pending = sim.start_training(dataset)
    await client.call("PATCH", cancel, trainingJobKey=pending)
    running = sim.start_training(dataset)
    clock.now += 60
    answer = await client.call("PATCH", cancel, trainingJobKey=running)
    assert answer["status"] == "CANCELLED"
    await client.call("PATCH", cancel, expect=409, trainingJobKey=running)
    for template in (
        "/api/v1/training/{trainingJobKey}",
        "/api/v1/training/{trainingJobKey}/progress",
    ):
        await client.call("GET", template, trainingJobKey=running)
        await client.call("GET", template, expect=404, trainingJobKey=pending[::-1])
    await client.call("PATCH", cancel, expect=404, trainingJobKey=pending[::-1])
    waiting = sim.create_dataset("waiting", ready=False)
    start = "/api/v1/training/datasets/{datasetKey}"
    await client.call("POST", start, expect=409, body=TRAIN, datasetKey=waiting)
    await client.call("POST", start, expect=404, body=TRAIN, datasetKey=waiting[::-1])


async def test_a_scripted_job_summary_has_valid_defaults(
    setup: tuple[Simulator, ManualClock, Client],
) -> None:
    sim, _, client = setup
    key = sim.script_job([{"status": "RUNNING", "targetPerformance": 0.85, "jobs": []}])
    summary = await client.call("GET", "/api/v1/training/{trainingJobKey}", trainingJobKey=key)
    assert summary["targetPerformance"] == 0.85
