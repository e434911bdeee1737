"""Prometheus metrics (prometheus-client), one registry per service instance.

A registry of our own (not the global one) so that several services can live in one test
process; `/metrics` renders it with `generate_latest`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.polls = Counter("mathfi_polls", "Job polls completed", registry=r)
        self.poll_errors = Counter(
            "mathfi_poll_errors", "Job polls that failed, by kind", ["kind"], registry=r
        )
        self.poll_latency = Histogram(
            "mathfi_poll_latency_seconds",
            "Time to fetch and diff one job",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.events = Counter(
            "mathfi_events", "Events found by the diff, by kind", ["kind"], registry=r
        )
        # The poller's children, resolved once: `labels()` costs ~2 us a call (a lock and
        # a check of the label names), a dict lookup ~50 ns; children are never removed.
        self._children: dict[tuple[str, str], Counter] = {}
        self.outbox_backlog = Gauge("mathfi_outbox_backlog", "Outbox rows not yet sent", registry=r)
        self.slack_send_latency = Histogram(
            "mathfi_slack_send_latency_seconds",
            "Slack Web API call latency, by method",
            ["method"],
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        # `method` added by issue 18; sum over it for the old unlabelled total
        self.slack_ratelimited = Counter(
            "mathfi_slack_ratelimited", "Slack 429 answers, by method", ["method"], registry=r
        )
        for method in ("chat.postMessage", "chat.update"):  # shown from the start, at 0
            self.slack_ratelimited.labels(method=method)
        self.outbox_queued = Gauge(
            "mathfi_outbox_queued",
            "Outbox rows not yet sent, by priority (alert, normal, progress)",
            ["priority"],
            registry=r,
        )
        self.oldest_alert_age = Gauge(
            "mathfi_oldest_alert_age_seconds",
            "Seconds the oldest queued alert has waited (0: none waits)",
            registry=r,
        )
        self.slack_errors = Counter(
            "mathfi_slack_errors", "Slack errors, by error code", ["error"], registry=r
        )
        self.messages_sent = Counter(
            "mathfi_messages_sent",
            "Slack messages posted or edited, by kind",
            ["kind"],
            registry=r,
        )
        self.active_subscriptions = Gauge(
            "mathfi_active_subscriptions", "Active subscriptions", registry=r
        )
        self.watched_jobs = Gauge("mathfi_watched_jobs", "Jobs being polled", registry=r)
        self.database_bytes = Gauge(
            "mathfi_database_bytes",
            "Size of the SQLite database (page_count * page_size, free pages included)",
            registry=r,
        )
        self.unacknowledged_alerts = Gauge(
            "mathfi_unacknowledged_alerts",
            "On-call alerts nobody has acknowledged (their subscription still live)",
            registry=r,
        )
        self.commands = Counter(
            "mathfi_commands",
            "Slash commands, by name and outcome",
            ["command", "outcome"],
            registry=r,
        )
        self.actions = Counter(
            "mathfi_actions",
            "Starts, cancels and retrains asked from Slack, by action and outcome",
            ["action", "outcome"],
            registry=r,
        )

    def event(self, kind: str) -> Counter:
        """`events.labels(kind=kind)`, resolved once per kind."""
        return self._child(self.events, "events", kind)

    def poll_error(self, kind: str) -> Counter:
        """`poll_errors.labels(kind=kind)`, resolved once per kind."""
        return self._child(self.poll_errors, "poll_errors", kind)

    def _child(self, parent: Counter, name: str, kind: str) -> Counter:
        child = self._children.get((name, kind))
        if child is None:  # two threads may both get here: labels() returns one child
            child = self._children[(name, kind)] = parent.labels(kind=kind)
        return child

    def render(self) -> bytes:
        return generate_latest(self.registry)
