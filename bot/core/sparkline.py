"""Unicode sparklines for a short series of performances. Pure."""

from __future__ import annotations

import math
from collections.abc import Sequence

BARS = "▁▂▃▄▅▆▇█"
FLAT = BARS[3]


def sparkline(values: Sequence[float], *, width: int = 12, min_span: float = 0.0) -> str:
    """The last `width` finite values as bars scaled between their own min and max.

    A flat series gives a flat line at mid height; an empty one gives "". With
    `min_span`, a series moving less than that is drawn around the middle instead of
    being stretched to full height (so 0.9194 → 0.9200 does not look like a leap).
    """
    if width < 1:
        raise ValueError(f"width must be at least 1, got {width}")
    finite = [float(v) for v in values if math.isfinite(v)][-width:]
    if not finite:
        return ""
    low, high = min(finite), max(finite)
    if high <= low:
        return FLAT * len(finite)
    scale = 1.0 if math.isfinite(high - low) else 0.5  # keeps the span finite near float limits
    base, span = low * scale, high * scale - low * scale
    if span < min_span:
        base, span = base - (min_span - span) / 2, min_span
    top = len(BARS) - 1
    # Halves round down, so a series centred by min_span sits on the same bar as a flat one.
    levels = (math.ceil((v * scale - base) / span * top - 0.5) for v in finite)
    return "".join(BARS[min(max(level, 0), top)] for level in levels)
