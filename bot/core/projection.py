"""One algorithm's learning curve projected forward under MathFi's stop rules (pure).

Input: the algorithm's performance points (time, value), oldest first. MathFi's stall rule
looks at the running best, so everything here works on the best-so-far step function B.
The trend is a least-squares fit of the last `fit_span` seconds of B: a straight line,
or an exponential approach H - A e^(-t/tau) over a grid of tau; a bend is preferred only
when it fits clearly better than the line (noise on a steady climb must not read as a
plateau). Its rate is scaled down by how long the best has not risen by RISE (a fit across
a jump must not outlive the flat stretch that follows, and a noisy plateau's running best
creeps up by the noise's extremes without making progress).

The stall rule stops the algorithm at the first moment its best gained less than `delta`
over the last `window`. Within the next window, part of that window is known history: the
projected gain must make up what the past part did not bring. Beyond it only the model
counts. The budget stops it at started_at + budget.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from operator import mul

_MAX_EXPONENT = 700.0  # e^700 ~ 1e304, just inside a float
TAUS = (45.0, 70.0, 100.0, 150.0, 220.0, 330.0, 500.0, 750.0, 1100.0)
# A curve is read as bending (exponential) only when that fits clearly better than a line:
# noise on a steady climb must not make it look like it levels off.
_BEND_GAIN = 0.6
# The quiet clock counts from the last rise of the best by this much (since the last such
# rise): the creep of a noisy plateau's running best is not progress.
RISE = 0.005
_SCAN_STEPS = 24  # checks of the stall rule within the next window (every window / 24)
# A regressor whose spread is below this share of its mean square has none (all xs equal:
# one-pass sums leave rounding dust, not zero).
_NO_SPREAD = 1e-12


@dataclass(frozen=True, slots=True)
class Trend:
    """The projected gain of the best value: rate * tau * (1 - e^(-s/tau)), or rate * s
    when `tau` is infinite (a straight line)."""

    rate: float  # performance units per second, now
    tau: float = math.inf

    @property
    def linear(self) -> bool:
        return math.isinf(self.tau)

    @property
    def headroom(self) -> float:
        """How much more the curve gains in total (infinite when linear)."""
        return math.inf if self.linear else self.rate * self.tau

    def gain(self, seconds: float) -> float:
        if seconds <= 0 or self.rate <= 0:
            return 0.0
        if self.linear:
            return self.rate * seconds
        return self.headroom * -math.expm1(-seconds / self.tau)

    def time_to_gain(self, amount: float) -> float | None:
        """Seconds until the best has gained `amount`; None if it never does."""
        if amount <= 0:
            return 0.0
        if self.rate <= 0:
            return None
        if self.linear:
            return amount / self.rate
        if amount >= self.headroom:
            return None
        return -self.tau * math.log1p(-amount / self.headroom)

    def scaled(self, factor: float) -> Trend:
        """The same shape with `factor` times the rate (for a range)."""
        return Trend(self.rate * factor, self.tau)


class BestCurve:
    """The best-so-far step function of an algorithm's points (and the values themselves)."""

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        self.times = [at for at, _ in points]
        self.values = [value for _, value in points]
        self.bests = list(accumulate(self.values, max))
        self.last_rise = -math.inf  # when the best last went up by RISE or more
        counted = -math.inf
        for at, best in zip(self.times, self.bests, strict=True):
            if best >= counted + RISE:
                counted, self.last_rise = best, at

    def __len__(self) -> int:
        return len(self.times)

    @property
    def first_at(self) -> float:
        return self.times[0]

    def at(self, when: float) -> float:
        """B(when); before the first point, the first value."""
        index = bisect.bisect_right(self.times, when)
        return self.bests[index - 1 if index else 0]

    def since(self, when: float, *, min_points: int) -> int:
        """The index of the first point at or after `when`, or of the last `min_points`."""
        return max(0, min(bisect.bisect_left(self.times, when), len(self) - min_points))

    def basis(self, now: float, span: float, *, min_points: int) -> Basis:
        """The fits' regressors at the points of the last `span` seconds (at least
        `min_points`)."""
        return Basis(self.times, self.since(now - span, min_points=min_points), now)

    def trend(
        self,
        now: float,
        span: float,
        *,
        quiet: float,
        min_points: int = 4,
        basis: Basis | None = None,
    ) -> Trend:
        """Least-squares fit of the last `span` seconds of B (at least `min_points` points,
        plus B(now) at now): a straight line, or H - A e^(-t/tau) for each tau of a grid;
        the smallest squared error wins. Its rate is then scaled by 1 - (time since the best
        last rose by RISE) / `quiet`: a fit across a jump must not outlive the flat stretch
        after it. `basis`: regressors already computed at `now` from an earlier point on
        (else they are computed here)."""
        first = self.since(now - span, min_points=min_points)
        if basis is None or basis.start > first:
            basis = Basis(self.times, first, now)
        skip = first - basis.start
        line, *bends = basis.columns
        columns = [[*line[skip:], 0.0], *([*column[skip:], 1.0] for column in bends)]
        ys = [*self.bests[first:], self.at(now)]
        best = (math.inf, Trend(0.0))
        for (sse, slope, _), tau in zip(least_squares(columns, ys), (math.inf, *TAUS), strict=True):
            # For the exponential, u = e^(-x/tau) and dy/dt at x = 0 is -slope / tau.
            trend = Trend(max(slope if math.isinf(tau) else -slope / tau, 0.0), tau)
            if sse < best[0] * (_BEND_GAIN if math.isinf(best[1].tau) else 1.0):
                best = (sse, trend)
        silence = max(0.0, now - self.last_rise)
        return best[1].scaled(max(0.0, 1.0 - silence / quiet))


class Basis:
    """The fits' regressors at a curve's points from index `start` on, x = time - now: x
    for the line, then e^(-x/tau) for each tau of TAUS. Computed once per poll and shared by
    the fit of the running best and that of the raw values (arrival.py)."""

    __slots__ = ("columns", "start")

    def __init__(self, times: Sequence[float], start: int, now: float) -> None:
        xs = [t - now for t in times[start:]]
        exp = math.exp
        self.start = start
        # e^(-x/tau) overflows a float beyond ~709: points more than ~9 h old for the
        # shortest tau (a sparse history under a long time budget). Clamped, such a column
        # is flat where it overflowed and its bend loses to the line.
        if xs and -xs[0] / TAUS[0] > _MAX_EXPONENT:
            bends = [[exp(min(-x / tau, _MAX_EXPONENT)) for x in xs] for tau in TAUS]
        else:  # the usual case, without a min() per point
            bends = [[exp(-x / tau) for x in xs] for tau in TAUS]
        self.columns = [xs, *bends]


def least_squares(
    columns: Sequence[Sequence[float]], ys: Sequence[float]
) -> list[tuple[float, float, float]]:
    """Least squares y = level + slope * u for each regressor column u: (squared error,
    slope, level) per column. A column without spread (all its us equal) gives an infinite
    error, a zero slope and the mean as level."""
    n = len(ys)
    mean_y = sum(ys) / n
    centred = [y - mean_y for y in ys]
    syy = sum(map(mul, centred, centred))
    out = []
    for us in columns:
        total = sum(us)
        suu = sum(map(mul, us, us)) - total * total / n
        if suu <= _NO_SPREAD * total * total / n:
            out.append((math.inf, 0.0, mean_y))
            continue
        slope = sum(map(mul, us, centred)) / suu
        sse = max(0.0, syy - slope * slope * suu)
        out.append((sse, slope, mean_y - slope * total / n))
    return out


def stall_in(
    curve: BestCurve,
    trend: Trend,
    *,
    now: float,
    window: float,
    delta: float,
    earliest: float,
    horizon: float,
) -> float | None:
    """Seconds from `now` until the stall rule would stop the algorithm (None: not within
    `horizon`). `earliest` is the first moment the rule applies (start + window)."""
    best_now = curve.at(now)
    first = max(0.0, earliest - now)
    step = window / _SCAN_STEPS
    s = first
    while s < window and s <= horizon:
        if best_now + trend.gain(s) - curve.at(now + s - window) < delta:
            return s
        s += step
    s = max(s, window)
    if trend.linear:
        return s if trend.rate * window < delta and s <= horizon else None
    # Beyond one window: gain(s) - gain(s - window) = headroom e^{-s/tau} (e^{window/tau} - 1).
    spread = trend.headroom * math.expm1(window / trend.tau)
    after = trend.tau * math.log(spread / delta) if spread > delta else 0.0
    stop = max(s, after)
    return stop if stop <= horizon else None
