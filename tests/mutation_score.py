"""Print the mutation score from mutmut's results (`make mutation` runs it after mutmut).

    python -m tests.mutation_score ['bot.core.diff*' ...]
    python -m tests.mutation_score --scope    # prints SCOPE (`make mutation` runs it)

Reads mutants/**/*.py.meta (mutmut 3: the exit code of each mutant's test run); the
optional patterns keep only the matching mutant names, as `mutmut run` does; without
patterns, SCOPE: every mutant of the pure modules, and of the sender's modules that also do
I/O only those of the functions that decide (mutmut mutates whole files: the rest of those
files is I/O plumbing, left to the sender's behaviour tests, not to a score). Score =
killed / (killed + survived + no tests + suspicious); mutants not run yet are left out
and counted apart. A survivor listed in docs/testing.md's "Equivalent mutants" table
(with the reason no test can tell it from the original) counts as "equivalent" and is left
out of the score, as the usual definition of the score does; the raw score (equivalents
counted as survivors) is printed too. Exit 1 when a module or the total is below TARGET
(issue #20: at least 90 %).
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 24, -24, 36, 37, 152, 255}  # a failing test, a timeout, a type error
SURVIVED = {0}
NO_TESTS = {5, 33}
TARGET = 90.0
DOC = Path("docs/testing.md")
EQUIVALENTS_HEADING = "### Equivalent mutants"
SCOPE = (
    "bot.core.diff.*",
    "bot.core.fanout.*",
    "bot.core.notification.*",
    "bot.core.duration.*",
    "bot.core.forecast.*",
    "bot.core.projection.*",
    "bot.core.arrival.*",
    "bot.core.forecast_warnings.*",
    "bot.core.forecast_noise.*",
    "bot.core.forecast_state.*",
    "bot.core.sparkline.*",
    "bot.core.broadcast.*",
    "bot.slack.command_text.*",
    "bot.slack.render.*",
    "bot.slack.card.*",
    "bot.slack.text.*",
    "bot.slack.audit_render.*",
    "bot.slack.digest_render.*",
    "bot.slack.actions_render.*",
    "bot.slack.warning_text.*",
    # the sender's decisions: how a failure is classified, retried, given up, paced, which
    # messages a lookup adopts, which cards are edited, when an interrupted row is looked up,
    # how urgent a row is, what a final reply carries, the workspace's budget per method
    "bot.core.priority.*",
    "bot.slack.merge.*",
    "bot.slack.budget.*",
    "bot.slack.api.*",
    "bot.errors.xǁSlackDeliveryErrorǁ*",
    "bot.slack.delivery.xǁDeliveryǁ_failed__*",
    "bot.slack.delivery.xǁDeliveryǁready__*",
    "bot.slack.delivery.xǁDeliveryǁ_paced__*",
    "bot.slack.delivery.xǁDeliveryǁverify__*",
    "bot.slack.live_cards.xǁLiveCardsǁdue__*",
    "bot.slack.live_cards.xǁLiveCardsǁrefresh__*",
    "bot.slack.reconcile.x_settle__*",
    "bot.slack.reconcile.x_requeue__*",
)
_LISTED = re.compile(r"^\| `([^`]+__mutmut_[0-9]+)` \|", re.MULTILINE)


def equivalents(doc: Path = DOC) -> set[str]:
    """The mutant names in the first column of the doc's "Equivalent mutants" table."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    _, found, section = text.partition(EQUIVALENTS_HEADING)
    if not found:
        return set()
    section = section.split("\n#", 1)[0]
    return set(_LISTED.findall(section))


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
    if patterns == ["--scope"]:
        print(" ".join(SCOPE))
        return 0
    patterns = patterns or list(SCOPE)
    metas = sorted(Path("mutants").rglob("*.py.meta"))
    if not metas:
        print("no mutmut results: run `make mutation` first")
        return 1
    listed = equivalents()
    total: Counter[str] = Counter()
    survivors: list[str] = []
    stale: list[str] = []
    low = False
    for meta in metas:
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        counts: Counter[str] = Counter()
        for name, code in codes.items():
            if patterns and not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            result = outcome(code)
            if name in listed and result == "survived":
                result = "equivalent"
            elif name in listed and result == "killed":
                stale.append(name)
            counts[result] += 1
            if result in {"survived", "no tests", "suspicious"}:
                survivors.append(name)
        if counts:
            print(f"{meta.relative_to('mutants').with_suffix('')}: {line(counts)}")
            total += counts
            low = low or score(counts) < TARGET
    print(f"total: {line(total)}")
    for name in survivors:
        print(f"  not killed: {name}  (mutmut show {name})")
    for name in stale:
        print(f"  listed as equivalent in {DOC} but killed: {name}")
    if low or score(total) < TARGET:
        print(f"below the {TARGET:g} % target")
        return 1
    return 0


def score(counts: Counter[str], *, raw: bool = False) -> float:
    """Killed over judged; `raw` counts the equivalent mutants as survivors."""
    judged = counts["killed"] + counts["survived"] + counts["no tests"] + counts["suspicious"]
    judged += counts["equivalent"] if raw else 0
    return 100 * counts["killed"] / judged if judged else 100.0


def line(counts: Counter[str]) -> str:
    parts = ", ".join(f"{counts[k]} {k}" for k in sorted(counts))
    raw = f", raw {score(counts, raw=True):.1f} %" if counts["equivalent"] else ""
    return f"mutation score {score(counts):.1f} %{raw} ({parts})"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
