"""Everything that touches SQLite. Imports nothing from `bot`."""

from store.db import Store
from store.records import (
    Card,
    HistoryPoint,
    JobRecord,
    NewOutboxRow,
    OutboxRow,
    StoreUnavailable,
    Subscription,
    SubscriptionView,
)

__all__ = [
    "Card",
    "HistoryPoint",
    "JobRecord",
    "NewOutboxRow",
    "OutboxRow",
    "Store",
    "StoreUnavailable",
    "Subscription",
    "SubscriptionView",
]
