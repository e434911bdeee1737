"""`bot.core.forecast_state`, pure: a job's forecast from one changed poll to the next, on
MathFi's clock (a compressed stall window is the same job played faster), the summary the
card and the next poll read, the state kept across a restart, and the warning events with
what their messages need (issue #20: the module under mutation testing)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import replace

import pytest

from bot.core.events import Event, EventKind
from bot.core.forecast import (
    AlgorithmForecast,
    ForecastRules,
    JobForecast,
    StallWarning,
    Verdict,
    forecast_job,
)
from bot.core.forecast_state import (
    ForecastState,
    ForecastSummary,
    advance,
    forecast_now,
    read_state,
    rules_for,
    warning_event,
)
from bot.core.forecast_warnings import ForecastWarning, WarningKind, WarningState
from tests.test_forecast import Curve, Point, history, line, snapshot

RULES = ForecastRules()
T0 = 10_000.0
NOW = T0 + 690.0
FAST = 0.1  # a 30 s stall window: MathFi's job played ten times faster


def stalling_soon(t: float) -> float:
    """Climbs 0.04 a window until 550 s, then flat: at 690 s its stall is 62.5 s away."""
    return 0.5 + 0.04 * min(t, 550.0) / 300.0


# A, the leader, stalls soon (the stall warning); B climbs too slowly for the target (the
# budget stops it); C reaches it (the ETA and its range)
JOB: dict[str, Curve] = {"A": stalling_soon, "B": line(0.45, 0.025), "C": line(0.3, 0.06)}
MISSING: dict[str, Curve] = {"A": line(0.5, 0.01)}  # 0.5 a window: the target 0.8 is far


def compressed(points: Sequence[Point], scale: float) -> list[Point]:
    return [Point(p.algorithm, p.at * scale, p.value) for p in points]


def test_rules_for_takes_mathfis_three_settings_and_keeps_the_forecasters_knobs() -> None:
    rules = rules_for(stall_window=30.0, stall_delta=0.01, time_budget=360.0)
    assert rules == replace(RULES, stall_window=30.0, stall_delta=0.01, time_budget=360.0)


def test_on_mathfis_own_window_it_is_forecast_job() -> None:
    points, snap = history(JOB, until=690), snapshot(list(JOB), target=0.8)
    previous = JobForecast(Verdict.AT_RISK, 0.8, hopeful_margin=-0.1)
    got = forecast_now(points, snap, now=NOW, rules=RULES, previous=previous, started_at=T0 - 600)
    assert got == forecast_job(
        points, snap, now=NOW, rules=RULES, previous=previous, started_at=T0 - 600
    )
    assert got != forecast_job(points, snap, now=NOW, rules=RULES, started_at=T0)


@pytest.mark.parametrize(("scale", "started_at"), [(FAST, T0 - 120), (2.0, T0 - 120), (FAST, None)])
def test_another_window_is_the_same_job_played_faster_or_slower(
    scale: float, started_at: float | None
) -> None:
    """The job of a 30 s window, its points ten times closer: the same verdict, best and
    projections as MathFi's 300 s job, its ETAs, stops and stall ten times sooner and its
    rates ten times higher; a 600 s window likewise, twice slower. Started 120 s before the
    first point: the budget counts from then (else from the first point)."""
    points, snap = history(JOB, until=690), snapshot(list(JOB), target=0.8)
    budget = 3600.0  # counted from 120 s before the first point: B stops 2,790 s from now
    base = forecast_job(
        points, snap, now=NOW, rules=replace(RULES, time_budget=budget), started_at=started_at
    )
    scaled = forecast_now(
        compressed(points, scale),
        snap,
        now=NOW * scale,
        rules=rules_for(stall_window=300.0 * scale, stall_delta=0.02, time_budget=budget * scale),
        previous=None,
        started_at=None if started_at is None else started_at * scale,
    )
    # the job on MathFi's own window is what the test expects of the scaled one
    assert base.eta is not None and base.eta_low is not None and base.eta_high is not None
    assert base.stall_warning is not None and base.stall_warning.seconds_left == 62.5
    assert [a.stopped_by for a in base.algorithms] == ["stall", "budget", "budget"]
    assert base.algorithms[1].stops_in == 3600.0 - 690.0 + (0.0 if started_at is None else -120.0)
    approx = pytest.approx
    assert (scaled.verdict, scaled.target, scaled.eta_algorithm) == (
        base.verdict,
        base.target,
        base.eta_algorithm,
    )
    assert (scaled.best_projected, scaled.best_algorithm, scaled.hopeful_margin) == (
        approx(base.best_projected),
        base.best_algorithm,
        approx(base.hopeful_margin),
    )
    assert (scaled.eta, scaled.eta_low, scaled.eta_high) == (
        approx(base.eta * scale),
        approx(base.eta_low * scale),
        approx(base.eta_high * scale),
    )
    for quick, steady in zip(scaled.algorithms, base.algorithms, strict=True):
        assert (quick.algorithm, quick.stopped_by) == (steady.algorithm, steady.stopped_by)
        assert (quick.best, quick.projected) == (approx(steady.best), approx(steady.projected))
        assert quick.rate == approx(steady.rate / scale)
        assert quick.stops_in == approx((steady.stops_in or 0.0) * scale)
        assert quick.eta == (None if steady.eta is None else approx(steady.eta * scale))
    assert scaled.stall_warning == StallWarning(
        "A",
        approx(62.5 * scale),
        approx(base.stall_warning.gain_so_far),
        base.stall_warning.needed,
    )


def test_a_compressed_job_reads_the_last_poll() -> None:
    """At risk on a first reading (no last poll: one reading is enough); on track while
    the last poll's hopeful reading still reached the target."""
    points, snap = history(MISSING, until=690), snapshot(["A"], target=0.8)
    kwargs = {
        "now": NOW * FAST,
        "rules": rules_for(stall_window=30.0, stall_delta=0.02, time_budget=360.0),
        "started_at": T0 * FAST,
    }
    first = forecast_now(compressed(points, FAST), snap, previous=None, **kwargs)  # type: ignore[arg-type]
    assert first.verdict is Verdict.AT_RISK and first.eta is None and first.eta_high is None
    hopeful = JobForecast(Verdict.ON_TRACK, 0.8, hopeful_margin=0.1)
    second = forecast_now(compressed(points, FAST), snap, previous=hopeful, **kwargs)  # type: ignore[arg-type]
    assert second.verdict is Verdict.ON_TRACK


def test_a_compressed_job_without_enough_history_has_no_forecast_yet() -> None:
    points = compressed(history(JOB, until=120), FAST)
    rules = rules_for(stall_window=30.0, stall_delta=0.02, time_budget=360.0)
    got = forecast_now(
        points, snapshot(list(JOB), target=0.8), now=T0 * FAST + 12.0, rules=rules,
        previous=None, started_at=None,
    )  # fmt: skip
    assert got == JobForecast(Verdict.NOT_ENOUGH_HISTORY, 0.8)


def algorithm(name: str, rate: float) -> AlgorithmForecast:
    return AlgorithmForecast(name, 0.5, rate, 100.0, "budget", 0.7, None)


def test_the_summary_keeps_what_the_card_and_the_next_poll_read() -> None:
    forecast = JobForecast(
        Verdict.AT_RISK,
        0.8,
        algorithms=(algorithm("A", 0.001), algorithm("B", 0.002)),
        eta=100.0,
        eta_low=80.0,
        eta_high=130.0,
        eta_algorithm="B",
        best_projected=0.75,
        best_algorithm="A",
        hopeful_margin=-0.02,
    )
    summary = ForecastSummary.of(forecast, at=500.0)
    assert summary == ForecastSummary(
        at=500.0,
        verdict=Verdict.AT_RISK,
        target=0.8,
        eta=100.0,
        eta_low=80.0,
        eta_high=130.0,
        eta_algorithm="B",
        rate=0.002,
        best_projected=0.75,
        best_algorithm="A",
        hopeful_margin=-0.02,
    )
    previous = summary.as_previous()
    assert previous == JobForecast(Verdict.AT_RISK, 0.8, best_projected=0.75, hopeful_margin=-0.02)
    # what forecast_job reads of the last poll (verdict, hopeful and central margins: the
    # clear-miss rule needs the central one) is the same from the kept summary as from the
    # forecast itself, so the bot decides as bench/forecast.py measured
    assert (previous.verdict, previous.hopeful_margin, previous.margin) == (
        forecast.verdict, forecast.hopeful_margin, forecast.margin,
    )  # fmt: skip


def test_the_summary_drops_what_is_not_finite_and_a_rate_without_an_eta() -> None:
    forecast = JobForecast(
        Verdict.ON_TRACK,
        None,
        algorithms=(algorithm("A", math.inf),),
        eta=math.inf,
        eta_low=math.nan,
        eta_high=math.inf,
        best_projected=math.inf,
        best_algorithm="A",
        hopeful_margin=-math.inf,
    )
    summary = ForecastSummary.of(forecast, at=1.0)
    assert summary == ForecastSummary(at=1.0, verdict=Verdict.ON_TRACK, best_algorithm="A")
    with_eta = ForecastSummary.of(replace(forecast, eta_algorithm="A"), at=1.0)
    assert with_eta.rate is None  # its rate is not finite either


def test_the_state_is_kept_as_json_with_only_what_is_not_default() -> None:
    assert ForecastState().to_json() == "{}"
    summary = ForecastSummary(at=5.0, verdict=Verdict.ON_TRACK, eta=10.0)
    state = ForecastState(
        started_at=1.0, last=summary, told=Verdict.AT_RISK, stall_warned=("A", "B")
    )
    assert state.to_json() == (
        '{"started_at":1.0,"last":{"at":5.0,"verdict":"on_track","eta":10.0},'
        '"told":"at_risk","stall_warned":["A","B"]}'
    )
    assert read_state(state.to_json()) == state
    assert state.warnings() == WarningState(Verdict.AT_RISK, None, frozenset({"A", "B"}))
    told = ForecastState(last_warning_at=7.0)
    assert told.warnings() == WarningState(Verdict.ON_TRACK, 7.0, frozenset())


@pytest.mark.parametrize("text", [None, "", "not json", '{"told": "perhaps"}', '{"at": inf}'])
def test_a_state_this_version_cannot_read_is_a_fresh_one(text: str | None) -> None:
    assert read_state(text) == ForecastState()


def unread() -> Iterator[Point]:
    raise AssertionError("history read for a job that is not running")
    yield  # pragma: no cover


def test_a_job_that_is_not_running_keeps_its_memory_and_shows_no_forecast() -> None:
    state = ForecastState(
        started_at=1.0,
        last=ForecastSummary(at=5.0, verdict=Verdict.AT_RISK),
        told=Verdict.AT_RISK,
        last_warning_at=5.0,
        stall_warned=("A",),
    )
    ended = snapshot(["A"], target=0.8, status="COMPLETED")
    kept, events = advance(state, unread(), ended, now=10.0, rules=RULES, cooldown=60.0)
    assert (kept, events) == (state.model_copy(update={"last": None}), [])


def test_a_first_poll_starts_the_clock_and_warns_at_once() -> None:
    points, snap = history(MISSING, until=690), snapshot(["A"], target=0.8)
    kept, events = advance(ForecastState(), points, snap, now=NOW, rules=RULES, cooldown=60.0)
    forecast = forecast_job(points, snap, now=NOW, rules=RULES, started_at=NOW)
    assert forecast.verdict is Verdict.AT_RISK
    assert kept == ForecastState(
        started_at=NOW,
        last=ForecastSummary.of(forecast, at=NOW),
        told=Verdict.AT_RISK,
        last_warning_at=NOW,
    )
    assert [e.kind for e in events] == [EventKind.AT_RISK]
    assert events[0].job_key == "J" and events[0].algorithm == "A"


def test_a_later_poll_reads_the_kept_start_and_the_last_forecast() -> None:
    """The last forecast's hopeful reading reached the target: one missing poll is not
    enough to turn at risk; the budget counts from the kept start."""
    points, snap = history(MISSING, until=690), snapshot(["A"], target=0.8)
    last = ForecastSummary(at=NOW - 60, verdict=Verdict.ON_TRACK, hopeful_margin=0.1)
    state = ForecastState(started_at=T0, last=last)
    kept, events = advance(state, points, snap, now=NOW, rules=RULES, cooldown=60.0)
    forecast = forecast_job(
        points, snap, now=NOW, rules=RULES, previous=last.as_previous(), started_at=T0
    )
    assert forecast.verdict is Verdict.ON_TRACK and events == []
    assert kept == ForecastState(started_at=T0, last=ForecastSummary.of(forecast, at=NOW))


def test_the_cooldown_holds_a_warning_and_the_stall_memory_is_kept_sorted() -> None:
    points, snap = history(MISSING, until=690), snapshot(["A"], target=0.8)
    cooling = ForecastState(last_warning_at=NOW - 30, stall_warned=("Z", "B"))
    kept, events = advance(cooling, points, snap, now=NOW, rules=RULES, cooldown=31.0)
    assert events == [] and (kept.told, kept.last_warning_at) == (Verdict.ON_TRACK, NOW - 30)
    assert kept.stall_warned == ("B", "Z")
    kept, events = advance(cooling, points, snap, now=NOW, rules=RULES, cooldown=30.0)
    assert [e.kind for e in events] == [EventKind.AT_RISK]
    assert (kept.told, kept.last_warning_at) == (Verdict.AT_RISK, NOW)


def test_a_stall_warning_is_remembered_for_its_algorithm() -> None:
    """Told at risk already (a stall warning is not held back for an at_risk to come)."""
    stalling = {"A": stalling_soon, "B": JOB["B"]}
    points, snap = history(stalling, until=690), snapshot(list(stalling), target=0.8)
    last = ForecastSummary(at=NOW - 60, verdict=Verdict.AT_RISK, hopeful_margin=-0.2)
    state = ForecastState(started_at=T0, last=last, told=Verdict.AT_RISK, stall_warned=("Z",))
    kept, events = advance(state, points, snap, now=NOW, rules=RULES, cooldown=60.0)
    assert [(e.kind, e.algorithm, e.seconds_left) for e in events] == [
        (EventKind.STALL_WARNING, "A", 62.5)
    ]
    assert kept.stall_warned == ("A", "Z") and kept.last_warning_at == NOW


STALL = StallWarning("A", 40.0, 0.011, 0.03)  # `needed` 0.03: not the rules' 0.02


def test_an_at_risk_event_carries_the_advice_and_the_leaders_stall() -> None:
    warning = ForecastWarning(
        WarningKind.AT_RISK, 5.0, 0.8, algorithm="B", best_projected=0.76, retry_at=0.75
    )
    forecast = JobForecast(Verdict.AT_RISK, 0.9, best_algorithm="C", best_projected=0.1)
    assert warning_event(warning, forecast, "J1", RULES) == Event(
        kind=EventKind.AT_RISK,
        job_key="J1",
        algorithm="B",
        best_projected=0.76,
        target_performance=0.8,
        retry_at=0.75,
    )
    stalled = replace(warning, stall=STALL)
    assert warning_event(stalled, forecast, "J1", RULES) == Event(
        kind=EventKind.AT_RISK,
        job_key="J1",
        algorithm="B",
        best_projected=0.76,
        target_performance=0.8,
        retry_at=0.75,
        stall_algorithm="A",
        seconds_left=40.0,
    )
    endless = replace(warning, best_projected=math.inf, stall=replace(STALL, seconds_left=math.inf))
    event = warning_event(endless, forecast, "J1", RULES)
    assert (event.best_projected, event.stall_algorithm, event.seconds_left) == (None, "A", None)


def test_a_back_on_track_event_names_the_eta_algorithm_else_the_best() -> None:
    warning = ForecastWarning(WarningKind.BACK_ON_TRACK, 5.0, 0.8)
    forecast = JobForecast(
        Verdict.ON_TRACK, 0.9, eta=120.0, eta_algorithm="B", best_algorithm="C", best_projected=0.85
    )
    assert warning_event(warning, forecast, "J1", RULES) == Event(
        kind=EventKind.BACK_ON_TRACK,
        job_key="J1",
        algorithm="B",
        best_projected=0.85,
        target_performance=0.8,
        eta=120.0,
    )
    no_eta = replace(forecast, eta=math.inf, eta_algorithm=None, best_projected=math.inf)
    assert warning_event(warning, no_eta, "J1", RULES) == Event(
        kind=EventKind.BACK_ON_TRACK, job_key="J1", algorithm="C", target_performance=0.8
    )


def test_a_stall_event_carries_the_gain_so_far_and_the_window() -> None:
    rules = replace(RULES, stall_window=240.0)
    warning = ForecastWarning(WarningKind.STALL, 5.0, 0.8, algorithm="A", seconds_left=40.0)
    forecast = JobForecast(Verdict.ON_TRACK, 0.9, stall_warning=STALL)
    assert warning_event(warning, forecast, "J1", rules) == Event(
        kind=EventKind.STALL_WARNING,
        job_key="J1",
        algorithm="A",
        target_performance=0.8,
        seconds_left=40.0,
        gained=0.011,
        needed=0.03,
        window=240.0,
    )
    # the forecast's stall gone (or its gain not finite): the rules' delta is what it needs
    endless = replace(warning, seconds_left=math.inf)
    assert warning_event(endless, replace(forecast, stall_warning=None), "J1", rules) == Event(
        kind=EventKind.STALL_WARNING,
        job_key="J1",
        algorithm="A",
        target_performance=0.8,
        needed=0.02,
        window=240.0,
    )
    odd = replace(forecast, stall_warning=replace(STALL, gain_so_far=math.nan))
    assert warning_event(warning, odd, "J1", rules).gained is None
