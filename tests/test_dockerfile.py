"""The Dockerfile, read as Docker reads its stages (no Docker needed; issue #11 point 10).

The base image names an exact Python patch release; dependencies are installed only from the
hashed lock; with the default build arguments nothing of simulator/ or demo/ reaches the image,
and `--build-arg WITH_SIMULATOR=1` brings both; the wheel built from the default sources holds
the product only; .dockerignore keeps secrets and local state out of the build context. The
Makefile's `install` is held to the same rule: the lock with hashes, or `--no-deps`.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    steps: list[tuple[str, str]] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    return out


def stages(text: str, build_args: dict[str, str]) -> list[Stage]:
    """The stages, with global ARG defaults (overridden by build_args) substituted in FROM."""
    args: dict[str, str] = {}
    result: list[Stage] = []
    for keyword, rest in instructions(text):
        if keyword == "ARG" and not result:
            name, _, default = rest.partition("=")
            args[name] = build_args.get(name, default)
        elif keyword == "FROM":
            resolved = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], rest)
            words = resolved.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(base=words[0], name=name))
        elif result:
            result[-1].steps.append((keyword, rest))
    return result


def context_sources(text: str, build_args: dict[str, str]) -> set[str]:
    """Every build-context path COPY'd by the final image or by a stage it is built from."""
    by_name = {s.name: s for s in stages(text, build_args) if s.name}
    seen: set[str] = set()
    sources: set[str] = set()

    def visit(stage: Stage) -> None:
        if stage.base in by_name and stage.base not in seen:
            seen.add(stage.base)
            visit(by_name[stage.base])
        for keyword, rest in stage.steps:
            if keyword not in ("COPY", "ADD"):
                continue
            words = rest.split()
            origin = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            paths = [w for w in words if not w.startswith("--")]
            if origin is None:
                sources.update(p.rstrip("/") for p in paths[:-1])
            elif origin in by_name and origin not in seen:
                seen.add(origin)
                visit(by_name[origin])

    visit(stages(text, build_args)[-1])
    return sources


def pip_installs(text: str) -> list[str]:
    """The arguments of every `pip install` command (comments skipped)."""
    text = re.sub(r"(?m)^\s*#.*$", "", text).replace("\\\n", " ")
    return [m.strip() for m in re.findall(r"\bpip install\b([^&\n]*)", text)]


def test_base_image_is_an_exact_python_release() -> None:
    all_stages = stages(DOCKERFILE.read_text(), {})
    names = {s.name for s in all_stages}
    external = {s.base for s in all_stages if s.base not in names}
    assert len(external) == 1, external
    (image,) = external
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image


@pytest.mark.parametrize("path", ["Dockerfile", "Makefile"])
def test_dependencies_come_only_from_the_hashed_lock(path: str) -> None:
    installs = pip_installs((ROOT / path).read_text())
    assert installs, f"{path} installs nothing with pip"
    lock = "requirements.lock" if path == "Dockerfile" else "requirements-dev.lock"
    lock_flag = re.compile(r"-r \S*(lock|LOCK\))")
    from_lock = [i for i in installs if "--require-hashes" in i and lock_flag.search(i)]
    assert from_lock, f"{path} does not install from the lock"
    for line in installs:
        if line in from_lock:
            assert lock in line or "$(DEV_LOCK)" in line, line
        else:
            assert "--no-deps" in line, f"{path}: `pip install {line}` may bring unpinned packages"


def test_the_lock_is_copied_into_the_image() -> None:
    assert "requirements.lock" in context_sources(DOCKERFILE.read_text(), {})


def test_default_image_has_no_simulator_and_no_demo() -> None:
    sources = context_sources(DOCKERFILE.read_text(), {})
    assert {"bot", "store"} <= sources
    assert not sources & {"simulator", "demo", "tests", "bench", "."}, sources


def test_with_simulator_build_arg_brings_simulator_and_demo() -> None:
    sources = context_sources(DOCKERFILE.read_text(), {"WITH_SIMULATOR": "1"})
    assert {"bot", "store", "simulator", "demo"} <= sources


def test_wheel_from_the_default_sources_holds_the_product_only(tmp_path: Path) -> None:
    """setuptools' package discovery on exactly what the default build copies."""
    src = tmp_path / "src"
    src.mkdir()
    for name in context_sources(DOCKERFILE.read_text(), {}):
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(origin, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--wheel-dir", str(tmp_path / "out"), str(src)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (wheel,) = (tmp_path / "out").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "mathfi-bot = bot.__main__:main" in archive.read(entry_points).decode()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"bot", "store"}


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").removeprefix("**/").rstrip("/")
        parts = Path(path).parts
        if any(fnmatch.fnmatch("/".join(parts[: i + 1]), pattern) for i in range(len(parts))):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_secrets_out_and_sources_in() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    for secret in [".env", ".env.production", "data/mathfi-bot.db", "x.db-wal", ".git", ".venv"]:
        assert _ignored(secret, patterns), secret
    for build_args in ({}, {"WITH_SIMULATOR": "1"}):
        for source in context_sources(DOCKERFILE.read_text(), build_args):
            assert not _ignored(source, patterns), source
