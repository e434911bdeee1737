"""tests/mutation_score.py: the equivalents table of docs/testing.md and the score."""

from __future__ import annotations

import tomllib
from collections import Counter
from pathlib import Path

import pytest

from tests.mutation_score import DOC, SCOPE, equivalents, line, main, outcome, score

DOC_TEXT = """# Testing

### Score

| `bot.core.diff.x_a__mutmut_1` | not an equivalent: another table |

### Equivalent mutants

| mutant | why no test can tell it from the original |
|---|---|
| `bot.core.diff.x_headline_rank__mutmut_5` | only the order of the ranks matters |
| `bot.core.notification.xǁNotificationǁto_json__mutmut_2` | same JSON |

## Rules

| `bot.core.diff.x_b__mutmut_2` | after the section |
"""


def test_equivalents_are_the_first_column_of_their_own_section(tmp_path: Path) -> None:
    doc = tmp_path / "testing.md"
    doc.write_text(DOC_TEXT, encoding="utf-8")
    assert equivalents(doc) == {
        "bot.core.diff.x_headline_rank__mutmut_5",
        "bot.core.notification.xǁNotificationǁto_json__mutmut_2",
    }
    assert equivalents(tmp_path / "missing.md") == set()


def test_the_repository_lists_equivalents() -> None:
    assert equivalents(DOC), f"{DOC} has no equivalent mutants table"


def test_equivalents_leave_the_score_the_raw_score_keeps_them() -> None:
    counts = Counter({"killed": 9, "equivalent": 1})
    assert score(counts) == 100.0
    assert score(counts, raw=True) == 90.0
    assert line(counts) == "mutation score 100.0 %, raw 90.0 % (1 equivalent, 9 killed)"
    assert (
        line(Counter({"killed": 3, "survived": 1}))
        == "mutation score 75.0 % (3 killed, 1 survived)"
    )


def test_exit_codes() -> None:
    assert [outcome(c) for c in (None, 1, 0, 5, 34, 2)] == [
        "not run",
        "killed",
        "survived",
        "no tests",
        "skipped",
        "suspicious",
    ]


def test_the_scope_covers_only_mutated_files_and_every_one_of_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))
    only = {
        p.removesuffix(".py").replace("/", ".") for p in config["tool"]["mutmut"]["only_mutate"]
    }
    modules = {pattern.split(".x")[0].removesuffix(".*") for pattern in SCOPE}
    assert modules == only
    assert main(["--scope"]) == 0
    assert capsys.readouterr().out.split() == list(SCOPE)
