"""The forecast `/mathfi status` shows: the job's, computed now from its stored history.

The same forecaster, rules and kept state (hysteresis, when the job started running) as the
engine's, applied to the snapshot the command just fetched. A job no channel watches has no
history to forecast from: the status says so. If the database refuses the read, the status
is answered without a forecast line.
"""

from __future__ import annotations

from bot.core.forecast import ForecastRules, Verdict
from bot.core.forecast_state import ForecastSummary, forecast_now, read_state
from bot.core.models import RUNNING, Snapshot
from store import AsyncStore, Store, StoreUnavailable

NOT_WATCHED = "🔮 Not watched: no forecast (it needs the job's history: subscribe to it)"
NOT_ENOUGH = "🔮 No forecast yet: not enough history"
_SHOWN = frozenset({Verdict.ON_TRACK, Verdict.AT_RISK})


async def status_forecast(
    store: AsyncStore, snapshot: Snapshot, *, now: float, rules: ForecastRules
) -> ForecastSummary | str | None:
    """The forecast line's content for `render_status` (one turn of the store's thread)."""

    def read(db: Store) -> ForecastSummary | str | None:
        key = snapshot.job_key
        record = db.get_job(key)
        if record is None or not db.subscriptions_for_job(key):
            return NOT_WATCHED
        if snapshot.status != RUNNING:
            return None
        state = read_state(record.forecast_json)
        forecast = forecast_now(
            db.history(key),
            snapshot,
            now=now,
            rules=rules,
            previous=state.last.as_previous() if state.last is not None else None,
            started_at=state.started_at,
        )
        summary = ForecastSummary.of(forecast, at=now)
        return summary if summary.verdict in _SHOWN else NOT_ENOUGH

    try:
        return await store.run(read)
    except StoreUnavailable:
        return None
