"""Forecast of a training job: ETA to the target, or at risk, and the stall warning (pure).

(Over 300 lines: the verdict's hysteresis, the stall warning and the ETA's range are read
together from the same per-algorithm projections; the fits live in projection.py, the
first passage in arrival.py, the noise in forecast_noise.py.)

Call `forecast_job` once per poll with the job's stored history (store.Store.history, any
objects with `algorithm`, `at`, `value`), the new Snapshot, `now`, the rules and the
previous verdict. Cost: O(points + algorithms * 24), a fraction of a millisecond, no I/O,
no clock. docs/forecast.md has the method and the benchmark figures.

- Minimum history: an algorithm is projected once it has MIN_POINTS points spanning at
  least `min_history` seconds (default 180 s: six polls at the default 30 s interval);
  until one algorithm has, the verdict is NOT_ENOUGH_HISTORY.
- Hysteresis: margin = best projected - target; the hopeful reading takes rate x spread
  and a stall delta lowered by the best's noise (_noisy). From on-track the job turns
  AT_RISK only when the hopeful margin is below -enter_margin and the poll before agreed
  (its hopeful margin below -enter_margin too, or its central one below -clear_margin; not
  asked when `previous` is a bare verdict); back ON_TRACK once the margin > +exit_margin.
- Stall warning: the leading running algorithm (highest best) is projected to be stopped by
  the stall rule within `stall_horizon` seconds without reaching the target first, and is
  still so when the delta is lowered by `stall_noise` x the noise of its best (best_noise).
- ETA: the job's median first passage over the target (bot.core.arrival: the raw values'
  weighted fits, every running algorithm, each until its projected stop), its range the
  first passage's quartiles widened to at least the ETA x and / the hopeful spread. The
  per-algorithm `eta` is its central trend's crossing (it decides the stall warning).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from bot.core.arrival import Arrival, Reading, first_passage, read
from bot.core.forecast_noise import best_noise
from bot.core.models import RUNNING, Snapshot
from bot.core.projection import Basis, BestCurve, Trend, stall_in

MIN_POINTS = 4
RETRY_STEP = 0.05


class Verdict(StrEnum):
    NOT_ENOUGH_HISTORY = "not_enough_history"
    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    ENDED = "ended"


class HistoryLike(Protocol):
    """What store.records.HistoryPoint provides."""

    @property
    def algorithm(self) -> str: ...
    @property
    def at(self) -> float: ...
    @property
    def value(self) -> float: ...


@dataclass(frozen=True, slots=True)
class ForecastRules:
    """MathFi's stop rules (settings) and the forecaster's own knobs."""

    stall_window: float = 300.0
    stall_delta: float = 0.02
    time_budget: float = 3600.0
    min_history: float = 180.0
    enter_margin: float = 0.005
    exit_margin: float = 0.005
    stall_horizon: float = 90.0
    fit_span: float = 600.0  # seconds of history the trend is fitted on
    stall_tolerance: float = 0.85  # the projection stalls below delta * this (noise)
    optimism: float = 0.3  # the hopeful reading's rate: x (1 + 2 * this) early, (1 + this) later
    clear_margin: float = 0.08  # a central miss by more stands for the first of the two polls
    stall_noise: float = 1.0  # the stall warning's and the hopeful delta: - this x best_noise
    hopeful_floor: float = 0.75  # ... the hopeful one down to this share of it, no lower


@dataclass(frozen=True, slots=True)
class AlgorithmForecast:
    algorithm: str
    best: float  # best value so far
    rate: float  # recent improvement, performance units per second
    stops_in: float | None  # seconds until the stall rule or the budget stops it (None: never)
    stopped_by: str | None  # "stall" or "budget"
    projected: float  # best value when it stops (or at the end of the budget)
    eta: float | None  # seconds until it reaches the target, if before it stops

    @property
    def reaches_target(self) -> bool:
        return self.eta is not None


@dataclass(frozen=True, slots=True)
class StallWarning:
    algorithm: str
    seconds_left: float
    gain_so_far: float  # best gain over the stall window ending now
    needed: float  # the stall delta


@dataclass(frozen=True, slots=True)
class JobForecast:
    verdict: Verdict
    target: float | None
    algorithms: tuple[AlgorithmForecast, ...] = ()
    eta: float | None = None  # seconds from now: the median first passage of the job
    eta_low: float | None = None
    eta_high: float | None = None  # None: a quarter of the chance or more never arrives
    eta_algorithm: str | None = None
    best_projected: float | None = None
    best_algorithm: str | None = None
    stall_warning: StallWarning | None = None
    hopeful_margin: float | None = None  # the hopeful reading's best projected - target

    @property
    def margin(self) -> float | None:
        if self.best_projected is None or self.target is None:
            return None
        return self.best_projected - self.target


def retry_threshold(best: float) -> float:
    """The best value rounded down to a multiple of 0.05 (0.768 -> 0.75, 0.85 -> 0.85)."""
    steps = math.floor(round(best / RETRY_STEP, 6))
    return round(max(steps, 0) * RETRY_STEP, 2)


def advice_text(best: float) -> str:
    """MathFi's tuning advice after a miss, with the numbers."""
    return f"retrain at {retry_threshold(best):.2f}, then raise in {RETRY_STEP:.2f} steps"


def forecast_job(
    history: Iterable[HistoryLike],
    snapshot: Snapshot,
    *,
    now: float,
    rules: ForecastRules,
    previous: Verdict | JobForecast | None = None,
    started_at: float | None = None,
) -> JobForecast:
    """The job's forecast at `now`. `started_at`: when its algorithms started running, if
    known (else the first stored point, which pruning moves forward: pass it if you can).
    `previous`: the last poll's forecast (then turning at risk needs two polls in a row
    whose hopeful reading misses), or only the last ON_TRACK / AT_RISK verdict (one poll
    is then enough, as before)."""
    target = snapshot.target_performance
    if snapshot.terminal:
        return JobForecast(Verdict.ENDED, target)
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for point in history:
        points[point.algorithm].append((point.at, point.value))
    running = [a.algorithm for a in snapshot.algorithms if a.status == RUNNING]
    curves = {name: BestCurve(sorted(points[name])) for name in running if points.get(name)}
    ready = {name: c for name, c in curves.items() if _enough(c, now, rules)}
    if target is None or not ready:
        return JobForecast(Verdict.NOT_ENOUGH_HISTORY, target)
    start = started_at if started_at is not None else min(c.first_at for c in curves.values())
    # the fits of the best (trend) and of the raw values (first passage) share their points
    span = rules.fit_span
    bases = {name: c.basis(now, span, min_points=MIN_POINTS) for name, c in ready.items()}
    trends = {
        name: curve.trend(
            now, rules.fit_span, quiet=rules.stall_window, min_points=MIN_POINTS, basis=bases[name]
        )
        for name, curve in ready.items()
    }
    seen = now - min(c.first_at for c in ready.values())
    spread = 1.0 + rules.optimism * (2.0 - min(1.0, seen / rules.fit_span))
    forecasts = [
        _project(name, ready[name], trend, now, start, target, rules)
        for name, trend in trends.items()
    ]
    best = max(forecasts, key=lambda f: f.projected)
    lifted = {n: _noisy(c, now, rules, rules.hopeful_floor) for n, c in ready.items()}
    hopeful = max(  # the verdict's: hopeful about the rate and about the best's noise
        _project(n, c, trends[n].scaled(spread), now, start, target, lifted[n]).projected
        for n, c in ready.items()
    )
    arrival = first_passage({f.algorithm: _reading(f, ready, bases) for f in forecasts}, target)
    return JobForecast(
        verdict=verdict_after(
            best.projected - target, hopeful - target, *_earlier(previous, rules)
        ),
        target=target,
        algorithms=tuple(forecasts),
        eta=arrival.median if arrival else None,
        eta_low=min(arrival.early, arrival.median / spread) if arrival else None,
        eta_high=_late(arrival, spread),
        eta_algorithm=arrival.algorithm if arrival else None,
        best_projected=best.projected,
        best_algorithm=best.algorithm,
        stall_warning=_stall_warning(forecasts, ready, trends, now, start, target, rules),
        hopeful_margin=hopeful - target,
    )


def _earlier(
    previous: Verdict | JobForecast | None, rules: ForecastRules
) -> tuple[Verdict | None, ForecastRules, float | None, float | None]:
    """(the verdict to keep, rules, the hopeful and central margins the last poll read;
    -inf and None: not asked)."""
    if not isinstance(previous, JobForecast):
        return previous, rules, -math.inf, None
    kept = previous.verdict if previous.verdict in (Verdict.ON_TRACK, Verdict.AT_RISK) else None
    return kept, rules, previous.hopeful_margin, previous.margin


def _noisy(curve: BestCurve, now: float, rules: ForecastRules, floor: float) -> ForecastRules:
    """`rules` with the stall delta lowered by stall_noise x best_noise, to floor x it at
    most: a climber at about the delta keeps or loses a window by its noise."""
    noise = rules.stall_noise * best_noise(curve, now, rules.stall_window) / rules.stall_delta
    tolerance = max(floor * rules.stall_tolerance, rules.stall_tolerance - noise)
    return replace(rules, stall_tolerance=tolerance)


def _reading(
    forecast: AlgorithmForecast, curves: dict[str, BestCurve], bases: dict[str, Basis]
) -> Reading:
    """An algorithm's raw values read for the first passage, stopping where it is projected
    to stop."""
    basis = bases[forecast.algorithm]
    values = curves[forecast.algorithm].values[basis.start :]
    return read(values, basis, stops_in=forecast.stops_in or 0.0, best=forecast.best)


def _late(arrival: Arrival | None, spread: float) -> float | None:
    """The range's late end: the later of the first passage's last quartile and the ETA x
    `spread` (the quartiles alone held the actual arrival a third of the time, not half:
    they know the noise, not how wrong the fitted shape may be); None when the last
    quartile is never reached."""
    if arrival is None or arrival.late is None:
        return None
    return max(arrival.late, arrival.median * spread)


def _enough(curve: BestCurve, now: float, rules: ForecastRules) -> bool:
    return len(curve) >= MIN_POINTS and now - curve.first_at >= rules.min_history


def _project(
    name: str,
    curve: BestCurve,
    trend: Trend,
    now: float,
    start: float,
    target: float,
    rules: ForecastRules,
) -> AlgorithmForecast:
    best = curve.at(now)
    budget_left = max(0.0, start + rules.time_budget - now)
    stall = stall_in(
        curve,
        trend,
        now=now,
        window=rules.stall_window,
        delta=rules.stall_delta * rules.stall_tolerance,
        earliest=start + rules.stall_window,
        horizon=budget_left,
    )
    stops_in, stopped_by = (stall, "stall") if stall is not None else (budget_left, "budget")
    reach = trend.time_to_gain(target - best)
    eta = reach if reach is not None and reach <= stops_in else None
    projected = min(1.0, best + trend.gain(stops_in))
    return AlgorithmForecast(name, best, trend.rate, stops_in, stopped_by, projected, eta)


def verdict_after(
    margin: float,
    hopeful: float,
    previous: Verdict | None,
    rules: ForecastRules,
    earlier_hopeful: float | None = -math.inf,
    earlier_margin: float | None = None,
) -> Verdict:
    """Hysteresis: at risk once even the hopeful reading misses by more than enter_margin,
    in this poll and in the one before (`earlier_hopeful`: that poll's hopeful margin, None
    if it had none; -inf when unknown, which waives the second poll). The poll before also
    agrees when its central reading missed by more than clear_margin (`earlier_margin`): a
    clear miss whose hopeful reading was lifted by one poll's rate need not wait a poll more.
    Back on track once the central reading clears the target by more than exit_margin."""
    if previous is Verdict.AT_RISK:
        return Verdict.ON_TRACK if margin > rules.exit_margin else Verdict.AT_RISK
    agreed = earlier_hopeful is not None and earlier_hopeful < -rules.enter_margin
    clear = earlier_margin is not None and earlier_margin < -rules.clear_margin
    return (
        Verdict.AT_RISK if hopeful < -rules.enter_margin and (agreed or clear) else Verdict.ON_TRACK
    )


def _stall_warning(
    forecasts: list[AlgorithmForecast],
    curves: dict[str, BestCurve],
    trends: dict[str, Trend],
    now: float,
    start: float,
    target: float,
    rules: ForecastRules,
) -> StallWarning | None:
    """The leader's stall within stall_horizon, if clear: still so with _noisy's delta."""
    leader = max(forecasts, key=lambda f: f.best)
    if leader.stopped_by != "stall" or leader.stops_in is None or leader.eta is not None:
        return None
    if leader.stops_in > rules.stall_horizon:
        return None
    curve, noisy = curves[leader.algorithm], _noisy(curves[leader.algorithm], now, rules, 0.0)
    if noisy.stall_tolerance <= 0:  # the noise alone spans the delta: no stall is clear
        return None
    clear = _project(leader.algorithm, curve, trends[leader.algorithm], now, start, target, noisy)
    if clear.stopped_by != "stall" or clear.eta is not None:
        return None
    if clear.stops_in is None or clear.stops_in > rules.stall_horizon:
        return None
    gain = curve.at(now) - curve.at(now - rules.stall_window)
    return StallWarning(leader.algorithm, leader.stops_in, gain, rules.stall_delta)
