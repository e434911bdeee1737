"""bot.core.duration: the duration forms people write, the length cap, the refusals."""

from __future__ import annotations

import pytest

from bot.core.duration import MAX_TEXT, duration_seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1d2h3m4s", 93784),
        ("2d3s", 172803),
        ("0m", 0),
        ("1H30M", 5400),
        (" 1 h\t30 m ", 5400),
        ("1day", 86400),
        ("2days", 172800),
        ("1hr", 3600),
        ("2hrs", 7200),
        ("1hour", 3600),
        ("2hours", 7200),
        ("5min", 300),
        ("5mins", 300),
        ("1minute", 60),
        ("5minutes", 300),
        ("10sec", 10),
        ("10secs", 10),
        ("1second", 1),
        ("10seconds", 10),
        ("007m", 420),
    ],
)
def test_duration_forms(text: str, seconds: int) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "   ", "30", "m", "1.5h", "-1h", "1w", "1h1h", "30m1h", "2h please", "1 5"]
)
def test_what_is_not_a_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"^not a duration: ") as caught:
        duration_seconds(text)
    assert str(caught.value) == f"not a duration: {text!r}"


def test_the_length_cap_counts_the_text_without_its_spaces() -> None:
    at_cap = "0" * (MAX_TEXT - 2) + "1h"
    assert len(at_cap) == MAX_TEXT
    assert duration_seconds(at_cap) == 3600
    assert duration_seconds(" ".join(at_cap)) == 3600  # spaces are not counted
    over = "0" + at_cap
    with pytest.raises(ValueError, match=r"^not a duration: ") as caught:
        duration_seconds(over)
    assert str(caught.value) == f"not a duration: {over[:MAX_TEXT]!r}"
