"""Everything that touches SQLite. Imports nothing from `bot`.

`Store` (synchronous, used from the thread that opened it) and `AsyncStore` (the same
methods, run on the store's own thread and awaited from the event loop).
"""

from store.async_store import AsyncStore
from store.db import Store
from store.personal import HomeItem, HomeView
from store.records import (
    AckOutcome,
    ActionRecord,
    Alert,
    AuditRow,
    Card,
    DatabaseSize,
    DigestJob,
    DigestSetting,
    HistoryPoint,
    JobRecord,
    NewAlert,
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
    "AckOutcome",
    "ActionRecord",
    "Alert",
    "AsyncStore",
    "AuditRow",
    "Card",
    "DatabaseSize",
    "DigestJob",
    "DigestSetting",
    "HistoryPoint",
    "HomeItem",
    "HomeView",
    "JobRecord",
    "NewAlert",
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
