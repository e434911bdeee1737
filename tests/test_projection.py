"""bot.core.projection on its own: the trend's arithmetic, the best-so-far curve, which fit
the trend takes, the quiet clock, and when the stall rule stops an algorithm.

tests/test_forecast.py drives the same code through `forecast_job` on whole jobs; these
pin the pieces with numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from bot.core.projection import TAUS, Basis, BestCurve, Trend, least_squares, stall_in

INF = math.inf


# --------------------------------------------------------------------- Trend
def test_a_straight_trend_gains_rate_times_seconds_and_nothing_backwards() -> None:
    trend = Trend(0.01)
    assert trend.linear and trend.headroom == INF
    assert trend.gain(0.5) == pytest.approx(0.005)
    assert trend.gain(10.0) == pytest.approx(0.1)
    assert trend.gain(0.0) == 0.0
    assert trend.gain(-1.0) == 0.0
    assert Trend(-0.01).gain(10.0) == 0.0


def test_a_bending_trend_levels_off_at_its_headroom() -> None:
    trend = Trend(0.001, tau=100.0)
    assert not trend.linear and trend.headroom == pytest.approx(0.1)
    assert trend.gain(100.0) == pytest.approx(0.1 * (1 - math.exp(-1)))
    assert trend.gain(1e6) == pytest.approx(0.1)
    assert trend.gain(-5.0) == 0.0


def test_time_to_gain() -> None:
    assert Trend(0.01).time_to_gain(0.1) == pytest.approx(10.0)
    bend = Trend(0.001, tau=100.0)
    assert bend.time_to_gain(0.05) == pytest.approx(100 * math.log(2))  # half the headroom
    assert bend.gain(bend.time_to_gain(0.07) or 0.0) == pytest.approx(0.07)
    assert bend.time_to_gain(bend.headroom) is None  # only approached, never reached
    assert bend.time_to_gain(0.2) is None
    assert Trend(0.0).time_to_gain(0.1) is None
    assert Trend(-0.01).time_to_gain(0.1) is None


@pytest.mark.parametrize("trend", [Trend(0.0), Trend(0.01), Trend(0.001, tau=100.0)])
def test_nothing_left_to_gain_takes_no_time_even_without_progress(trend: Trend) -> None:
    assert trend.time_to_gain(0.0) == 0.0
    assert trend.time_to_gain(-0.1) == 0.0


def test_scaled_keeps_the_shape() -> None:
    assert Trend(0.001, tau=100.0).scaled(2.0) == Trend(0.002, tau=100.0)
    assert Trend(0.001).scaled(0.5) == Trend(0.0005)


# --------------------------------------------------------------------- BestCurve
def test_the_curve_is_the_running_best_and_before_its_start_its_first_value() -> None:
    curve = BestCurve([(0.0, 0.5), (10.0, 0.6), (20.0, 0.55)])
    assert len(curve) == 3 and curve.first_at == 0.0
    assert [curve.at(t) for t in (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 99.0)] == [
        0.5,
        0.5,
        0.5,
        0.6,
        0.6,
        0.6,
        0.6,
    ]


def test_an_empty_curve_never_rose() -> None:
    curve = BestCurve([])
    assert len(curve) == 0 and curve.last_rise == -INF


def line_points(
    slope: float, *, until: float = 300.0, every: float = 30.0
) -> list[tuple[float, float]]:
    return [(t, 0.5 + slope * t) for t in (every * i for i in range(int(until // every) + 1))]


def test_an_exact_line_up_to_now_is_read_as_that_line() -> None:
    # 0.003 per point: the best rises by RISE every second point, the last one at `now`.
    curve = BestCurve(line_points(0.0001))
    assert curve.last_rise == 300.0
    got = curve.trend(300.0, 600.0, quiet=300.0)
    assert got.linear and got.rate == pytest.approx(0.0001, rel=1e-7)


def test_a_single_point_has_no_trend() -> None:
    assert BestCurve([(0.0, 0.5)]).trend(0.0, 600.0, quiet=300.0) == Trend(0.0)


def test_with_too_few_points_in_the_span_the_last_four_are_fitted() -> None:
    points = [(0.0, 0.5), (100.0, 0.5), (200.0, 0.5), (300.0, 0.51), (400.0, 0.52), (500.0, 0.535)]
    got = BestCurve(points).trend(500.0, 50.0, quiet=INF)
    assert got == BestCurve(points[2:]).trend(500.0, 50.0, quiet=INF)
    assert got != BestCurve(points).trend(500.0, 50.0, quiet=INF, min_points=5)
    assert got.rate > 0


def test_the_span_is_the_history_before_now_that_is_fitted() -> None:
    # Steep for 150 s, then a straight 0.0001/s: fitted on the last 150 s only, the trend
    # is that line; fitted on all 300 s it also sees the steep start.
    points = [
        (t, 0.5 + 0.0005 * min(t, 150.0) + 0.0001 * max(t - 150.0, 0.0)) for t in range(0, 301, 30)
    ]
    curve = BestCurve([(float(t), v) for t, v in points])
    late = curve.trend(300.0, 150.0, quiet=INF)
    assert late.linear and late.rate == pytest.approx(0.0001, rel=1e-6)
    whole = curve.trend(300.0, 300.0, quiet=INF)
    assert not whole.linear  # the bend at 150 s shows


def saturating_points(
    height: float, tau: float, *, until: float = 600.0, decimals: int | None = None
) -> list[tuple[float, float]]:
    points = []
    for i in range(int(until // 30) + 1):
        value = 0.5 + height * (1 - math.exp(-30.0 * i / tau))
        points.append((30.0 * i, round(value, decimals) if decimals else value))
    return points


@pytest.mark.parametrize(
    ("tau", "span"),
    [(330.0, 600.0), (1100.0, 600.0), (1100.0, 300.0)],  # the last: a slow bend, seen briefly
)
def test_an_exact_bend_on_the_grid_is_read_with_its_tau_and_slope(tau: float, span: float) -> None:
    got = BestCurve(saturating_points(0.2, tau, until=span)).trend(span, span, quiet=INF)
    assert got.tau == tau
    assert got.rate == pytest.approx(0.2 / tau * math.exp(-span / tau), rel=1e-6)
    assert got.headroom == pytest.approx(0.2 * math.exp(-span / tau), rel=1e-6)


def least_squares_error(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys, strict=True))


@pytest.mark.parametrize(
    ("height", "tau", "grid_tau"), [(0.066, 400.0, 500.0), (0.12, 860.0, 750.0)]
)
def test_of_the_bends_the_smallest_squared_error_wins(
    height: float, tau: float, grid_tau: float
) -> None:
    points = saturating_points(height, tau, decimals=4)
    xs = [t - 600.0 for t, _ in points] + [0.0]
    ys = [v for _, v in points] + [points[-1][1]]
    grid = (45.0, 70.0, 100.0, 150.0, 220.0, 330.0, 500.0, 750.0, 1100.0)
    errors = {g: least_squares_error([math.exp(-x / g) for x in xs], ys) for g in grid}
    assert min(errors, key=lambda g: errors[g]) == grid_tau
    assert BestCurve(points).trend(600.0, 600.0, quiet=INF).tau == grid_tau


NOISY_CLIMBS = [
    # a bend would fit these somewhat better (or somewhat worse) than a line, not clearly
    [
        *(0.4928, 0.4995, 0.5158, 0.5169, 0.5211, 0.5241, 0.5344, 0.5468, 0.5443, 0.5537),
        *(0.5621, 0.5667, 0.5654, 0.58, 0.5823, 0.58, 0.5893, 0.5902, 0.6063, 0.6015, 0.6216),
    ],
    [
        *(0.501, 0.4999, 0.5032, 0.5061, 0.5119, 0.5144, 0.5116, 0.5183, 0.5162, 0.5228),
        *(0.5247, 0.526, 0.5286, 0.5321, 0.5354, 0.5352, 0.5388, 0.539, 0.5433, 0.5431, 0.5458),
    ],
]


@pytest.mark.parametrize("values", NOISY_CLIMBS)
def test_noise_on_a_steady_climb_is_read_as_a_line(values: list[float]) -> None:
    points = [(30.0 * i, v) for i, v in enumerate(values)]
    got = BestCurve(points).trend(600.0, 600.0, quiet=INF)
    assert got.linear and got.rate > 0


def test_the_quiet_clock_scales_the_rate_down_to_zero() -> None:
    points = [(float(t), 0.5 + 0.0001 * min(t, 300)) for t in range(0, 451, 30)]
    curve = BestCurve(points)
    silence = 450.0 - curve.last_rise
    assert 100.0 < silence < 200.0
    free = curve.trend(450.0, 600.0, quiet=INF)
    assert free.rate > 0
    for quiet in (300.0, 600.0):
        got = curve.trend(450.0, 600.0, quiet=quiet)
        assert got.rate == pytest.approx(free.rate * (1 - silence / quiet))
        assert got.tau == free.tau
    assert curve.trend(450.0, 600.0, quiet=silence / 2).rate == 0.0


# --------------------------------------------------------------------- stall_in
def stall(
    points: list[tuple[float, float]],
    trend: Trend,
    *,
    now: float,
    window: float = 300.0,
    delta: float = 0.02,
    earliest: float = 0.0,
    horizon: float = 1000.0,
) -> float | None:
    return stall_in(
        BestCurve(points),
        trend,
        now=now,
        window=window,
        delta=delta,
        earliest=earliest,
        horizon=horizon,
    )


FLAT = [(0.0, 0.5), (100.0, 0.5), (200.0, 0.5), (300.0, 0.5)]


@pytest.mark.parametrize("horizon", [1000.0, 0.0])
def test_a_flat_curve_past_its_first_window_is_stalled_now(horizon: float) -> None:
    assert stall(FLAT, Trend(0.0), now=300.0, earliest=300.0, horizon=horizon) == 0.0


def test_a_gain_of_exactly_delta_is_not_a_stall() -> None:
    points = [(0.0, 0.25), (300.0, 0.5)]
    assert stall(points, Trend(0.0), now=300.0, delta=0.25, horizon=0.0) is None


def test_the_stall_comes_when_the_past_climb_leaves_the_window() -> None:
    # 0.5 until t=0, up 0.0002/s to 0.53 at t=150, flat since; now = 300. The best gained
    # 0.03 over the window; 0.02 or more only while the window still holds t > 50 (the
    # point at 60 is the first above 0.51): the first check after 60 s is at 62.5 s.
    points = [(float(t), 0.5 + 0.0002 * min(t, 150)) for t in range(0, 301, 10)]
    assert stall(points, Trend(0.0), now=300.0) == 62.5


JUMP_AT_NOW = [(0.0, 0.5), (299.0, 0.5), (300.0, 0.6)]


@pytest.mark.parametrize("horizon", [1000.0, 300.0])
def test_a_slow_line_stalls_when_the_window_s_history_runs_out(horizon: float) -> None:
    # The jump at `now` keeps every check within the window clear; beyond it only the
    # line counts, and 0.00001/s gains 0.003 per window, below delta.
    assert stall(JUMP_AT_NOW, Trend(0.00001), now=300.0, horizon=horizon) == 300.0
    assert stall(JUMP_AT_NOW, Trend(0.00001), now=300.0, horizon=299.0) is None


def test_a_line_gaining_exactly_delta_per_window_never_stalls() -> None:
    points = [(0.0, 0.25), (255.0, 0.25), (256.0, 0.75)]
    rate = 0.25 / 256  # exactly delta per window
    assert stall(points, Trend(rate), now=256.0, window=256.0, delta=0.25) is None
    slower = stall(points, Trend(rate), now=256.0, window=256.0, delta=0.26)
    assert slower == pytest.approx(256.0, abs=256 / 24)  # within one check of the window


@pytest.mark.parametrize("window", [300.0, 0.75])  # 24 checks land exactly on the window
def test_a_bend_that_stopped_rising_stalls_once_the_window_s_history_runs_out(
    window: float,
) -> None:
    points = [(0.0, 0.5), (300.0 - window / 100, 0.5), (300.0, 0.6)]
    got = stall(points, Trend(0.0, tau=100.0), now=300.0, window=window)
    assert got == window


CLIMB = [(float(t), 0.4 + t / 3000) for t in range(0, 301, 30)]  # 0.1 over the last window


@pytest.mark.parametrize("rate", [0.001, 0.000225])
def test_a_bend_stalls_when_its_gain_over_one_window_falls_below_delta(rate: float) -> None:
    trend = Trend(rate, tau=100.0)
    got = stall(CLIMB, trend, now=300.0)
    # gain(s) - gain(s - window) = headroom e^(-s/tau) (e^(window/tau) - 1) = delta
    expected = 100.0 * math.log(trend.headroom * math.expm1(3.0) / 0.02)
    assert got is not None and 300.0 < got < 1000.0
    assert got == pytest.approx(expected)
    assert trend.gain(got) - trend.gain(got - 300.0) == pytest.approx(0.02)
    assert stall(CLIMB, trend, now=300.0, horizon=got) == got  # the horizon is inclusive
    assert stall(CLIMB, trend, now=300.0, horizon=got - 1.0) is None


# --------------------------------------------------------------------- shared fits
def test_least_squares_per_column_error_slope_and_level() -> None:
    ys = [0.5, 0.6, 0.7, 0.9]
    exact, shifted, none = least_squares(
        [[0.0, 1.0, 2.0, 4.0], [1.0, 2.0, 3.0, 4.0], [2.0] * 4], ys
    )
    assert exact == (pytest.approx(0.0, abs=1e-12), pytest.approx(0.1), pytest.approx(0.5))
    # y on 1, 2, 3, 4: Sxx 5, Sxy 0.65, Syy 0.0875: slope 0.13, level 0.675 - 0.13 * 2.5,
    # error 0.0875 - 0.13 * 0.65
    assert shifted == (pytest.approx(0.003), pytest.approx(0.13), pytest.approx(0.35))
    assert none == (INF, 0.0, pytest.approx(0.675))  # no spread: no slope, the mean


def test_a_basis_holds_x_and_each_bend_from_its_start_on() -> None:
    basis = Basis([0.0, 30.0, 60.0, 90.0], 1, 90.0)
    assert basis.start == 1
    line, *bends = basis.columns
    assert line == [-60.0, -30.0, 0.0]
    assert len(bends) == len(TAUS)
    assert bends[0] == pytest.approx([math.exp(60 / TAUS[0]), math.exp(30 / TAUS[0]), 1.0])
    assert bends[-1][0] == pytest.approx(math.exp(60 / TAUS[-1]))


def test_a_bend_s_exponent_is_clamped_at_700_only_where_it_overflows() -> None:
    # x = -36,000 s: -x / 45 = 800 would overflow e^; it is clamped to 700 there, and only
    # there (the other points of that column, and the longest tau's, keep their own)
    basis = Basis([0.0, 35_800.0, 35_900.0, 36_000.0], 0, 36_000.0)
    line, *bends = basis.columns
    assert line == [-36_000.0, -200.0, -100.0, 0.0]
    assert TAUS[0] == 45.0 and bends[0] == [
        math.exp(700.0),
        math.exp(200.0 / 45.0),
        math.exp(100.0 / 45.0),
        1.0,
    ]
    assert bends[-1] == [math.exp(-x / TAUS[-1]) for x in line]


def test_the_curve_keeps_its_values_and_finds_where_a_span_starts() -> None:
    curve = BestCurve([(0.0, 0.5), (30.0, 0.6), (60.0, 0.55), (90.0, 0.58)])
    assert curve.values == [0.5, 0.6, 0.55, 0.58]
    assert curve.bests == [0.5, 0.6, 0.6, 0.6]
    assert curve.since(30.0, min_points=1) == 1
    assert curve.since(31.0, min_points=1) == 2
    assert curve.since(31.0, min_points=3) == 1  # at least the last three
    assert curve.since(-99.0, min_points=9) == 0
    assert curve.basis(90.0, 40.0, min_points=1).start == 2


def test_a_trend_reads_the_same_from_a_shared_basis_or_its_own() -> None:
    points = saturating_points(0.2, 330.0, until=900.0, decimals=4)
    curve = BestCurve(points)
    own = curve.trend(900.0, 600.0, quiet=300.0)
    wider = curve.basis(900.0, 900.0, min_points=4)  # starts earlier: its tail is used
    assert wider.start < curve.since(300.0, min_points=4)
    assert curve.trend(900.0, 600.0, quiet=300.0, basis=wider) == own
    narrower = curve.basis(900.0, 300.0, min_points=4)  # starts too late: not used
    assert curve.trend(900.0, 600.0, quiet=300.0, basis=narrower) == own
    assert own.tau == 330.0


def test_a_sparse_history_over_many_hours_fits_without_overflow() -> None:
    # Four points over 12 h (a long MATHFI_TIME_BUDGET and a quiet algorithm): e^(-x/45)
    # at x = -43,200 s overflows a float; the bends are then clamped, the line still fits.
    points = [(0.0, 0.50), (14_400.0, 0.60), (28_800.0, 0.70), (43_200.0, 0.80)]
    curve = BestCurve(points)
    trend = curve.trend(43_200.0, 600.0, quiet=300.0, min_points=4)
    assert math.isinf(trend.tau)
    assert trend.rate == pytest.approx(0.1 / 14_400.0)
