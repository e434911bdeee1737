"""How noisy an algorithm's best-so-far is, for the stall warning (pure).

A climber at about the stall delta per window survives a window or not by its noise: the
running best of noisy values rises by their extremes, not by the mean curve. The stall
warning asks its stall to hold with the delta lowered by this noise (forecast.py).
"""

from __future__ import annotations

import math

from bot.core.projection import BestCurve


def best_noise(curve: BestCurve, now: float, span: float) -> float:
    """The residual spread (RMS, n - 3 degrees of freedom) of the best-so-far around its
    least-squares parabola over the points of the last `span` seconds: the curve's bend is
    not noise. 0 with fewer than 4 points."""
    points = [
        (t - now, b)
        for t, b in zip(curve.times, curve.bests, strict=True)
        if now - span <= t <= now
    ]
    n = len(points)
    if n < 4:
        return 0.0
    scale = span or 1.0
    xs = [t / scale for t, _ in points]
    ys = [b for _, b in points]
    s = [sum(x**k for x in xs) for k in range(5)]
    r = [sum(y * x**k for x, y in zip(xs, ys, strict=True)) for k in range(3)]
    matrix = [[s[0], s[1], s[2]], [s[1], s[2], s[3]], [s[2], s[3], s[4]]]
    det = _det(matrix)
    if abs(det) < 1e-12:
        return 0.0
    coef = [
        _det([[r[i] if j == k else matrix[i][j] for j in range(3)] for i in range(3)]) / det
        for k in range(3)
    ]
    sse = sum(
        (y - coef[0] - coef[1] * x - coef[2] * x * x) ** 2 for x, y in zip(xs, ys, strict=True)
    )
    return math.sqrt(sse / (n - 3))


def _det(m: list[list[float]]) -> float:
    return (
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    )
