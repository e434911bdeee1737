"""The poller's labelled counters, resolved once: the same children `labels()` gives."""

from __future__ import annotations

from bot.metrics import Metrics


def test_event_and_poll_error_count_under_their_own_family_and_label() -> None:
    metrics = Metrics()
    metrics.event("stalled").inc()
    metrics.event("stalled").inc()
    metrics.events.labels(kind="stalled").inc()
    metrics.poll_error("stalled").inc()
    sample = metrics.registry.get_sample_value
    assert sample("mathfi_events_total", {"kind": "stalled"}) == 3
    assert sample("mathfi_poll_errors_total", {"kind": "stalled"}) == 1
    assert sample("mathfi_events_total", {"kind": "new_best"}) is None
    assert metrics.event("stalled") is metrics.events.labels(kind="stalled")
    assert metrics.poll_error("database") is metrics.poll_errors.labels(kind="database")
