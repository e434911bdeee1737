"""When a job first reaches its target: the first passage over its running algorithms (pure).

MathFi completes a job at the first *sample* of any running algorithm at or above the
target, so the ETA is a first passage of noisy values, not the crossing of one smooth
trend. Per algorithm, the raw values it reported (not the running best) are fitted by
least squares with a straight line and with H - A e^(-t/tau) for each tau of a grid; each
fit is weighted by its likelihood, e^(-(SSE - SSE_min) / 2 sigma^2), sigma being the
residual spread of the best fit (so a short, noisy history keeps several shapes in play
instead of betting on one). A fit whose weight is below MIN_WEIGHT of the total is dropped.

The job's survival S(s), the chance that no sample reached the target in the next s
seconds, is the product over algorithms of the weighted mixture of each fit's survival,
one independent sample per SAMPLE_EVERY seconds with the fit's mean and sigma, and an
algorithm draws no more samples once it is projected to stop (`stops_in`). The ETA is the
median first passage, S = 1/2; its range the quartiles (S = 3/4 and 1/4, the late one None
when S stays above 1/4). The scan's step starts at SAMPLE_EVERY and grows by STEP_GROWTH
each step (~40 steps for an hour); it ends at the last quartile it can reach or the last
stop. Cost: 10 least-squares fits per algorithm over the trend's points (the regressors are
shared with the trend's fit, projection.Basis) and the scan: a fraction of a millisecond.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.core.projection import TAUS, Basis, least_squares

DOF = 3  # fitted parameters: level, slope and tau
MIN_WEIGHT = 0.05  # a fit below this share of the total weight is dropped
MIN_SIGMA = 0.001  # MathFi reports 4 decimals: no spread below rounding's
SAMPLE_EVERY = 30.0  # one independent sample per this many seconds (the default poll)
STEP_GROWTH = 1.05  # the scan's step grows by this factor each step
_SQRT2 = math.sqrt(2.0)
_ALMOST_SURE = 1.0 - 1e-12  # a sample above the target: keeps log1p(-p) finite
_FAR = 6.0  # a fit whose mean stays this many sigmas below the target never arrives
_QUARTILES = (0.75, 0.5, 0.25)  # survival at the early end, the median, the late end


@dataclass(frozen=True, slots=True)
class Shape:
    """A fitted mean curve, `s` seconds from now: level + slope * s for a line (tau
    infinite), else level + slope * e^(-s / tau)."""

    level: float
    slope: float
    tau: float = math.inf

    def mean(self, s: float) -> float:
        if math.isinf(self.tau):
            return self.level + self.slope * s
        return self.level + self.slope * math.exp(-s / self.tau)


@dataclass(frozen=True, slots=True)
class Reading:
    """One algorithm's fits with their weights (summing to 1), the noise, and when it is
    projected to stop (seconds from now)."""

    shapes: tuple[tuple[float, Shape], ...]
    sigma: float
    stops_in: float
    best: float  # the best value it reported: at the target, it is there now


@dataclass(frozen=True, slots=True)
class Arrival:
    """Seconds from now: the median first passage and its quartiles (`late` None when the
    chance of arriving at all stays below 3/4), and the algorithm most likely to be first."""

    early: float
    median: float
    late: float | None
    algorithm: str


def read(values: Sequence[float], basis: Basis, *, stops_in: float, best: float) -> Reading:
    """The weighted fits of an algorithm's raw values at the basis' points (at least 4)."""
    taus = (math.inf, *TAUS)
    fitted = [
        (sse, Shape(level, slope, taus[i]))
        for i, (sse, slope, level) in enumerate(least_squares(basis.columns, values))
    ]
    least = min(sse for sse, _ in fitted)
    if math.isinf(least):  # all at one time: no shape, so no arrival but by its best
        return Reading((), MIN_SIGMA, stops_in, best)
    sigma = max(MIN_SIGMA, math.sqrt(least / max(1, len(values) - DOF)))
    scored = [(math.exp((least - sse) / (2.0 * sigma * sigma)), shape) for sse, shape in fitted]
    total = sum(w for w, _ in scored)
    kept = [(w, shape) for w, shape in scored if w >= MIN_WEIGHT * total]
    total = sum(w for w, _ in kept)
    return Reading(tuple((w / total, shape) for w, shape in kept), sigma, stops_in, best)


def first_passage(readings: Mapping[str, Reading], target: float) -> Arrival | None:
    """The job's first passage over `target` (None: less likely than not within the stops).
    An algorithm whose best is already at the target arrives now."""
    there = [name for name, r in readings.items() if r.best >= target]
    if there:
        return Arrival(0.0, 0.0, 0.0, there[0])
    tracks = [_Track(name, r, target) for name, r in readings.items()]
    floor = math.prod(t.idle for t in tracks)  # the job's survival never falls below it
    wanted = sum(level > floor for level in _QUARTILES)
    if wanted < 2:  # (then some shape may arrive, so some track has shapes)
        return None
    tracks = [t for t in tracks if t.shapes]
    horizon = max(t.stop for t in tracks)
    found: list[float] = []
    seen: list[list[float]] = []  # each algorithm's survival at each quartile found
    s, step, before = 0.0, SAMPLE_EVERY, 1.0
    while s < horizon:
        step = min(step, horizon - s)
        s += step
        survivals = [t.advance(s, step, target) for t in tracks]
        job = math.prod(survivals)
        while len(found) < wanted and job <= _QUARTILES[len(found)]:
            found.append(s - step * (_QUARTILES[len(found)] - job) / (before - job))
            seen.append(survivals)
        if len(found) == wanted:
            break
        before = job
        step *= STEP_GROWTH
    if len(found) < 2:
        return None
    first = tracks[min(range(len(tracks)), key=seen[1].__getitem__)].name
    return Arrival(found[0], found[1], found[2] if len(found) > 2 else None, first)


class _Track:
    """One algorithm in the scan: its shapes that may arrive, each with its cumulative
    hazard, and the weight of those that cannot (they come no closer than _FAR sigmas to
    the target before the stop; each shape is monotone, so its highest mean is now or at
    the stop)."""

    __slots__ = ("hazards", "idle", "name", "shapes", "sigma", "stop")

    def __init__(self, name: str, reading: Reading, target: float) -> None:
        bar = target - _FAR * reading.sigma
        stop = reading.stops_in
        self.name, self.sigma, self.stop = name, reading.sigma, stop
        self.shapes = [
            (w, shape)
            for w, shape in reading.shapes
            if stop > 0 and max(shape.mean(0.0), shape.mean(stop)) >= bar
        ]
        self.idle = max(0.0, 1.0 - sum(w for w, _ in self.shapes))
        self.hazards = [0.0] * len(self.shapes)

    def advance(self, s: float, step: float, target: float) -> float:
        """Add the samples of (s - step, s] drawn before the stop (at the mean of the
        step's end, or of the stop within it); the algorithm's survival at s."""
        until = min(s, self.stop)
        samples = (until - (s - step)) / SAMPLE_EVERY
        survival = self.idle
        for k, (weight, shape) in enumerate(self.shapes):
            if samples > 0:
                z = (target - shape.mean(until)) / self.sigma
                p = min(0.5 * math.erfc(z / _SQRT2), _ALMOST_SURE)
                self.hazards[k] -= math.log1p(-p) * samples
            survival += weight * math.exp(-self.hazards[k])
        return survival
