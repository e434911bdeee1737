"""Everything that touches SQLite. Imports nothing from `bot`.

`Store` is synchronous and used from the thread that opened it.
"""

from store.db import Store
from store.records import (
    Card,
    HistoryPoint,
    JobRecord,
    NewOutboxRow,
    OutboxRow,
    StoreError,
    StoreUnavailable,
    Subscription,
    SubscriptionLimitReached,
    SubscriptionView,
)

__all__ = [
    "Card",
    "HistoryPoint",
    "JobRecord",
    "NewOutboxRow",
    "OutboxRow",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Subscription",
    "SubscriptionLimitReached",
    "SubscriptionView",
]
