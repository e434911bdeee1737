"""Print the mutation score from mutmut's results (`make mutation` runs it after mutmut).

    python -m tests.mutation_score ['bot.core.diff*' ...]

Reads mutants/**/*.py.meta (mutmut 3: the exit code of each mutant's test run); the
optional patterns keep only the matching mutant names, as `mutmut run` does. Score =
killed / (killed + survived + no tests + suspicious); mutants not run yet are left out
and counted apart. Exit 1 below TARGET (issue #20: at least 90 %).
"""

from __future__ import annotations

import fnmatch
import json
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 24, -24, 36, 37, 152, 255}  # a failing test, a timeout, a type error
SURVIVED = {0}
NO_TESTS = {5, 33}
TARGET = 90.0


def outcome(code: int | None) -> str:
    if code is None:
        return "not run"
    if code in KILLED:
        return "killed"
    if code in SURVIVED:
        return "survived"
    if code in NO_TESTS:
        return "no tests"
    if code == 34:
        return "skipped"
    return "suspicious"


def main(patterns: list[str]) -> int:
    metas = sorted(Path("mutants").rglob("*.py.meta"))
    if not metas:
        print("no mutmut results: run `make mutation` first")
        return 1
    total: Counter[str] = Counter()
    survivors: list[str] = []
    for meta in metas:
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        counts: Counter[str] = Counter()
        for name, code in codes.items():
            if patterns and not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            counts[outcome(code)] += 1
            if outcome(code) in {"survived", "no tests", "suspicious"}:
                survivors.append(name)
        if counts:
            print(f"{meta.relative_to('mutants').with_suffix('')}: {line(counts)}")
            total += counts
    print(f"total: {line(total)}")
    for name in survivors:
        print(f"  not killed: {name}  (mutmut show {name})")
    if score(total) < TARGET:
        print(f"below the {TARGET:g} % target")
        return 1
    return 0


def score(counts: Counter[str]) -> float:
    judged = counts["killed"] + counts["survived"] + counts["no tests"] + counts["suspicious"]
    return 100 * counts["killed"] / judged if judged else 100.0


def line(counts: Counter[str]) -> str:
    parts = ", ".join(f"{counts[k]} {k}" for k in sorted(counts))
    return f"mutation score {score(counts):.1f} % ({parts})"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
