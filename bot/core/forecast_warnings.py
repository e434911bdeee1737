"""Which forecast warning to send to a channel now, if any (pure, `now` injected).

Feed it each poll's JobForecast and the state it returned last time (keep it per job).
- `at_risk` once when the job turns at risk, `back_on_track` once if it recovers after an
  `at_risk` was sent (a job that was never announced at risk has nothing to recover from);
- `stall_warning` at most once per algorithm;
- at most one warning per job per `cooldown` seconds: while cooling down nothing is sent
  and nothing is marked as told, so a change that still holds afterwards is sent then.
The verdict change goes before a stall warning when both are due, and a stall warning is
held back while the job is on track but its central projection already misses the target
(the at_risk that is about to follow says more, and would otherwise wait a cooldown), or
while the job's best projected algorithm is another one. An at_risk warning carries the
leader's imminent stall, if any, so that news is not lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from bot.core.forecast import (
    JobForecast,
    StallWarning,
    Verdict,
    advice_text,
    retry_threshold,
)


class WarningKind(StrEnum):
    AT_RISK = "at_risk"
    BACK_ON_TRACK = "back_on_track"
    STALL = "stall_warning"


@dataclass(frozen=True, slots=True)
class ForecastWarning:
    kind: WarningKind
    at: float
    target: float | None
    algorithm: str | None = None  # stall: the algorithm; at risk: the best projected one
    seconds_left: float | None = None  # stall only
    best_projected: float | None = None
    retry_at: float | None = None  # at risk: the threshold MathFi's advice would retry with
    advice: str | None = None
    stall: StallWarning | None = None  # at risk: the leader's imminent stall, if any


@dataclass(frozen=True, slots=True)
class WarningState:
    told: Verdict = Verdict.ON_TRACK
    last_at: float | None = None
    stall_warned: frozenset[str] = field(default_factory=frozenset)


def next_warning(
    forecast: JobForecast, state: WarningState, *, now: float, cooldown: float
) -> tuple[ForecastWarning | None, WarningState]:
    """The warning to send now (or None) and the state to keep for the next poll."""
    if forecast.verdict not in (Verdict.ON_TRACK, Verdict.AT_RISK):
        return None, state
    if state.last_at is not None and now - state.last_at < cooldown:
        return None, state
    if forecast.verdict != state.told:
        told = replace(state, told=forecast.verdict, last_at=now)
        if forecast.verdict is Verdict.AT_RISK:
            return _at_risk(forecast, now), told
        return ForecastWarning(WarningKind.BACK_ON_TRACK, now, forecast.target), told
    stall = forecast.stall_warning
    if (
        stall is not None
        and stall.algorithm not in state.stall_warned
        and not _at_risk_due(forecast)
    ):
        warned = state.stall_warned | {stall.algorithm}
        warning = ForecastWarning(
            WarningKind.STALL,
            now,
            forecast.target,
            algorithm=stall.algorithm,
            seconds_left=stall.seconds_left,
        )
        return warning, replace(state, last_at=now, stall_warned=warned)
    return None, state


def _at_risk_due(forecast: JobForecast) -> bool:
    """The central reading already misses the target: an at_risk warning is near and says
    more, so a stall warning must not spend the cooldown before it."""
    if forecast.verdict is Verdict.AT_RISK:
        return False
    stalling = forecast.stall_warning
    elsewhere = stalling is not None and stalling.algorithm != forecast.best_algorithm
    return elsewhere or (forecast.margin or 0.0) < 0.0


def _at_risk(forecast: JobForecast, now: float) -> ForecastWarning:
    best = forecast.best_projected
    return ForecastWarning(
        WarningKind.AT_RISK,
        now,
        forecast.target,
        algorithm=forecast.best_algorithm,
        best_projected=best,
        retry_at=retry_threshold(best) if best is not None else None,
        advice=advice_text(best) if best is not None else None,
        stall=forecast.stall_warning,
    )
