"""Learning curves of the simulated algorithms: one shape per family, drawn from a seed.

A curve is a pure function of curve time plus Gaussian noise: `sample` makes exactly one
RNG draw, so a run stays reproducible whatever the polling pattern. Curve time is the
running time divided by `time_scale` (Rules.time_scale): a scale of 0.1 plays the same
curves ten times faster, for lifecycles that run in seconds with small rules.

Families (natural jobs pick one per algorithm from the job's RNG; tests may restrict them):
- saturating: exponential approach to a plateau (the legacy shape);
- early_plateau: a fast rise that levels off within a few minutes, then stalls;
- slow_climber: a long linear climb to a plateau, often still rising at the time budget;
- noisy: a saturating curve with several times the usual noise;
- late_bloomer: a slow crawl (just above the stall rule's pace), then a sigmoid jump;
- step_wise: flat stretches and sudden jumps, ending on a last plateau.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

FAMILIES = (
    "saturating",
    "early_plateau",
    "slow_climber",
    "noisy",
    "late_bloomer",
    "step_wise",
)
# Centre of each algorithm's natural plateau: they level off at different heights.
PLATEAUS = {"BSEV01": 0.72, "BSEV02": 0.82, "BSIX01": 0.80, "BFIF01": 0.76}


@dataclass(frozen=True)
class Curve:
    """`start` rising to `height`; the family decides the path. Clipped to [0, cap].

    saturating/early_plateau/noisy: height - (height - start) * exp(-t / tau).
    slow_climber: start + slope * t up to height.
    late_bloomer: start + slope * t, plus a bloom of (height - start - slope * delay) *
    sigmoid((t - delay) / width), the whole held below height.
    step_wise: start plus each (time, jump) of `steps` once its time has passed (5 s ramp).
    """

    start: float
    height: float
    tau: float
    noise: float = 0.004
    cap: float = 1.0
    family: str = "saturating"
    slope: float = 0.0
    delay: float = 0.0
    width: float = 1.0
    steps: tuple[tuple[float, float], ...] = ()

    def mean(self, seconds: float) -> float:
        if self.family == "slow_climber":
            return min(self.height, self.start + self.slope * seconds)
        if self.family == "late_bloomer":
            z = max(-60.0, min(60.0, (seconds - self.delay) / self.width))
            amplitude = self.height - self.start - self.slope * self.delay
            bloom = amplitude / (1.0 + math.exp(-z))
            return min(self.height, self.start + self.slope * seconds + bloom)
        if self.family == "step_wise":
            climbed = sum(
                jump * min(1.0, max(0.0, (seconds - at) / 5.0)) for at, jump in self.steps
            )
            return self.start + climbed
        return self.height - (self.height - self.start) * math.exp(-seconds / self.tau)

    def sample(self, seconds: float, rng: random.Random) -> float:
        value = self.mean(seconds) + rng.gauss(0.0, self.noise)
        return round(min(max(value, 0.0), self.cap), 4)


def draw_curve(rng: random.Random, algorithm: str, family: str) -> Curve:
    """A natural curve of `family` for `algorithm`, drawn from `rng`."""
    height = min(0.99, PLATEAUS.get(algorithm, 0.78) + rng.uniform(-0.12, 0.12))
    start = min(rng.uniform(0.45, 0.55), height - 0.01)
    if family == "saturating":
        return Curve(start, height, rng.uniform(60.0, 400.0))
    if family == "early_plateau":
        height = max(start + 0.02, height - rng.uniform(0.02, 0.1))
        return Curve(start, height, rng.uniform(20.0, 80.0), noise=0.003, family=family)
    if family == "slow_climber":
        slope = rng.uniform(0.021, 0.032) / 300.0
        height = min(0.99, start + slope * rng.uniform(1800.0, 5400.0))
        return Curve(start, height, 1.0, noise=0.003, family=family, slope=slope)
    if family == "noisy":
        noise = rng.uniform(0.01, 0.02)
        return Curve(start, height, rng.uniform(100.0, 600.0), noise=noise, family=family)
    if family == "late_bloomer":
        slope = rng.uniform(0.022, 0.03) / 300.0
        delay, width = rng.uniform(400.0, 1500.0), rng.uniform(60.0, 200.0)
        height = min(0.99, start + slope * delay + max(0.05, height - start - slope * delay))
        return Curve(
            start, height, 1.0, noise=0.003, family=family, slope=slope, delay=delay, width=width
        )
    if family == "step_wise":
        steps: list[tuple[float, float]] = []
        at, left = 0.0, height - start
        while left > 0.02:
            at += rng.uniform(120.0, 280.0)
            jump = min(left, rng.uniform(0.025, 0.07))
            steps.append((at, jump))
            left -= jump
        return Curve(
            start, start + sum(j for _, j in steps), 1.0, 0.002, family=family, steps=tuple(steps)
        )
    raise ValueError(f"unknown curve family {family!r}; expected one of {FAMILIES}")
