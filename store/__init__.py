"""Everything that touches SQLite. Imports nothing from `bot`.

`Store` (synchronous, used from the thread that opened it) and `AsyncStore` (the same
methods, run on the store's own thread and awaited from the event loop).
"""

from store.async_store import AsyncStore
from store.db import Store
from store.personal import HomeItem, HomeView
from store.records import (
    ActionRecord,
    AuditRow,
    Card,
    DatabaseSize,
    HistoryPoint,
    JobRecord,
    NewOutboxRow,
    OutboxRow,
    Pruned,
    StoreError,
    StoreUnavailable,
    Subscription,
    SubscriptionChange,
    SubscriptionLimitReached,
    SubscriptionView,
)

__all__ = [
    "ActionRecord",
    "AsyncStore",
    "AuditRow",
    "Card",
    "DatabaseSize",
    "HistoryPoint",
    "HomeItem",
    "HomeView",
    "JobRecord",
    "NewOutboxRow",
    "OutboxRow",
    "Pruned",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Subscription",
    "SubscriptionChange",
    "SubscriptionLimitReached",
    "SubscriptionView",
]
