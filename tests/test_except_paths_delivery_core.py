"""The pure core's refusals and rare branches that no other test runs (issue #20): a
back-on-track warning as the event the sender posts, and what the core refuses to build
(an alert's status from a notification that raises none, an action line without an
actor), plus a forecast state this version cannot read."""

from __future__ import annotations

import math

import pytest

from bot.core.events import Event, EventKind
from bot.core.forecast import ForecastRules, JobForecast, Verdict
from bot.core.forecast_state import ForecastState, read_state, warning_event
from bot.core.forecast_warnings import ForecastWarning, WarningKind
from bot.core.notification import Notification, action_taken
from bot.core.oncall import bad_ending


def back_on_track(forecast: JobForecast) -> Event:
    warning = ForecastWarning(WarningKind.BACK_ON_TRACK, 90.0, 0.8)
    return warning_event(warning, forecast, "J1", ForecastRules())


def test_back_on_track_names_the_algorithm_that_arrives_first_and_when() -> None:
    forecast = JobForecast(
        Verdict.ON_TRACK,
        0.8,
        eta=600.0,
        eta_algorithm="BSEV02",
        best_projected=0.86,
        best_algorithm="BSEV01",
    )
    assert back_on_track(forecast) == Event(
        kind=EventKind.BACK_ON_TRACK,
        job_key="J1",
        algorithm="BSEV02",
        best_projected=0.86,
        target_performance=0.8,
        eta=600.0,
    )


def test_back_on_track_without_an_arrival_names_the_best_and_no_eta() -> None:
    forecast = JobForecast(
        Verdict.ON_TRACK, 0.8, eta=math.inf, best_projected=math.inf, best_algorithm="BSEV01"
    )
    event = back_on_track(forecast)
    assert (event.algorithm, event.eta, event.best_projected) == ("BSEV01", None, None)


def test_a_forecast_without_a_target_has_no_margin() -> None:
    assert JobForecast(Verdict.NOT_ENOUGH_HISTORY, None, best_projected=0.8).margin is None
    assert JobForecast(Verdict.ON_TRACK, 0.8).margin is None
    assert JobForecast(Verdict.ON_TRACK, 0.8, best_projected=0.85).margin == pytest.approx(0.05)


@pytest.mark.parametrize(
    "text", ['{"told": "maybe"}', '{"started_at": "soon"}', "{", "[]"], ids=str
)
def test_a_state_this_version_cannot_read_starts_afresh(text: str) -> None:
    assert read_state(text) == ForecastState()


def test_a_notification_that_raises_no_alert_has_no_bad_ending() -> None:
    ended = Event(
        kind=EventKind.JOB_STATUS, job_key="J1", old_status="RUNNING", new_status="COMPLETED"
    )
    notification = Notification(
        channel_id="C1",
        job_key="J1",
        subscription_id=1,
        events=(ended,),
        snapshot=None,
        headline=EventKind.JOB_STATUS,
        mention="<!here>",
        dedupe_key="k",
    )
    with pytest.raises(ValueError, match="not an alert"):
        bad_ending(notification)
    failed = ended.model_copy(update={"new_status": "FAILED"})
    assert bad_ending(notification.model_copy(update={"events": (ended, failed)})) == "FAILED"


@pytest.mark.parametrize(
    "event",
    [
        Event(kind=EventKind.ACTION_TAKEN, job_key="J1"),  # nobody
        Event(kind=EventKind.NEW_BEST, job_key="J1", actor="U0ALICE"),  # no action
    ],
    ids=["no-actor", "not-an-action"],
)
def test_an_action_line_needs_an_action_and_an_actor(event: Event) -> None:
    with pytest.raises(ValueError, match="an action line needs an ACTION_TAKEN event"):
        action_taken("C1", "J1", event, action_id=7)
