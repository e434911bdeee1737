"""A job's forecast from one changed poll to the next, and the warnings it gives (pure).

The engine calls `advance` once per changed poll with the job's history (the stored points
plus the ones this poll writes), the new snapshot and the `ForecastState` it kept; it gets
back the state to keep and the warning events to fan out. The state is what must survive
a restart (the job's row holds it as JSON, `to_json` / `read_state`): when the job was
first seen running, the last forecast (the card shows it, and the next poll's hysteresis
reads it) and the warning gate's memory (`bot.core.forecast_warnings.WarningState`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.core.events import Event, EventKind
from bot.core.forecast import (
    ForecastRules,
    HistoryLike,
    JobForecast,
    Verdict,
    forecast_job,
)
from bot.core.forecast_warnings import ForecastWarning, WarningKind, WarningState, next_warning
from bot.core.models import RUNNING, Snapshot


def rules_for(*, stall_window: float, stall_delta: float, time_budget: float) -> ForecastRules:
    """The forecaster's rules for MathFi's settings (its own knobs at their defaults)."""
    return ForecastRules(
        stall_window=stall_window, stall_delta=stall_delta, time_budget=time_budget
    )


@dataclass(frozen=True, slots=True)
class _Point:
    algorithm: str
    at: float
    value: float


def forecast_now(
    history: Iterable[HistoryLike],
    snapshot: Snapshot,
    *,
    now: float,
    rules: ForecastRules,
    previous: JobForecast | None,
    started_at: float | None,
) -> JobForecast:
    """`forecast_job`, on MathFi's own clock. The forecaster's knobs (minimum history, fit
    span, the bend's time constants, the stall horizon) are tuned for MathFi's 300 s stall
    window; rules whose window is shorter (the simulator's compressed lifecycles) are read
    as the same job played faster: time is scaled to a 300 s window on the way in, and the
    ETAs, rates and stops back on the way out, so a compressed job is forecast alike."""
    scale = rules.stall_window / ForecastRules().stall_window
    if scale == 1.0:
        return forecast_job(
            history, snapshot, now=now, rules=rules, previous=previous, started_at=started_at
        )
    slow = replace(
        rules, stall_window=rules.stall_window / scale, time_budget=rules.time_budget / scale
    )
    forecast = forecast_job(
        [_Point(p.algorithm, p.at / scale, p.value) for p in history],
        snapshot,
        now=now / scale,
        rules=slow,
        previous=previous,
        started_at=None if started_at is None else started_at / scale,
    )
    return _faster(forecast, scale)


def _times(value: float | None, scale: float) -> float | None:
    return None if value is None else value * scale


def _faster(forecast: JobForecast, scale: float) -> JobForecast:
    stall = forecast.stall_warning
    return replace(
        forecast,
        algorithms=tuple(
            replace(
                a,
                rate=a.rate / scale,
                stops_in=_times(a.stops_in, scale),
                eta=_times(a.eta, scale),
            )
            for a in forecast.algorithms
        ),
        eta=_times(forecast.eta, scale),
        eta_low=_times(forecast.eta_low, scale),
        eta_high=_times(forecast.eta_high, scale),
        stall_warning=replace(stall, seconds_left=stall.seconds_left * scale) if stall else None,
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class ForecastSummary(BaseModel):
    """One poll's forecast, as the card draws it and the next poll's hysteresis reads it."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    at: float  # when it was made: `eta*` count from here
    verdict: Verdict
    target: float | None = None
    eta: float | None = None
    eta_low: float | None = None
    eta_high: float | None = None  # None: the slow reading never arrives
    eta_algorithm: str | None = None
    rate: float | None = None  # the ETA algorithm's recent improvement, per second
    best_projected: float | None = None
    best_algorithm: str | None = None
    hopeful_margin: float | None = None

    @classmethod
    def of(cls, forecast: JobForecast, *, at: float) -> ForecastSummary:
        rates = {a.algorithm: a.rate for a in forecast.algorithms}
        return cls(
            at=at,
            verdict=forecast.verdict,
            target=forecast.target,
            eta=_finite(forecast.eta),
            eta_low=_finite(forecast.eta_low),
            eta_high=_finite(forecast.eta_high),
            eta_algorithm=forecast.eta_algorithm,
            rate=_finite(rates.get(forecast.eta_algorithm or "")),
            best_projected=_finite(forecast.best_projected),
            best_algorithm=forecast.best_algorithm,
            hopeful_margin=_finite(forecast.hopeful_margin),
        )

    def as_previous(self) -> JobForecast:
        """What `forecast_job(previous=...)` reads of the last poll: its verdict and its
        hopeful and central margins (the clear-miss rule reads the central one)."""
        return JobForecast(
            self.verdict,
            self.target,
            best_projected=self.best_projected,
            hopeful_margin=self.hopeful_margin,
        )


class ForecastState(BaseModel):
    """What the engine keeps per job between polls (and across a restart)."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    started_at: float | None = None  # first seen RUNNING
    last: ForecastSummary | None = None  # None: nothing to show (not running, or ended)
    told: Verdict = Verdict.ON_TRACK
    last_warning_at: float | None = None
    stall_warned: tuple[str, ...] = ()

    def to_json(self) -> str:
        return self.model_dump_json(exclude_defaults=True)

    def warnings(self) -> WarningState:
        return WarningState(self.told, self.last_warning_at, frozenset(self.stall_warned))


def read_state(text: str | None) -> ForecastState:
    """The state a job's row holds; a fresh one for none (or one this version cannot read:
    the worst that costs is a warning repeated once)."""
    if not text:
        return ForecastState()
    try:
        return ForecastState.model_validate_json(text)
    except ValidationError:
        return ForecastState()


def advance(
    state: ForecastState,
    history: Iterable[HistoryLike],
    snapshot: Snapshot,
    *,
    now: float,
    rules: ForecastRules,
    cooldown: float,
) -> tuple[ForecastState, list[Event]]:
    """This poll's forecast and warnings. A job that is not running keeps its warning
    memory and shows no forecast; `history` is read only while it runs."""
    if snapshot.status != RUNNING:
        return state.model_copy(update={"last": None}), []
    started_at = state.started_at if state.started_at is not None else now
    forecast = forecast_now(
        history,
        snapshot,
        now=now,
        rules=rules,
        previous=state.last.as_previous() if state.last is not None else None,
        started_at=started_at,
    )
    warning, gate = next_warning(forecast, state.warnings(), now=now, cooldown=cooldown)
    kept = ForecastState(
        started_at=started_at,
        last=ForecastSummary.of(forecast, at=now),
        told=gate.told,
        last_warning_at=gate.last_at,
        stall_warned=tuple(sorted(gate.stall_warned)),
    )
    if warning is None:
        return kept, []
    return kept, [warning_event(warning, forecast, snapshot.job_key, rules)]


def warning_event(
    warning: ForecastWarning, forecast: JobForecast, job_key: str, rules: ForecastRules
) -> Event:
    """The event that tells a warning, with what its message needs."""
    if warning.kind is WarningKind.AT_RISK:
        stall = warning.stall
        return Event(
            kind=EventKind.AT_RISK,
            job_key=job_key,
            algorithm=warning.algorithm,
            best_projected=_finite(warning.best_projected),
            target_performance=warning.target,
            retry_at=warning.retry_at,
            stall_algorithm=stall.algorithm if stall else None,
            seconds_left=_finite(stall.seconds_left) if stall else None,
        )
    if warning.kind is WarningKind.BACK_ON_TRACK:
        return Event(
            kind=EventKind.BACK_ON_TRACK,
            job_key=job_key,
            algorithm=forecast.eta_algorithm or forecast.best_algorithm,
            best_projected=_finite(forecast.best_projected),
            target_performance=warning.target,
            eta=_finite(forecast.eta),
        )
    stalling = forecast.stall_warning
    return Event(
        kind=EventKind.STALL_WARNING,
        job_key=job_key,
        algorithm=warning.algorithm,
        target_performance=warning.target,
        seconds_left=_finite(warning.seconds_left),
        gained=_finite(stalling.gain_so_far) if stalling else None,
        needed=stalling.needed if stalling else rules.stall_delta,
        window=rules.stall_window,
    )
