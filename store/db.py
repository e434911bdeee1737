"""The Store: every read and write of the bot's SQLite database, as small typed methods.

`Store` is composed of one part per concern, each a module of store/: connection.py
(open, pragmas, migrations, the transaction helpers, ping, close), subscriptions.py,
jobs.py (polls, errors, history), outbox.py, cards.py, retention.py (pruning, vacuum,
size), actions.py (actions taken from Slack), alerts.py (on-call alerts) and personal.py
(personal subscriptions, the App Home). It is synchronous and belongs to the thread that
opened it; `AsyncStore` (async_store.py) runs one on a thread of its own for the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from store.actions import ActionStore
from store.alerts import AlertStore
from store.cards import CardStore
from store.connection import BUSY_TIMEOUT_MS, refused_row
from store.digests import DigestStore
from store.jobs import HISTORY_KEEP, PRUNE_EVERY, JobStore, PollRecord
from store.outbox import OutboxStore
from store.personal import PersonalStore
from store.retention import RetentionStore
from store.subscriptions import SubscriptionStore

__all__ = ["HISTORY_KEEP", "PRUNE_EVERY", "PollRecord", "Store", "refused_row"]


class Store(
    SubscriptionStore,
    JobStore,
    OutboxStore,
    CardStore,
    RetentionStore,
    ActionStore,
    AlertStore,
    DigestStore,
    PersonalStore,
):
    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        history_keep: int = HISTORY_KEEP,
    ) -> None:
        super().__init__(path, clock=clock, busy_timeout_ms=busy_timeout_ms)
        self._history_keep = history_keep
