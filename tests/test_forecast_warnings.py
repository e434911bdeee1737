"""The warnings' rules of issue #12 (W8): a clear central miss stands for the first of the
two polls, the hopeful reading hopes about the best's noise too, and a stall warning only
for a stall that its best's noise does not explain."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from bot.core.forecast import ForecastRules, JobForecast, Verdict, forecast_job, verdict_after
from bot.core.forecast_noise import best_noise
from bot.core.projection import BestCurve
from tests.test_forecast import T0, Curve, history, line, saturating, snapshot

RULES = ForecastRules()
NOW = 1_000.0


# --------------------------------------------------------------------- clear miss
@pytest.mark.parametrize(
    ("hopeful", "earlier_hopeful", "earlier_margin", "expected"),
    [
        (-0.05, 0.03, -0.1, Verdict.AT_RISK),  # the poll before missed clearly, centrally
        (-0.05, 0.03, -0.08, Verdict.ON_TRACK),  # exactly -clear_margin is not below it
        (-0.05, 0.03, -0.05, Verdict.ON_TRACK),  # a small central miss still waits a poll
        (-0.05, 0.03, None, Verdict.ON_TRACK),  # the poll before had no reading
        (-0.005, 0.03, -0.3, Verdict.ON_TRACK),  # this poll's hopeful reading must miss
        (-0.05, -0.05, None, Verdict.AT_RISK),  # the two hopeful readings agree, as before
    ],
)
def test_a_clear_central_miss_stands_for_the_first_of_the_two_polls(
    hopeful: float, earlier_hopeful: float, earlier_margin: float | None, expected: Verdict
) -> None:
    got = verdict_after(hopeful, hopeful, Verdict.ON_TRACK, RULES, earlier_hopeful, earlier_margin)
    assert got is expected


def test_a_clear_miss_does_not_let_an_at_risk_job_off_the_hook() -> None:
    assert verdict_after(-0.01, 0.05, Verdict.AT_RISK, RULES, 0.05, -0.5) is Verdict.AT_RISK


def test_forecast_job_passes_the_last_poll_s_central_margin() -> None:
    curves = {"A": saturating(0.5, 0.7, 150)}
    points, snap = history(curves, until=600), snapshot(["A"], target=0.85)

    def after(best_projected: float) -> Verdict:
        previous = JobForecast(
            Verdict.ON_TRACK, 0.85, best_projected=best_projected, hopeful_margin=0.05
        )
        kwargs = {"rules": RULES, "previous": previous, "started_at": T0}
        return forecast_job(points, snap, now=T0 + 600, **kwargs).verdict  # type: ignore[arg-type]

    assert RULES.clear_margin == 0.08
    assert after(0.85 - 0.2) is Verdict.AT_RISK  # its central reading missed by 0.2
    assert after(0.85 - 0.05) is Verdict.ON_TRACK  # by 0.05: wait for a second hopeful miss


# --------------------------------------------------------------------- noise of the best
def curve_of(points: list[tuple[float, float]]) -> BestCurve:
    return BestCurve(points)


def stairs_4(apart: float) -> list[tuple[float, float]]:
    """Four points `apart` seconds apart ending at NOW: 0.5, 0.5, 0.51, 0.51."""
    return [(NOW - apart * k, y) for k, y in zip((3, 2, 1, 0), (0.5, 0.5, 0.51, 0.51), strict=True)]


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([(NOW, 0.5)], 0.0),
        ([(NOW - 60, 0.5), (NOW - 30, 0.6), (NOW, 0.7)], 0.0),  # fewer than 4 points
        ([(NOW - 30 * i, 0.8 - 0.01 * i) for i in range(10, -1, -1)], 0.0),  # a line
        ([(NOW - 30 * i, 0.8 - 0.0002 * i * i) for i in range(10, -1, -1)], 0.0),  # a bend
        ([(NOW - 30 * i, 0.5) for i in range(5, -1, -1)], 0.0),  # flat
        ([(NOW - 90, 0.5), (NOW - 60, 0.5), (NOW - 30, 0.5), (NOW, 0.53)], 0.00671),
        # only the last `span` (300 s) counts: the jump at NOW - 600 is outside it
        ([(NOW - 600, 0.3), *[(NOW - 30 * i, 0.8 - 0.01 * i) for i in range(10, -1, -1)]], 0.0),
        ([(NOW, 0.5), (NOW, 0.6), (NOW, 0.7), (NOW, 0.8)], 0.0),  # one instant: no spread
        # four evenly spaced points whose third difference is 0.02: their spread around the
        # parabola is 0.02 / sqrt(20) (the cubic's contrast -1, 3, -3, 1), whatever the
        # spacing, once the points are far enough apart for the fit: the bar (a determinant
        # of 1e-12, x in units of the span) lies between 1.4 s and 1.5 s apart in 300 s
        (stairs_4(30.0), 0.02 / 20**0.5),
        (stairs_4(1.5), 0.02 / 20**0.5),
        (stairs_4(1.4), 0.0),
        (stairs_4(1.0), 0.0),
    ],
)
def test_best_noise_table(points: list[tuple[float, float]], expected: float) -> None:
    assert best_noise(curve_of(points), NOW, 300.0) == pytest.approx(expected, abs=1e-5)


def test_best_noise_is_the_spread_around_the_parabola() -> None:
    # A staircase (the running best of noisy values): its spread is the noise, whatever
    # rising line or bend it sits on, and it scales with the steps.
    stairs = [0.0, 0.0, 0.012, 0.012, 0.012, 0.03, 0.03, 0.041, 0.041, 0.06]

    def noise(scale: float, trend: Curve) -> float:
        points = [
            (NOW - 30 * (9 - i), 0.5 + scale * s + trend(30.0 * i)) for i, s in enumerate(stairs)
        ]
        return best_noise(curve_of(points), NOW, 300.0)

    plain = noise(1.0, lambda t: 0.0)
    assert plain > 0.003
    assert noise(1.0, lambda t: 0.0001 * t) == pytest.approx(plain, abs=1e-9)
    assert noise(1.0, lambda t: 2e-7 * t * t) == pytest.approx(plain, abs=1e-9)
    assert noise(2.0, lambda t: 0.0) == pytest.approx(2 * plain, abs=1e-9)
    old = curve_of([(NOW - 30 * (5 - i), 0.5 + i) for i in range(6)])
    assert best_noise(old, NOW + 1_000, 300.0) == 0.0  # no point within the span


# --------------------------------------------------------------------- the stall warning
def noisy_line(start: float, per_window: float, sd: float, seed: int) -> Curve:
    rng = random.Random(seed)
    jitter = [rng.gauss(0.0, sd) for _ in range(400)]
    return lambda t: start + per_window * t / 300.0 + jitter[int(t // 30)]


def warned(curve: Curve, at: float, rules: ForecastRules) -> bool:
    points, snap = history({"A": curve}, until=at), snapshot(["A"], target=0.95)
    got = forecast_job(points, snap, now=T0 + at, rules=rules, started_at=T0)
    return got.stall_warning is not None


@pytest.mark.parametrize(("seed", "at"), [(0, 750), (2, 990), (4, 690)])
def test_a_noisy_climber_at_the_delta_gets_no_stall_warning(seed: int, at: float) -> None:
    climber = noisy_line(0.5, 0.024, 0.004, seed)  # 0.024 per window: it survives, mostly
    assert warned(climber, at, replace(RULES, stall_noise=0.0))  # the projection alone would
    assert not warned(climber, at, RULES)


def test_a_stall_the_noise_moves_past_the_budget_s_end_is_no_warning() -> None:
    # The central reading stalls the climber 37.5 s from now, inside the 85 s of budget
    # left; with the delta lowered by its noise the budget stops it first, without a stall:
    # no warning (a budget stop is none, even within the horizon).
    climber, at, left = noisy_line(0.5, 0.024, 0.004, 0), 750, 85.0
    points, snap = history({"A": climber}, until=at), snapshot(["A"], target=0.95)

    def forecast(rules: ForecastRules) -> JobForecast:
        started_at = T0 + at - rules.time_budget + left
        return forecast_job(points, snap, now=T0 + at, rules=rules, started_at=started_at)

    deaf = forecast(replace(RULES, stall_noise=0.0))
    (leader,) = deaf.algorithms
    assert (leader.stopped_by, leader.stops_in, leader.eta) == ("stall", 37.5, None)
    assert deaf.stall_warning is not None and deaf.stall_warning.seconds_left == 37.5
    got = forecast(RULES)
    assert got.algorithms == deaf.algorithms  # the central reading is the same
    assert left <= RULES.stall_horizon and got.stall_warning is None


def test_a_flat_leader_still_gets_its_stall_warning() -> None:
    def flat_after(t: float) -> float:
        return 0.5 + 0.04 * min(t, 450) / 300.0

    assert warned(flat_after, 690, RULES)
    assert warned(saturating(0.5, 0.7, 150), 600, RULES)
    assert not warned(line(0.5, 0.05), 690, RULES)


def test_noise_as_large_as_the_delta_leaves_no_clear_stall() -> None:
    loud = replace(RULES, stall_noise=100.0)
    bending = saturating(0.5, 0.7, 150)  # its trend is a bend, not a line
    assert warned(bending, 600, RULES) and not warned(bending, 600, loud)
    climber = noisy_line(0.5, 0.0, 0.004, 1)  # no climb at all, only noise
    at = next(a for a in range(600, 1500, 30) if warned(climber, a, RULES))
    assert not warned(climber, at, loud)


# --------------------------------------------------------------------- the hopeful reading
def reading(curve: Curve, at: float, rules: ForecastRules) -> JobForecast:
    points, snap = history({"A": curve}, until=at), snapshot(["A"], target=0.75)
    return forecast_job(points, snap, now=T0 + at, rules=rules, started_at=T0)


@pytest.mark.parametrize(("seed", "at"), [(0, 720), (2, 1050), (4, 690)])
def test_a_noisy_climber_at_the_delta_is_not_called_at_risk_on_its_noise(
    seed: int, at: float
) -> None:
    climber = noisy_line(0.5, 0.024, 0.004, seed)  # 0.024 per window: it survives, mostly
    plain = reading(climber, at, replace(RULES, stall_noise=0.0))
    assert plain.verdict is Verdict.AT_RISK  # a hopeful reading deaf to noise stalls it
    got = reading(climber, at, RULES)
    assert got.verdict is Verdict.ON_TRACK
    assert got.margin == plain.margin  # the central reading is untouched
    assert got.hopeful_margin is not None and plain.hopeful_margin is not None
    assert got.hopeful_margin > plain.hopeful_margin


@pytest.mark.parametrize(
    ("curve", "at"), [(noisy_line(0.5, 0.024, 0.004, 0), 720), (saturating(0.5, 0.7, 150), 600)]
)
def test_the_hopeful_delta_is_lowered_no_further_than_hopeful_floor(
    curve: Curve, at: float
) -> None:
    loud = reading(curve, at, replace(RULES, stall_noise=100.0))
    floored = replace(RULES, stall_noise=0.0, stall_tolerance=RULES.stall_tolerance * 0.75)
    assert RULES.hopeful_floor == 0.75
    assert loud.hopeful_margin == reading(curve, at, floored).hopeful_margin
    assert loud.margin == reading(curve, at, RULES).margin
