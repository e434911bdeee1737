"""A running job's forecast is made at most every `PollerConfig.forecast_every` seconds, not
on every changed poll (it cost a third of the poller's CPU at 10,000 jobs): between two
forecasts the stored one stands, and nothing of it is written again."""

from __future__ import annotations

from pathlib import Path

from bot.core.forecast import ForecastRules
from bot.core.forecast_state import ForecastState
from bot.core.models import AlgorithmProgress, Snapshot
from bot.engine.jobs import PollerConfig, forecast_step
from store import Store


def running(value: float) -> Snapshot:
    return Snapshot(
        job_key="J1",
        status="RUNNING",
        target_performance=0.85,
        algorithms=(AlgorithmProgress(algorithm="A", status="RUNNING", latest_performance=value),),
    )


def test_every_is_a_fifth_of_the_stall_window_and_at_most_a_minute() -> None:
    assert PollerConfig().forecast_every == 60.0
    assert PollerConfig(forecast=ForecastRules(stall_window=15.0)).forecast_every == 3.0


def test_a_forecast_stands_until_it_is_due_again(tmp_path: Path) -> None:
    store = Store(tmp_path / "bot.db", clock=lambda: 0.0)
    config = PollerConfig()
    try:
        first, _ = forecast_step(store, config, ForecastState(), running(0.5), running(0.51), 100.0)
        assert first.last is not None and first.last.at == 100.0
        same, warnings = forecast_step(store, config, first, running(0.51), running(0.52), 159.0)
        assert same is first and warnings == []  # not due: kept as it is
        later, _ = forecast_step(store, config, first, running(0.52), running(0.53), 160.0)
        assert later is not first and later.last is not None and later.last.at == 160.0
        ended = running(0.53).model_copy(update={"status": "NOT_COMPLETED"})
        final, _ = forecast_step(store, config, first, running(0.53), ended, 101.0)
        assert final.last is None  # a status change is never held back
    finally:
        store.close()
