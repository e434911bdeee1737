"""bot.core.sparkline beyond the table in tests/test_render.py: the defaults, width 1,
and min_span measured on the values as given."""

from __future__ import annotations

from bot.core.sparkline import BARS, sparkline


def test_the_default_width_keeps_the_last_twelve_values() -> None:
    values = [float(v) for v in range(13)]
    assert sparkline(values) == sparkline(values, width=12)
    assert len(sparkline(values)) == 12
    assert sparkline(values)[0] == BARS[0]  # 0.0 is dropped: 1.0 is the lowest kept


def test_by_default_a_small_move_is_drawn_full_height() -> None:
    assert sparkline([0.9194, 0.92]) == "▁█"


def test_width_one_keeps_only_the_last_value() -> None:
    assert sparkline([1.0, 2.0, 3.0], width=1) == "▄"


def test_min_span_compares_with_the_span_of_the_values_themselves() -> None:
    # 0.015 is wider than min_span 0.01: stretched to full height, not centred.
    assert sparkline([0.0, 0.015], min_span=0.01) == "▁█"
    # 0.005 is narrower: drawn around the middle.
    assert sparkline([0.0, 0.005], min_span=0.01) == "▃▆"
