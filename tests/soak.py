"""Repeated whole-suite runs under a CPU hog (issue #20: "5 repeated runs of the whole
suite under a CPU hog with 0 failures").

    python -m tests.soak [--runs 5] [--hogs 1] [--make make] [--logs DIR]

Starts `--hogs` busy-looping processes (each one takes a core from the tests, at the
tests' own priority) and runs `make pytest` (both parts of `make test`, `--long`
included, pytest-randomly reordering every run) `--runs` times, the serial part even when
the parallel part failed (`make -i`). One JSON line per run (the exit code, the wall time,
the pytest summary lines, the random seeds, the failed test ids, the run's whole output
in `--logs`), then a summary line; exits 1 when any run failed. The hogs stop when the
script ends, however it ends.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

_SUMMARY = re.compile(r"^=+ (.*(passed|failed|error).*) in [\d.]+s")
_SEED = re.compile(r"Using --randomly-seed=(\d+)")
_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)")


def _burn() -> None:  # pragma: no cover - runs in the hog processes, killed at the end
    x = 0
    while True:
        x = (x * 31 + 7) % 1_000_003


def parse(output: str) -> dict[str, object]:
    """What one `make pytest` run said: its summary lines, seeds and failed test ids."""
    lines = output.splitlines()
    return {
        "summaries": [m.group(1) for line in lines if (m := _SUMMARY.match(line))],
        "seeds": [int(m.group(1)) for line in lines if (m := _SEED.search(line))],
        "failed": [m.group(1) for line in lines if (m := _FAILED.match(line))],
    }


def failed(rc: int, result: dict[str, object], parts: int = 2) -> bool:
    """A run failed unless make succeeded and both parts summed up without a failure."""
    summaries = result["summaries"]
    assert isinstance(summaries, list)
    bad = any("failed" in s or "error" in s for s in summaries)
    return rc != 0 or bad or len(summaries) != parts or bool(result["failed"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hogs", type=int, default=1, help="busy processes (default 1)")
    parser.add_argument("--make", default="make")
    parser.add_argument("--logs", type=Path, default=None, help="where each run's output goes")
    args = parser.parse_args(argv)
    logs: Path = args.logs or Path(tempfile.mkdtemp(prefix="soak-"))
    logs.mkdir(parents=True, exist_ok=True)
    hogs = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(args.hogs)]
    for hog in hogs:
        hog.start()
    failures = 0
    try:
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            done = subprocess.run(
                [args.make, "-i", "--no-print-directory", "pytest"],
                capture_output=True,
                text=True,
                check=False,
            )
            output = done.stdout + done.stderr
            log = logs / f"run-{run}.log"
            log.write_text(output)
            result = parse(output)
            bad = failed(done.returncode, result)
            failures += bad
            line = {"run": run, "ok": not bad, "seconds": round(time.monotonic() - started)}
            print(json.dumps(line | result | {"log": str(log)}), flush=True)
    finally:
        for hog in hogs:
            hog.terminate()
    print(json.dumps({"runs": args.runs, "hogs": args.hogs, "failed_runs": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
