"""bot.core.arrival on its own: the weighted fits of raw values, and the job's first passage
over the target (the ETA and its quartiles), with numbers worked out by hand.

tests/test_forecast.py drives the same code through `forecast_job` on whole jobs."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from bot.core.arrival import (
    DOF,
    MIN_SIGMA,
    MIN_WEIGHT,
    SAMPLE_EVERY,
    Arrival,
    Reading,
    Shape,
    _Track,
    first_passage,
    read,
)
from bot.core.projection import Basis, least_squares

INF = math.inf
# A flat shape one sigma under the target: each sample arrives with p = P(Z > 1), so the
# hazard per SAMPLE_EVERY seconds is H1 = -ln(1 - p), constant.
P1 = 0.5 * math.erfc(1 / math.sqrt(2))
H1 = -math.log1p(-P1)


def flat(level: float, sigma: float, *, stops_in: float = 3600.0) -> Reading:
    return Reading(((1.0, Shape(level, 0.0)),), sigma, stops_in, best=level)


def at_hazard(total: float, per_sample: float = H1) -> float:
    """Seconds until the cumulative hazard reaches `total` at `per_sample` per sample."""
    return SAMPLE_EVERY * total / per_sample


# --------------------------------------------------------------------- Shape
def test_a_shape_is_a_line_or_an_exponential_in_seconds_from_now() -> None:
    assert Shape(0.5, 0.001).mean(100.0) == pytest.approx(0.6)
    assert Shape(0.5, 0.001).mean(0.0) == 0.5
    bend = Shape(0.8, -0.2, 100.0)  # 0.6 now, levelling off at 0.8
    assert bend.mean(0.0) == pytest.approx(0.6)
    assert bend.mean(100.0) == pytest.approx(0.8 - 0.2 / math.e)
    assert bend.mean(1e6) == pytest.approx(0.8)


# --------------------------------------------------------------------- read
def times(n: int, every: float = 30.0) -> list[float]:
    return [every * i for i in range(n)]


def test_an_exact_bend_on_the_grid_wins_nearly_all_the_weight() -> None:
    ts = times(21)
    now = ts[-1]
    values = [0.8 - 0.3 * math.exp(-t / 150.0) for t in ts]
    got = read(values, Basis(ts, 0, now), stops_in=900.0, best=max(values))
    weight, shape = max(got.shapes, key=lambda ws: ws[0])
    assert shape.tau == 150.0 and weight > 0.99
    assert shape.mean(0.0) == pytest.approx(values[-1])
    assert shape.mean(300.0) == pytest.approx(0.8 - 0.3 * math.exp(-(now + 300.0) / 150.0))
    assert got.sigma == MIN_SIGMA  # no residual: the floor
    assert (got.stops_in, got.best) == (900.0, max(values))


def test_the_weights_sum_to_one_and_the_small_ones_are_dropped() -> None:
    # A bend at tau 300 under a +-0.01 zigzag: the neighbours of 300 on the grid stay in
    # play, the line and the far bends fall under MIN_WEIGHT.
    ts = times(12)
    values = [
        0.8 - 0.3 * math.exp(-t / 300.0) + (0.01 if i % 2 else -0.01) for i, t in enumerate(ts)
    ]
    got = read(values, Basis(ts, 0, ts[-1]), stops_in=600.0, best=max(values))
    assert [shape.tau for _, shape in got.shapes] == [220.0, 330.0, 500.0, 750.0]
    assert sum(w for w, _ in got.shapes) == pytest.approx(1.0)
    assert all(w >= MIN_WEIGHT for w, _ in got.shapes)
    assert max(got.shapes, key=lambda ws: ws[0])[1].tau == 330.0


def test_sigma_is_the_best_fit_s_residual_over_the_points_less_three() -> None:
    # A line with +-0.01 alternating: no shape of the grid explains the zigzag, so the best
    # fit's squared error is about n * 0.01^2, sigma about 0.01 * sqrt(n / (n - 3)).
    ts = times(12)
    values = [0.5 + 0.0001 * t + (0.01 if i % 2 else -0.01) for i, t in enumerate(ts)]
    got = read(values, Basis(ts, 0, ts[-1]), stops_in=600.0, best=max(values))
    assert DOF == 3
    assert got.sigma == pytest.approx(0.01 * math.sqrt(12 / 9), rel=0.05)


def test_points_all_at_one_time_have_no_shape() -> None:
    got = read([0.5, 0.6, 0.7, 0.6], Basis([30.0] * 4, 0, 60.0), stops_in=600.0, best=0.7)
    assert got == Reading((), MIN_SIGMA, 600.0, 0.7)
    assert first_passage({"A": got}, 0.8) is None
    assert first_passage({"A": got}, 0.7) == Arrival(0.0, 0.0, 0.0, "A")


def test_the_basis_may_start_later_than_the_first_point() -> None:
    ts = times(10)
    values = [0.5 + 0.0002 * t for t in ts]
    late = read(values[4:], Basis(ts, 4, ts[-1]), stops_in=600.0, best=values[-1])
    alone = read(values[4:], Basis(ts[4:], 0, ts[-1]), stops_in=600.0, best=values[-1])
    assert late == alone


# --------------------------------------------------------------------- first_passage
def test_an_algorithm_already_at_the_target_arrives_now() -> None:
    readings = {"A": flat(0.5, 0.01), "B": flat(0.8, 0.01), "C": flat(0.81, 0.01)}
    assert first_passage(readings, 0.8) == Arrival(0.0, 0.0, 0.0, "B")


def test_a_flat_curve_one_sigma_under_the_target_arrives_by_chance() -> None:
    got = first_passage({"A": flat(0.79, 0.01)}, 0.8)
    assert got is not None and got.algorithm == "A"
    # survival e^(-H1 * s / 30): the quartiles at H = ln 4/3, ln 2, ln 4 (the scan's
    # straight chords between its steps put them slightly later)
    assert got.early == pytest.approx(at_hazard(math.log(4 / 3)), rel=0.03)
    assert got.median == pytest.approx(at_hazard(math.log(2)), rel=0.03)
    assert got.late == pytest.approx(at_hazard(math.log(4)), rel=0.03)
    assert got.early <= at_hazard(math.log(4 / 3)) * 1.03


def test_two_such_algorithms_arrive_twice_as_soon() -> None:
    one = first_passage({"A": flat(0.79, 0.01)}, 0.8)
    two = first_passage({"A": flat(0.79, 0.01), "B": flat(0.79, 0.01)}, 0.8)
    assert one is not None and two is not None
    assert two.median == pytest.approx(at_hazard(math.log(2), 2 * H1), rel=0.03)
    assert two.median < one.median


def test_the_most_likely_first_algorithm_is_named() -> None:
    got = first_passage({"far": flat(0.77, 0.01), "near": flat(0.79, 0.01)}, 0.8)
    assert got is not None and got.algorithm == "near"


def test_a_deterministic_crossing_is_the_median_to_within_a_step() -> None:
    rising = Reading(((1.0, Shape(0.7, 0.001)),), MIN_SIGMA, 3600.0, best=0.7)
    got = first_passage({"A": rising}, 0.8)  # the mean crosses at 100 s
    assert got is not None
    assert got.median == pytest.approx(100.0, abs=SAMPLE_EVERY)
    assert got.early <= got.median <= (got.late or INF)
    assert (got.late or INF) - got.early < 2 * SAMPLE_EVERY


def test_a_shape_that_never_arrives_keeps_its_weight_of_survival() -> None:
    # 0.6 of the chance on a flat curve one sigma under, 0.4 far below: S = 0.4 + 0.6 e^-H
    mixed = Reading(((0.6, Shape(0.79, 0.0)), (0.4, Shape(0.5, 0.0))), 0.01, 3600.0, best=0.79)
    got = first_passage({"A": mixed}, 0.8)
    assert got is not None
    assert got.early == pytest.approx(at_hazard(-math.log(0.35 / 0.6)), rel=0.03)
    assert got.median == pytest.approx(at_hazard(math.log(6.0)), rel=0.03)
    assert got.late is None  # S never falls to 1/4


def test_no_median_when_half_the_chance_never_arrives() -> None:
    half = Reading(((0.5, Shape(0.79, 0.0)), (0.5, Shape(0.5, 0.0))), 0.01, 3600.0, best=0.79)
    assert first_passage({"A": half}, 0.8) is None


@pytest.mark.parametrize("level", [0.5, 0.8 - 6.01 * 0.01])
def test_a_curve_far_below_the_target_never_arrives(level: float) -> None:
    assert first_passage({"A": flat(level, 0.01)}, 0.8) is None
    assert first_passage({}, 0.8) is None


def test_a_curve_just_within_six_sigmas_may_arrive() -> None:
    # p per sample ~1e-9: it is scanned (not left out), but does not arrive within the hour
    assert first_passage({"A": flat(0.8 - 5.9 * 0.01, 0.01)}, 0.8) is None
    rising = Reading(((1.0, Shape(0.5, 0.0001)),), 0.01, 3600.0, best=0.5)
    got = first_passage({"A": rising}, 0.8)  # 6+ sigmas below now, crosses at 3000 s
    assert got is not None and got.median == pytest.approx(3000.0, rel=0.05)


def test_no_samples_after_the_stop() -> None:
    # At the target: p = 1/2 per sample, hazard ln 2 each. One sample by 30 s (S = 1/2:
    # the median); a stop at 45 s allows half a sample more (S = 2^-1.5 > 1/4): no late
    # end. Counting the whole second step would have reached S < 1/4.
    got = first_passage({"A": flat(0.8 - 1e-9, 0.01, stops_in=45.0)}, 0.8)
    assert got is not None
    assert got.median == pytest.approx(SAMPLE_EVERY, rel=1e-6)
    assert got.late is None
    later = first_passage({"A": flat(0.8 - 1e-9, 0.01, stops_in=70.0)}, 0.8)
    assert later is not None and later.late is not None


def test_an_algorithm_already_stopped_draws_nothing() -> None:
    assert first_passage({"A": flat(0.79, 0.01, stops_in=0.0)}, 0.8) is None
    got = first_passage({"A": flat(0.79, 0.01, stops_in=0.0), "B": flat(0.79, 0.01)}, 0.8)
    assert got is not None and got.algorithm == "B"
    assert got.median == pytest.approx(at_hazard(math.log(2)), rel=0.03)


def test_with_four_points_sigma_is_over_one_degree_of_freedom() -> None:
    ts = times(4)
    values = [0.5, 0.52, 0.5, 0.53]
    got = read(values, Basis(ts, 0, ts[-1]), stops_in=600.0, best=0.53)
    least = min(sse for sse, _, _ in least_squares(Basis(ts, 0, ts[-1]).columns, values))
    assert least > MIN_SIGMA**2
    assert got.sigma == pytest.approx(math.sqrt(least / (4 - DOF)))


# At the target (just under it): p = 1/2 per sample, a hazard of ln 2 each.
AT = 0.8 - 1e-9


def test_the_scan_s_grid_and_its_straight_chords() -> None:
    # Steps of 30 s, then 31.5 s (x 1.05): S = 1/2 at 30 s, 2^-2.05 at 61.5 s.
    got = first_passage({"A": flat(AT, 0.01)}, 0.8)
    assert got is not None
    assert got.early == pytest.approx(15.0)  # halfway down the chord from 1 to 1/2
    assert got.median == pytest.approx(30.0)
    at_61 = 2**-2.05
    assert got.late == pytest.approx(61.5 - 31.5 * (0.25 - at_61) / (0.5 - at_61))


def test_the_last_step_ends_at_the_last_stop() -> None:
    # the second step is cut to 30 s by the stop at 60 s: S falls just under 1/4 there
    # (p just over 1/2; its best, below the target, says it has not arrived)
    above = Reading(((1.0, Shape(0.8 + 1e-9, 0.0)),), 0.01, 60.0, best=0.79)
    got = first_passage({"A": above}, 0.8)
    assert got is not None and got.late == pytest.approx(60.0, abs=0.01)


def test_an_algorithm_stops_drawing_at_its_stop_while_another_goes_on() -> None:
    # A: one sample at p = 1/2, then stopped (S_A = 1/2 for good); B: one sigma under, on.
    readings = {"A": flat(AT, 0.01, stops_in=30.0), "B": flat(0.79, 0.01)}
    got = first_passage(readings, 0.8)
    assert got is not None and got.algorithm == "A"
    after_30 = 0.5 * math.exp(-H1)
    assert got.early == pytest.approx(30 - 30 * (0.75 - after_30) / (1 - after_30))
    assert got.median == pytest.approx(30 - 30 * (0.5 - after_30) / (1 - after_30))
    assert got.late == pytest.approx(at_hazard(math.log(2)), rel=0.03)  # B halves it again


def test_a_quartile_reached_exactly_is_found_at_that_step() -> None:
    # A: a quarter of its chance 100 sigmas over the target (p capped just under 1: a
    # hazard of ~27.6 per sample), the rest never; B: 300 sigmas under it for now (p = 0).
    # After the second step (30 + 31.5 s) A's survival is 3/4 + e^-56 / 4, exactly 3/4 in
    # floating point, and B's exactly 1: the early end is there, not when B drops.
    sure = Reading(((0.25, Shape(0.9, 0.0)), (0.75, Shape(0.1, 0.0))), MIN_SIGMA, 3600.0, 0.6)
    rising = Reading(((1.0, Shape(0.5, 0.0001)),), MIN_SIGMA, 3600.0, best=0.5)
    track = _Track("A", sure, 0.8)
    assert [track.advance(s, step, 0.8) for s, step in ((30.0, 30.0), (61.5, 31.5))] == [
        pytest.approx(0.75, abs=1e-11),
        0.75,
    ]
    got = first_passage({"A": sure, "B": rising}, 0.8)
    assert got is not None and got.early == 61.5
    assert got.median == pytest.approx(2933.0, abs=1.0)  # B's crossing at 3000 s, roughly


def test_half_the_chance_at_the_target_and_half_never_has_no_median() -> None:
    # S = 1/2 + e^-H / 2 only tends to 1/2 (and reaches it in floating point)
    half = Reading(((0.5, Shape(AT, 0.0)), (0.5, Shape(0.5, 0.0))), 0.01, 3600.0, best=AT)
    assert first_passage({"A": half}, 0.8) is None


def test_the_named_algorithm_is_the_likeliest_first_at_the_median() -> None:
    # "steady" (1.21 sigmas under: a hazard of 0.12 per sample) leads at the early quartile
    # and again at the late one; "jump" (half its chance on a line crossing at 100 s, half
    # never) is likelier at the median, which falls in the step of its crossing.
    jump = Reading(((0.5, Shape(0.7, 0.001)), (0.5, Shape(0.5, 0.0))), MIN_SIGMA, 3600.0, 0.7)
    got = first_passage({"steady": flat(0.8 - 0.0121, 0.01), "jump": jump}, 0.8)
    assert got is not None and got.late is not None
    assert got.early < 94.6 < got.median < 129.3 < got.late  # the steps around the crossing
    assert got.algorithm == "jump"


def test_a_track_keeps_the_shapes_that_may_arrive_before_its_stop() -> None:
    sigma, target = 0.01, 0.8
    edge = Shape(target - 6.0 * sigma, 0.0)  # exactly six sigmas under: kept
    far = Shape(target - 6.01 * sigma, 0.0)
    falling = Shape(target - 5.99 * sigma, -0.01)  # within six sigmas now only
    reading = Reading(((0.5, edge), (0.3, far), (0.2, falling)), sigma, 600.0, best=0.7)
    track = _Track("A", reading, target)
    assert track.shapes == [(0.5, edge), (0.2, falling)]
    assert track.idle == pytest.approx(0.3)
    assert _Track("A", replace(reading, stops_in=0.5), target).shapes == track.shapes
    stopped = _Track("A", replace(reading, stops_in=0.0), target)
    assert (stopped.shapes, stopped.idle) == ([], 1.0)
