"""The soak script's reading of a `make pytest` run (tests/soak.py)."""

from __future__ import annotations

from tests.soak import failed, parse

OUTPUT = """\
Using --randomly-seed=1234
........F.
FAILED tests/test_x.py::test_one - AssertionError: boom
ERROR tests/test_y.py::test_two
=========== 1 failed, 8 passed, 1 error in 12.34s ===========
Using --randomly-seed=99
=========== 11 passed in 120.00s (0:02:00) ===========
"""


def test_parse_reads_summaries_seeds_and_failures() -> None:
    assert parse(OUTPUT) == {
        "summaries": ["1 failed, 8 passed, 1 error", "11 passed"],
        "seeds": [1234, 99],
        "failed": ["tests/test_x.py::test_one", "tests/test_y.py::test_two"],
    }


def test_parse_of_a_clean_run_has_no_failures() -> None:
    assert parse("=== 3 passed in 1.00s ===\n")["failed"] == []


def test_a_run_fails_on_a_failed_test_a_missing_part_or_a_make_error() -> None:
    clean = parse("=== 3 passed in 1.00s ===\n=== 11 passed in 2.00s ===\n")
    assert not failed(0, clean)
    assert failed(2, clean)  # make itself failed
    assert failed(0, parse(OUTPUT))  # a failed test and an error
    assert failed(0, parse("=== 3 passed in 1.00s ===\n"))  # the serial part never ran
