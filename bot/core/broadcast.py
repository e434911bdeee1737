"""Which thread replies also go to the channel: a subscription's `--broadcast` (issue #14).

Pure. `final` (the default, as before): a reply that tells a final job status is also
sent to the channel; `failures`: only when that status is FAILED, TIMED_OUT or
NOT_COMPLETED; `none`: everything stays in the thread (the card still says how it ended).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from bot.core.events import Event, EventKind
from bot.core.models import ALERT_STATUSES, is_terminal


class BroadcastMode(StrEnum):
    FINAL = "final"
    FAILURES = "failures"
    NONE = "none"


def broadcasts(mode: BroadcastMode, events: Iterable[Event]) -> bool:
    """True when a reply telling `events` goes to the channel too (`reply_broadcast`)."""
    if mode is BroadcastMode.NONE:
        return False
    final = [
        e.new_status
        for e in events
        if e.kind is EventKind.JOB_STATUS and e.new_status is not None and is_terminal(e.new_status)
    ]
    if mode is BroadcastMode.FAILURES:
        return any(status in ALERT_STATUSES for status in final)
    return bool(final)
