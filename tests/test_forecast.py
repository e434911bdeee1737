"""bot.core.forecast and the warning gate: tables on known curves, hypothesis properties."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.forecast import (
    MIN_POINTS,
    AlgorithmForecast,
    ForecastRules,
    JobForecast,
    StallWarning,
    Verdict,
    advice_text,
    forecast_job,
    retry_threshold,
    verdict_after,
)
from bot.core.forecast_warnings import WarningKind, WarningState, next_warning
from bot.core.models import AlgorithmProgress, Snapshot
from bot.core.projection import RISE, BestCurve

RULES = ForecastRules()
T0 = 10_000.0  # epoch of the job's start in these tests


@dataclass(frozen=True)
class Point:
    algorithm: str
    at: float
    value: float


Curve = Callable[[float], float]


def history(curves: dict[str, Curve], *, until: float, every: float = 30.0) -> list[Point]:
    """Points as the poller stores them: one per algorithm whose value changed."""
    points: list[Point] = []
    for name, curve in curves.items():
        last = None
        for i in range(int(until // every) + 1):
            value = round(curve(i * every), 4)
            if value != last:
                points.append(Point(name, T0 + i * every, value))
                last = value
    return points


def snapshot(names: Sequence[str], *, target: float | None, status: str = "RUNNING") -> Snapshot:
    algorithms = tuple(AlgorithmProgress(algorithm=n, status=status) for n in names)
    return Snapshot(job_key="J", status=status, target_performance=target, algorithms=algorithms)


def run(curves: dict[str, Curve], *, at: float, target: float, **kwargs: object) -> JobForecast:
    points = history(curves, until=at)
    snap = snapshot(list(curves), target=target)
    return forecast_job(points, snap, now=T0 + at, rules=RULES, started_at=T0, **kwargs)  # type: ignore[arg-type]


def line(start: float, per_window: float) -> Curve:
    return lambda t: start + per_window * t / 300.0


def saturating(start: float, height: float, tau: float) -> Curve:
    return lambda t: height - (height - start) * math.exp(-t / tau)


# --------------------------------------------------------------------- retry threshold
@pytest.mark.parametrize(
    ("best", "expected"),
    [
        (0.768, 0.75),
        (0.85, 0.85),
        (0.8, 0.8),
        (0.7999, 0.75),
        (0.3, 0.3),
        (0.15, 0.15),
        (0.05, 0.05),
        (0.049, 0.0),
        (0.0, 0.0),
        (1.0, 1.0),
        # float noise just under a multiple is that multiple (MathFi reports 4 decimals)
        (0.85 - 1e-8, 0.85),
        (0.85 - 1e-5, 0.8),
    ],
)
def test_retry_threshold_rounds_down_to_a_multiple_of_0_05(best: float, expected: float) -> None:
    assert retry_threshold(best) == expected


def test_advice_text_carries_the_numbers() -> None:
    assert advice_text(0.81) == "retrain at 0.80, then raise in 0.05 steps"
    assert advice_text(0.768) == "retrain at 0.75, then raise in 0.05 steps"


@given(st.floats(min_value=0.0, max_value=1.0))
def test_retry_threshold_is_the_largest_step_not_above_best(best: float) -> None:
    got = retry_threshold(best)
    assert abs(got / 0.05 - round(got / 0.05)) < 1e-9
    assert got <= best + 1e-9
    assert best - got < 0.05 + 1e-6


# --------------------------------------------------------------------- verdicts
def test_not_enough_history_until_the_minimum_then_a_verdict() -> None:
    curves = {"A": line(0.5, 0.03)}
    assert run(curves, at=RULES.min_history - 30, target=0.6).verdict is Verdict.NOT_ENOUGH_HISTORY
    assert run(curves, at=RULES.min_history, target=0.6).verdict is Verdict.ON_TRACK
    few = history({"A": lambda t: 0.5 if t < 200 else 0.51}, until=400)
    assert len(few) < MIN_POINTS
    got = forecast_job(few, snapshot(["A"], target=0.6), now=T0 + 400, rules=RULES)
    assert got.verdict is Verdict.NOT_ENOUGH_HISTORY


def test_an_ended_job_or_one_without_target_has_no_forecast() -> None:
    points = history({"A": line(0.5, 0.03)}, until=600)
    ended = snapshot(["A"], target=0.6, status="COMPLETED")
    assert forecast_job(points, ended, now=T0 + 600, rules=RULES).verdict is Verdict.ENDED
    no_target = snapshot(["A"], target=None)
    got = forecast_job(points, no_target, now=T0 + 600, rules=RULES)
    assert got.verdict is Verdict.NOT_ENOUGH_HISTORY


def test_a_steady_climber_is_on_track_with_an_eta_close_to_the_line() -> None:
    got = run({"A": line(0.5, 0.03)}, at=600, target=0.62)
    assert got.verdict is Verdict.ON_TRACK and got.eta_algorithm == "A"
    assert got.eta is not None and got.eta == pytest.approx(600, rel=0.1)  # 0.06 more at 0.03/300 s
    assert got.eta_low is not None and got.eta_high is not None
    assert got.eta_low <= got.eta <= got.eta_high
    (alg,) = got.algorithms
    assert alg.rate * 300 == pytest.approx(0.03, rel=0.1) and alg.reaches_target


def test_a_curve_levelling_off_below_the_target_is_at_risk_with_its_plateau() -> None:
    got = run(
        {"A": saturating(0.5, 0.7, 150), "B": saturating(0.5, 0.65, 100)}, at=600, target=0.85
    )
    assert got.verdict is Verdict.AT_RISK and got.eta is None
    assert got.best_algorithm == "A"
    assert got.best_projected is not None and 0.69 <= got.best_projected < 0.72
    assert got.margin is not None and got.margin < 0
    assert all(a.stopped_by == "stall" for a in got.algorithms)


def test_the_budget_stops_a_climber_that_would_arrive_too_late() -> None:
    curves = {"A": line(0.5, 0.03)}
    on_time = run(curves, at=600, target=0.7)  # 0.2 / (0.03 per 300 s) = 2000 s more: in budget
    assert on_time.verdict is Verdict.ON_TRACK
    near = run(curves, at=600, target=0.9)  # 4000 s more: past the budget, but the hopeful
    assert near.verdict is Verdict.ON_TRACK  # reading (a 30 % faster climb) still makes it
    assert near.eta is None and near.best_projected == pytest.approx(0.86, abs=0.01)
    # the hopeful reading: 0.56 now + 1.3 x 1e-4 per s x the 3000 s of budget left = 0.95
    assert near.hopeful_margin == pytest.approx(0.95 - 0.9, abs=1e-6)
    late = run(curves, at=600, target=0.99)
    assert late.verdict is Verdict.AT_RISK and late.algorithms[0].stopped_by == "budget"
    assert late.algorithms[0].stops_in == pytest.approx(RULES.time_budget - 600)
    assert late.hopeful_margin == pytest.approx(0.95 - 0.99, abs=1e-6)
    assert late.margin == pytest.approx(0.86 - 0.99, abs=1e-6)


def test_the_eta_is_the_first_passage_of_the_job_not_of_one_algorithm() -> None:
    got = run({"slow": line(0.5, 0.025), "fast": line(0.55, 0.05)}, at=600, target=0.7)
    fast, slow = by_name(got, "fast").eta, by_name(got, "slow").eta
    assert (fast, slow) == (pytest.approx(300.0), pytest.approx(1800.0))  # central trends
    assert got.eta_algorithm == "fast"
    # the job's median first passage: the fast line's crossing, to within one scan step
    assert got.eta == pytest.approx(300.0, abs=20.0)
    assert got.eta_low is not None and got.eta_high is not None
    assert got.eta_low < got.eta < got.eta_high < slow


def test_a_flat_leader_gets_a_stall_warning_a_climbing_one_does_not() -> None:
    def flat_after(t: float) -> float:
        return 0.5 + 0.04 * min(t, 450) / 300.0

    got = run({"A": flat_after, "B": line(0.45, 0.025)}, at=690, target=0.8)
    assert got.stall_warning is not None and got.stall_warning.algorithm == "A"
    assert 0 <= got.stall_warning.seconds_left <= RULES.stall_horizon
    assert got.stall_warning.gain_so_far < RULES.stall_delta + 0.04
    assert run({"A": line(0.5, 0.05)}, at=690, target=0.95).stall_warning is None


# --------------------------------------------------------------------- hysteresis
@pytest.mark.parametrize(
    ("margin", "hopeful", "previous", "expected"),
    [
        (-0.05, -0.05, None, Verdict.AT_RISK),
        (-0.05, -0.005, None, Verdict.ON_TRACK),  # the hopeful reading still nearly makes it
        (-0.05, -0.02, Verdict.ON_TRACK, Verdict.AT_RISK),
        (0.002, 0.01, Verdict.AT_RISK, Verdict.AT_RISK),  # not clear of the target yet
        (0.01, 0.02, Verdict.AT_RISK, Verdict.ON_TRACK),
        (0.0, 0.0, Verdict.NOT_ENOUGH_HISTORY, Verdict.ON_TRACK),
        (0.005, 0.02, Verdict.AT_RISK, Verdict.AT_RISK),  # exactly exit_margin is not above it
    ],
)
def test_verdict_hysteresis_table(
    margin: float, hopeful: float, previous: Verdict | None, expected: Verdict
) -> None:
    assert verdict_after(margin, hopeful, previous, RULES) is expected


margins = st.floats(min_value=-0.2, max_value=0.2, allow_nan=False)


@given(st.lists(st.tuples(margins, st.floats(min_value=0.0, max_value=0.1)), max_size=60))
def test_the_verdict_only_changes_across_the_hysteresis_band(
    readings: list[tuple[float, float]],
) -> None:
    verdict: Verdict | None = None
    for margin, lift in readings:
        hopeful = margin + lift
        new = verdict_after(margin, hopeful, verdict, RULES)
        if verdict is not Verdict.AT_RISK and new is Verdict.AT_RISK:
            assert hopeful < -RULES.enter_margin
        if verdict is Verdict.AT_RISK and new is Verdict.ON_TRACK:
            assert margin > RULES.exit_margin
        verdict = new


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=60))
def test_readings_inside_the_band_never_flip_the_verdict(band: list[float]) -> None:
    low, high = -RULES.enter_margin, RULES.exit_margin
    for start in (Verdict.ON_TRACK, Verdict.AT_RISK):
        verdict = start
        for share in band:
            margin = low + share * (high - low)
            verdict = verdict_after(margin, margin, verdict, RULES, margin)
        assert verdict is start


@settings(max_examples=40, deadline=None)
@given(
    st.floats(min_value=0.45, max_value=0.6),
    st.floats(min_value=0.02, max_value=0.4),
    st.floats(min_value=40.0, max_value=2000.0),
    st.floats(min_value=0.5, max_value=0.99),
    st.floats(min_value=0.0, max_value=0.1),
)
def test_a_higher_target_never_comes_sooner_and_never_changes_the_projection(
    start: float, rise: float, tau: float, target: float, more: float
) -> None:
    curves = {"A": saturating(start, min(0.99, start + rise), tau)}
    low, high = run(curves, at=600, target=target), run(curves, at=600, target=target + more)
    assert low.best_projected == high.best_projected
    if high.eta is not None:
        assert low.eta is not None and low.eta <= high.eta
    if low.verdict is Verdict.AT_RISK:
        assert high.verdict is Verdict.AT_RISK


# --------------------------------------------------------------------- warning gate
def forecast(verdict: Verdict, *, margin: float = 0.0, stall: str | None = None) -> JobForecast:
    warning = StallWarning(stall, 30.0, 0.01, 0.02) if stall else None
    return JobForecast(
        verdict, 0.8, best_projected=0.8 + margin, best_algorithm="A", stall_warning=warning
    )


def test_at_risk_once_back_on_track_once_then_cooldown_holds_the_next() -> None:
    state = WarningState()
    sent, state = next_warning(forecast(Verdict.ON_TRACK), state, now=0.0, cooldown=600)
    assert sent is None  # nothing to recover from
    sent, state = next_warning(forecast(Verdict.AT_RISK, margin=-0.04), state, now=30, cooldown=600)
    assert sent is not None and sent.kind is WarningKind.AT_RISK
    assert (sent.best_projected, sent.retry_at) == (pytest.approx(0.76), 0.75)
    assert sent.advice == "retrain at 0.75, then raise in 0.05 steps"
    sent, state = next_warning(forecast(Verdict.AT_RISK, margin=-0.04), state, now=60, cooldown=600)
    assert sent is None  # told already
    sent, state = next_warning(forecast(Verdict.ON_TRACK), state, now=300, cooldown=600)
    assert sent is None  # cooling down: not marked as told either
    sent, state = next_warning(forecast(Verdict.ON_TRACK), state, now=630, cooldown=600)
    assert sent is not None and sent.kind is WarningKind.BACK_ON_TRACK


def test_a_stall_warning_once_per_algorithm_and_held_back_when_an_at_risk_is_near() -> None:
    state = WarningState()
    sent, state = next_warning(forecast(Verdict.ON_TRACK, stall="A"), state, now=0, cooldown=60)
    assert sent is not None and (sent.kind, sent.algorithm) == (WarningKind.STALL, "A")
    sent, state = next_warning(forecast(Verdict.ON_TRACK, stall="A"), state, now=90, cooldown=60)
    assert sent is None
    near = forecast(Verdict.ON_TRACK, margin=-0.01, stall="A")
    sent, _ = next_warning(near, WarningState(), now=0, cooldown=60)
    assert sent is None
    sent, _ = next_warning(
        forecast(Verdict.ON_TRACK, stall="B"), WarningState(), now=0, cooldown=60
    )
    assert sent is None  # B is not the algorithm the job's projection rests on


def test_an_at_risk_warning_names_the_leader_s_imminent_stall() -> None:
    sent, _ = next_warning(
        forecast(Verdict.AT_RISK, margin=-0.05, stall="A"), WarningState(), now=0, cooldown=60
    )
    assert sent is not None and sent.stall is not None and sent.stall.algorithm == "A"


def test_each_warning_carries_the_job_s_target_and_its_details() -> None:
    at_risk, state = next_warning(
        forecast(Verdict.AT_RISK, margin=-0.04), WarningState(), now=0, cooldown=60
    )
    assert at_risk is not None
    assert (at_risk.kind, at_risk.at, at_risk.target, at_risk.algorithm) == (
        WarningKind.AT_RISK,
        0,
        0.8,
        "A",
    )
    assert at_risk.seconds_left is None and at_risk.stall is None
    back, _ = next_warning(forecast(Verdict.ON_TRACK), state, now=90, cooldown=60)
    assert back is not None
    assert (back.kind, back.at, back.target) == (WarningKind.BACK_ON_TRACK, 90, 0.8)
    stall, _ = next_warning(
        forecast(Verdict.ON_TRACK, stall="A"), WarningState(), now=5, cooldown=60
    )
    assert stall is not None
    assert (stall.kind, stall.at, stall.target, stall.algorithm, stall.seconds_left) == (
        WarningKind.STALL,
        5,
        0.8,
        "A",
        30.0,
    )


def test_an_at_risk_without_a_projection_gives_no_retry_advice() -> None:
    bare = JobForecast(Verdict.AT_RISK, 0.8)
    sent, _ = next_warning(bare, WarningState(), now=0, cooldown=60)
    assert sent is not None and sent.kind is WarningKind.AT_RISK
    assert (sent.best_projected, sent.retry_at, sent.advice, sent.algorithm) == (
        None,
        None,
        None,
        None,
    )


def test_a_job_already_told_at_risk_still_gets_its_leader_s_stall_warning() -> None:
    at_risk = forecast(Verdict.AT_RISK, margin=-0.04)
    sent, state = next_warning(at_risk, WarningState(), now=0, cooldown=60)
    assert sent is not None and sent.kind is WarningKind.AT_RISK
    stalling = forecast(Verdict.AT_RISK, margin=-0.04, stall="A")
    sent, _ = next_warning(stalling, state, now=90, cooldown=60)
    assert sent is not None and (sent.kind, sent.algorithm) == (WarningKind.STALL, "A")


@given(
    st.lists(
        st.tuples(
            st.sampled_from([Verdict.ON_TRACK, Verdict.AT_RISK, Verdict.NOT_ENOUGH_HISTORY]),
            st.sampled_from([None, "A", "B"]),
            st.floats(min_value=-0.1, max_value=0.1),
        ),
        max_size=80,
    )
)
def test_the_gate_honours_cooldown_and_each_warning_s_once_rules(
    polls: list[tuple[Verdict, str | None, float]],
) -> None:
    state, sent = WarningState(), []
    for i, (verdict, stall, margin) in enumerate(polls):
        warning, state = next_warning(
            forecast(verdict, margin=margin, stall=stall), state, now=30.0 * i, cooldown=300
        )
        if warning is not None:
            sent.append(warning)
    assert all(b.at - a.at >= 300 for a, b in pairwise(sent))
    stalls = [w.algorithm for w in sent if w.kind is WarningKind.STALL]
    assert len(stalls) == len(set(stalls))
    kinds = [w.kind for w in sent if w.kind is not WarningKind.STALL]
    assert all(a != b for a, b in pairwise(kinds))  # at_risk and back_on_track alternate
    assert not kinds or kinds[0] is WarningKind.AT_RISK


# --------------------------------------------------------------------- two polls, quiet clock
@pytest.mark.parametrize(
    ("hopeful", "earlier", "expected"),
    [
        (-0.05, -0.05, Verdict.AT_RISK),  # two polls agree
        (-0.05, None, Verdict.ON_TRACK),  # the poll before had no reading
        (-0.05, -0.001, Verdict.ON_TRACK),  # the poll before was hopeful
        (-0.05, -math.inf, Verdict.AT_RISK),  # unknown (a bare verdict was passed): one poll
        (0.0, -0.05, Verdict.ON_TRACK),
        (-0.05, -0.005, Verdict.ON_TRACK),  # exactly -enter_margin is not below it
    ],
)
def test_turning_at_risk_needs_two_polls_in_a_row(
    hopeful: float, earlier: float | None, expected: Verdict
) -> None:
    assert verdict_after(hopeful, hopeful, Verdict.ON_TRACK, RULES, earlier) is expected


def test_passing_the_last_forecast_delays_at_risk_by_one_poll_a_bare_verdict_does_not() -> None:
    curves = {"A": saturating(0.5, 0.7, 150)}
    points, snap = history(curves, until=600), snapshot(["A"], target=0.85)
    first = forecast_job(points, snap, now=T0 + 600, rules=RULES, started_at=T0)
    assert first.verdict is Verdict.AT_RISK and first.hopeful_margin is not None
    unconfirmed = JobForecast(Verdict.NOT_ENOUGH_HISTORY, 0.85)
    got = forecast_job(points, snap, now=T0 + 600, rules=RULES, previous=unconfirmed, started_at=T0)
    assert got.verdict is Verdict.ON_TRACK
    again = forecast_job(points, snap, now=T0 + 600, rules=RULES, previous=got, started_at=T0)
    assert again.verdict is Verdict.AT_RISK
    old_call = forecast_job(
        points, snap, now=T0 + 600, rules=RULES, previous=Verdict.ON_TRACK, started_at=T0
    )
    assert old_call.verdict is Verdict.AT_RISK


@given(st.lists(st.floats(min_value=0.0, max_value=RISE * 0.99), min_size=1, max_size=30))
def test_creeping_by_less_than_rise_does_not_restart_the_quiet_clock(creeps: list[float]) -> None:
    values, at = [0.5, 0.6], [0.0, 30.0]
    for i, creep in enumerate(creeps):  # each step stays within RISE of the 0.6 jump in total
        values.append(0.6 + creep)
        at.append(60.0 + 30.0 * i)
    curve = BestCurve(list(zip(at, values, strict=True)))
    assert curve.last_rise == 30.0
    assert BestCurve([*zip(at, values, strict=True), (at[-1] + 30, 0.6 + RISE)]).last_rise == (
        at[-1] + 30
    )


# --------------------------------------------------------------------- edges of forecast_job
def by_name(got: JobForecast, name: str) -> AlgorithmForecast:
    (found,) = [a for a in got.algorithms if a.algorithm == name]
    return found


def test_no_forecast_still_carries_the_target() -> None:
    points = history({"A": line(0.5, 0.03)}, until=600)
    ended = snapshot(["A"], target=0.6, status="COMPLETED")
    assert forecast_job(points, ended, now=T0 + 600, rules=RULES).target == 0.6
    young = forecast_job(points[:2], snapshot(["A"], target=0.6), now=T0 + 600, rules=RULES)
    assert (young.verdict, young.target) == (Verdict.NOT_ENOUGH_HISTORY, 0.6)


def test_four_points_over_the_minimum_history_are_enough() -> None:
    points = [Point("A", T0 + at, 0.5 + at / 3000) for at in (0.0, 60.0, 120.0, 180.0)]
    got = forecast_job(points, snapshot(["A"], target=0.6), now=T0 + 180, rules=RULES)
    assert got.verdict is Verdict.ON_TRACK
    fewer = forecast_job(points[1:], snapshot(["A"], target=0.6), now=T0 + 240, rules=RULES)
    assert fewer.verdict is Verdict.NOT_ENOUGH_HISTORY


def test_the_budget_counts_from_started_at_else_from_the_first_stored_point() -> None:
    points = history({"A": line(0.5, 0.03)}, until=600)
    snap = snapshot(["A"], target=0.99)
    own = forecast_job(points, snap, now=T0 + 600, rules=RULES)
    assert own.algorithms[0].stops_in == pytest.approx(RULES.time_budget - 600)
    pruned = forecast_job(points, snap, now=T0 + 600, rules=RULES, started_at=T0 - 1000)
    assert pruned.algorithms[0].stops_in == pytest.approx(RULES.time_budget - 1600)


def test_a_job_past_its_budget_stops_now_and_keeps_a_reached_target() -> None:
    points = history({"A": line(0.5, 0.03)}, until=600)
    got = forecast_job(
        points, snapshot(["A"], target=0.55), now=T0 + 600, rules=RULES, started_at=T0 - 4000
    )
    (alg,) = got.algorithms
    assert (alg.stops_in, alg.stopped_by) == (0.0, "budget")
    assert alg.projected == alg.best == pytest.approx(0.56)
    assert alg.eta == 0.0 and got.eta == 0.0  # already there: the stop does not undo it


def test_a_job_at_its_budget_s_end_just_below_the_target_has_no_eta() -> None:
    # Values climbing 0.01 per second end at 0.9, 0.0005 under the target: one second more
    # of samples would very likely cross it (an ETA under a second), none is no arrival.
    rules = replace(RULES, min_history=90.0)
    points, snap = history({"A": line(0.0, 3.0)}, until=90), snapshot(["A"], target=0.9005)

    def at_budget_end(left: float) -> JobForecast:
        started_at = T0 + 90 - rules.time_budget + left
        return forecast_job(points, snap, now=T0 + 90, rules=rules, started_at=started_at)

    stopped = at_budget_end(0.0)
    (alg,) = stopped.algorithms
    assert (alg.best, alg.stops_in, alg.stopped_by, alg.eta) == (0.9, 0.0, "budget", None)
    assert (stopped.eta, stopped.eta_low, stopped.eta_high) == (None, None, None)
    one_more = at_budget_end(1.0)
    assert one_more.eta is not None and 0.0 < one_more.eta < 1.0


def test_the_stall_rule_waits_for_one_window_after_the_start() -> None:
    points = [Point("A", T0 + at, 0.5) for at in (0.0, 60.0, 120.0, 180.0)]
    got = forecast_job(points, snapshot(["A"], target=0.9), now=T0 + 200, rules=RULES)
    (alg,) = got.algorithms
    assert alg.stopped_by == "stall"
    assert alg.stops_in is not None and alg.stops_in >= RULES.stall_window - 200


def test_a_projection_never_passes_a_perfect_score() -> None:
    got = run({"A": line(0.9, 0.05)}, at=600, target=0.99)
    assert got.best_projected == 1.0 and got.algorithms[0].projected == 1.0


@pytest.mark.parametrize(
    ("at", "spread", "late"), [(300, 1.45, False), (600, 1.3, True), (900, 1.3, True)]
)
def test_the_eta_range_is_at_least_the_spread_which_widens_while_the_history_is_short(
    at: int, spread: float, late: bool
) -> None:
    # a clean line: the first passage's quartiles are narrower than the spread of the
    # hopeful and slow readings, 1 + optimism * (2 - min(1, seen / fit_span)), so the range
    # is the ETA x and / the spread. After 300 s a levelling-off shape still fits the line as
    # well, and keeps more than a quarter of the chance of never arriving: no late end.
    got = run({"A": line(0.5, 0.03)}, at=at, target=0.6 + at / 10_000)
    assert got.eta is not None and got.eta_low is not None
    assert got.eta == pytest.approx(1000.0, rel=0.06)  # 0.1 more at 0.03 per 300 s
    assert got.eta / got.eta_low == pytest.approx(spread)
    if late:
        assert got.eta_high is not None and got.eta_high / got.eta == pytest.approx(spread)
    else:
        assert got.eta_high is None


def test_no_eta_range_when_the_central_reading_does_not_arrive() -> None:
    got = run({"A": line(0.5, 0.03)}, at=600, target=0.88)  # the hopeful reading would
    assert got.verdict is Verdict.ON_TRACK and got.eta is None
    assert (got.eta_low, got.eta_high, got.eta_algorithm) == (None, None, None)


def test_a_job_at_risk_stays_at_risk_until_it_clears_the_exit_margin() -> None:
    curves = {"A": line(0.5, 0.03)}
    fresh = run(curves, at=600, target=0.9)  # misses centrally by 0.04, the hopeful makes it
    assert fresh.verdict is Verdict.ON_TRACK
    assert fresh.margin is not None and fresh.margin < 0
    for previous in (Verdict.AT_RISK, JobForecast(Verdict.AT_RISK, 0.9, hopeful_margin=-0.1)):
        assert run(curves, at=600, target=0.9, previous=previous).verdict is Verdict.AT_RISK
    cleared = run(curves, at=600, target=0.8, previous=Verdict.AT_RISK)
    assert cleared.verdict is Verdict.ON_TRACK


def test_an_algorithm_already_at_the_target_is_the_first_arrival() -> None:
    curves = {"there": line(0.7, 0.01), "close": line(0.5, 0.1)}
    best_close = by_name(run(curves, at=600, target=0.99), "close").best
    target = best_close + 0.0001  # `close` arrives in about a second, `there` is there
    got = run(curves, at=600, target=target)
    assert by_name(got, "there").eta == 0.0
    close_eta = by_name(got, "close").eta
    assert close_eta is not None and 0.0 < close_eta < 1.0
    assert (got.eta, got.eta_algorithm) == (0.0, "there")


def flat_after_450(t: float) -> float:
    return 0.5 + 0.04 * min(t, 450) / 300.0


def test_a_stall_warning_tells_the_gain_over_the_window_and_the_delta_needed() -> None:
    got = run({"A": flat_after_450, "B": line(0.45, 0.025)}, at=690, target=0.8)
    assert got.stall_warning is not None
    assert got.stall_warning.gain_so_far == pytest.approx(
        flat_after_450(690) - flat_after_450(390), abs=1e-4
    )
    assert got.stall_warning.needed == RULES.stall_delta


def test_no_stall_warning_for_a_leader_that_reaches_the_target_before_stalling() -> None:
    curves = {"A": saturating(0.5, 0.7, 150)}
    stalling = run(curves, at=600, target=0.99)
    leader = stalling.algorithms[0]
    assert stalling.stall_warning is not None and leader.stopped_by == "stall"
    got = run(curves, at=600, target=leader.best + 0.0005)
    assert got.algorithms[0].stopped_by == "stall" and got.algorithms[0].eta is not None
    assert got.stall_warning is None


def test_a_budget_stop_is_no_stall_warning() -> None:
    points = history({"A": line(0.5, 0.05)}, until=600)
    got = forecast_job(
        points,
        snapshot(["A"], target=0.99),
        now=T0 + 600,
        rules=RULES,
        started_at=T0 + 600 - RULES.time_budget + 30,  # 30 s of budget left
    )
    (alg,) = got.algorithms
    assert (alg.stopped_by, alg.stops_in, alg.eta) == ("budget", pytest.approx(30.0), None)
    assert got.stall_warning is None


def test_the_stall_horizon_is_inclusive() -> None:
    curves = {"A": saturating(0.5, 0.7, 150)}
    seconds = run(curves, at=600, target=0.99).algorithms[0].stops_in
    assert seconds is not None and seconds > 0
    points, snap = history(curves, until=600), snapshot(["A"], target=0.99)
    for horizon, warned in ((seconds, True), (seconds - 1, False)):
        rules = replace(RULES, stall_horizon=horizon)
        got = forecast_job(points, snap, now=T0 + 600, rules=rules, started_at=T0)
        assert (got.stall_warning is not None) is warned
