"""How urgent a queued notification is, decided when its outbox row is written. Pure.

Within a channel the sender posts the queued row of the lowest `Priority` first (then the
oldest): an alert (`is_alert`: FAILED, TIMED_OUT, NOT_COMPLETED, unreachable; the headlines
of `ALERT_HEADLINES`: action results; on-call re-pages) goes before everything else, and
queued progress (a new best, an algorithm's status, a RUNNING) goes last. A job's final
notification (`is_final`) carries the progress of that job still queued before it (see
`bot.slack.merge`), so progress of a job that has ended is never posted after its end.
"""

from __future__ import annotations

from enum import IntEnum

from bot.core.events import Event, EventKind, is_alert
from bot.core.models import is_terminal
from bot.core.notification import Notification


class Priority(IntEnum):
    ALERT = 0
    NORMAL = 1  # the card, a subscription change, COMPLETED / CANCELLED, recovered, …
    PROGRESS = 2

    @property
    def label(self) -> str:
        """The `priority` label of `mathfi_outbox_queued`."""
        return self.name.lower()


# Headlines that are alerts whatever their events say: the result of a person's action
# (start, cancel, retrain). On-call re-pages are rows of their own kind, written ALERT by
# `bot.engine.oncall`.
ALERT_HEADLINES = frozenset({EventKind.ACTION_TAKEN.value})


def _progress(event: Event) -> bool:
    if event.kind in (EventKind.NEW_BEST, EventKind.ALGORITHM_STATUS):
        return True
    return (
        event.kind is EventKind.JOB_STATUS
        and event.new_status is not None
        and not is_terminal(event.new_status)
    )


def priority_of(notification: Notification) -> Priority:
    """ALERT when any event is an alert (or the headline is one), PROGRESS when every event
    is progress, else NORMAL."""
    if notification.headline.value in ALERT_HEADLINES or any(
        is_alert(e) for e in notification.events
    ):
        return Priority.ALERT
    if all(_progress(e) for e in notification.events):
        return Priority.PROGRESS
    return Priority.NORMAL


def is_final(notification: Notification) -> bool:
    """The notification tells that the job ended (a terminal status)."""
    return any(
        e.kind is EventKind.JOB_STATUS and e.new_status is not None and is_terminal(e.new_status)
        for e in notification.events
    )
