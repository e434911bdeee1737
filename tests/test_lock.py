"""The lock files agree with pyproject.toml (issue #16: installs that do not drift).

requirements.lock pins the runtime dependencies (and the build backend) for the Docker image;
requirements-dev.lock pins those plus the `dev` extra for `make install` and CI. Both are
written by `make lock` (pip-compile). For each lock: every requirement of pyproject.toml it
serves is pinned, the pin satisfies the requirement's specifier, the lock marks it as asked for
by pyproject, nothing is left pinned as asked for by pyproject that pyproject no longer lists,
every pin carries hashes, and the lock names no package index of this machine. The checker
runs on the real files and on small broken examples, so each check is seen to fail.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
FIX = "run `make lock` (see README, Development: dependencies)"

# lock file -> the pyproject extras it serves
LOCKS: dict[str, tuple[str, ...]] = {
    "requirements.lock": (),
    "requirements-dev.lock": ("dev",),
}

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_VIA_PROJECT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*) \(pyproject\.toml(::[\w.-]+)?\)$")


@dataclass
class Pin:
    version: str
    hashes: int = 0
    via_project: bool = False


def parse_lock(text: str, project: str) -> dict[str, Pin]:
    """name -> pin, from pip-compile's output (`name==version \\`, `--hash=` and `# via` lines)."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if match := _PIN.match(raw):
            current = pins[canonicalize_name(match[1])] = Pin(match[2])
        elif current is not None and line.startswith("--hash="):
            current.hashes += 1
        elif current is not None and line.startswith("#"):
            via = line.lstrip("#").strip().removeprefix("via").strip()
            name = _VIA_PROJECT.match(via)
            if name and canonicalize_name(name["name"]) == canonicalize_name(project):
                current.via_project = True
    return pins


def wanted(pyproject: dict[str, Any], extras: tuple[str, ...]) -> list[Requirement]:
    """The requirements of pyproject.toml that a lock serving `extras` must pin."""
    project = pyproject["project"]
    texts = list(project.get("dependencies", []))
    for extra in extras:
        texts += project.get("optional-dependencies", {}).get(extra, [])
    texts += pyproject.get("build-system", {}).get("requires", [])
    reqs = [Requirement(text) for text in texts]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


def check_lock(pyproject: dict[str, Any], lock_name: str, text: str) -> list[str]:
    """Every way the lock disagrees with pyproject.toml, one line each."""
    project = pyproject["project"]["name"]
    pins = parse_lock(text, project)
    problems: list[str] = []
    reqs = wanted(pyproject, LOCKS.get(lock_name, ()))
    for req in reqs:
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            problems.append(f"{req} is in pyproject.toml but not pinned in {lock_name}")
        elif not req.specifier.contains(Version(pin.version), prereleases=True):
            problems.append(f"{lock_name} pins {req.name}=={pin.version}, outside {req}")
        elif not pin.via_project:
            problems.append(f"{lock_name} does not mark {req.name} as asked for by pyproject")
    names = {canonicalize_name(r.name) for r in reqs}
    for name, pin in sorted(pins.items()):
        if pin.via_project and name not in names:
            problems.append(f"{lock_name} pins {name} for pyproject.toml, which no longer lists it")
        if pin.hashes == 0:
            problems.append(f"{lock_name} pins {name} without a --hash")
    for line in text.splitlines():
        if re.match(r"\s*(-i|-f|--index-url|--extra-index-url|--find-links)\b", line):
            problems.append(f"{lock_name} names a package index: {line.strip()}")
    if not pins:
        problems.append(f"{lock_name} pins nothing")
    return problems


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize("lock_name", sorted(LOCKS))
def test_lock_agrees_with_pyproject(lock_name: str) -> None:
    path = ROOT / lock_name
    assert path.exists(), f"{lock_name} is missing: {FIX}"
    problems = check_lock(_pyproject(), lock_name, path.read_text())
    assert not problems, "\n".join([*problems, f"-> {FIX}"])


def test_the_runtime_lock_is_the_dev_lock_without_the_dev_tools() -> None:
    """Same version for every package both pin: the image runs what the tests passed with."""
    project = _pyproject()["project"]["name"]
    runtime = parse_lock((ROOT / "requirements.lock").read_text(), project)
    dev = parse_lock((ROOT / "requirements-dev.lock").read_text(), project)
    differ = [
        f"{name}: {pin.version} (requirements.lock) != {dev[name].version} (dev)"
        for name, pin in runtime.items()
        if name in dev and dev[name].version != pin.version
    ]
    missing = sorted(set(runtime) - set(dev))
    assert not differ and not missing, "\n".join([*differ, *missing, f"-> {FIX}"])


# The checker itself, on small locks: each check must be able to fail.

PYPROJECT: dict[str, Any] = {
    "build-system": {"requires": ["setuptools>=68"]},
    "project": {
        "name": "demo-project",
        "dependencies": ["aiohttp>=3.9", "rich>=13.7; python_version < '3'"],
        "optional-dependencies": {"dev": ["pytest>=8"]},
    },
}
GOOD = """\
#    pip-compile --generate-hashes pyproject.toml
aiohttp==3.14.5 \\
    --hash=sha256:aa \\
    --hash=sha256:bb
    # via demo-project (pyproject.toml)
yarl==1.25.1 \\
    --hash=sha256:cc
    # via aiohttp
setuptools==84.2.1 \\
    --hash=sha256:dd
    # via demo-project (pyproject.toml::build-system.requires)
"""
DEV_GOOD = GOOD.replace(
    "yarl==",
    "pytest==9.2.0 \\\n    --hash=sha256:ee\n    # via\n    #   demo-project (pyproject.toml)\n"
    "    #   pytest-asyncio\nyarl==",
)


def test_checker_accepts_matching_locks() -> None:
    assert check_lock(PYPROJECT, "requirements.lock", GOOD) == []
    assert check_lock(PYPROJECT, "requirements-dev.lock", DEV_GOOD) == []


@pytest.mark.parametrize(
    ("lock_name", "text", "expected"),
    [
        ("requirements-dev.lock", GOOD, "pytest>=8 is in pyproject.toml but not pinned"),
        (
            "requirements.lock",
            GOOD.replace("3.14.5", "3.8.6"),
            "aiohttp==3.8.6, outside aiohttp>=3.9",
        ),
        ("requirements.lock", DEV_GOOD, "pins pytest for pyproject.toml, which no longer lists it"),
        (
            "requirements.lock",
            GOOD.replace("# via demo-project (pyproject.toml)\n", "# via slack-bolt\n"),
            "does not mark aiohttp as asked for by pyproject",
        ),
        (
            "requirements.lock",
            GOOD.replace("    --hash=sha256:cc\n", ""),
            "pins yarl without a --hash",
        ),
        (
            "requirements.lock",
            "--extra-index-url file:///opt/pypi/simple\n" + GOOD,
            "names a package index: --extra-index-url file:///opt/pypi/simple",
        ),
        ("requirements.lock", "", "pins nothing"),
    ],
    ids=["missing", "outside-specifier", "stale", "not-direct", "no-hash", "index", "empty"],
)
def test_checker_reports(lock_name: str, text: str, expected: str) -> None:
    problems = check_lock(PYPROJECT, lock_name, text)
    assert any(expected in p for p in problems), problems
