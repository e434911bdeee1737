"""Personal subscriptions and the App Home (issue #15, migration 10).

A personal subscription is a subscription like any other whose channel is its owner's DM
with the bot, with `owner_user_id` set: the fan-out, the outbox and the sender treat the DM
as one more channel. This module adds what only people need: whose a subscription is, how
many people follow a job (the channel card says so), what a person's Home tab lists, and
when that view is stale.

`home_views` has a row for each person who opened the Home tab. A change to one of the
jobs (a changed poll, in the poll's transaction: `touch_homes_of_job`) or to one of their
subscriptions (`subscriptions_changed`, in the change's transaction) marks it dirty; the
home publisher (bot/slack/home.py) re-publishes dirty views at most once a minute each.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from store.compact import restore
from store.connection import StoreConnection
from store.fold import folded_row
from store.records import Subscription

_SUB = ", ".join(f"s.{name.strip()}" for name in Subscription.COLUMNS.split(","))
_WIDTH = len(Subscription.COLUMNS.split(","))

# Channel cards of a job (not its DM cards): redrawn when its follower count changes.
_CHANNEL_CARDS_DIRTY = (
    "UPDATE cards SET dirty = 1, card_version = card_version + 1 WHERE job_key = ? "
    "AND unwatched_at IS NULL AND channel_id IN (SELECT channel_id FROM subscriptions "
    "WHERE job_key = ? AND active = 1 AND owner_user_id IS NULL)"
)
_HOMES_DIRTY = (
    "UPDATE home_views SET dirty = 1, version = version + 1 WHERE user_id IN "
    "(SELECT created_by FROM subscriptions WHERE {where} AND created_by IS NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class HomeItem:
    """One line of a person's Home tab: a subscription, whether it is personal, and what
    the store knows of its job (`snapshot_json` / `forecast_json` as on the job row)."""

    subscription: Subscription
    personal: bool
    status: str | None
    best_performance: float | None
    best_algorithm: str | None
    snapshot_json: str | None
    forecast_json: str | None


@dataclass(frozen=True, slots=True)
class HomeView:
    """A person's Home tab as the store tracks it: stale (`dirty`) since `version`."""

    user_id: str
    team_id: str | None
    dirty: bool
    version: int
    opened_at: float
    published_at: float | None

    COLUMNS: ClassVar[str] = "user_id, team_id, dirty, version, opened_at, published_at"

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> HomeView:
        user_id, team_id, dirty, version, opened_at, published_at = row
        return cls(user_id, team_id, bool(dirty), version, opened_at, published_at)


def touch_homes_of_job(conn: sqlite3.Connection, job_key: str) -> None:
    """Inside a poll's transaction: the Home tab of everyone with a subscription to the job
    (personal, or a channel's they created) is stale."""
    conn.execute(
        _HOMES_DIRTY.format(where="job_key = ? AND active = 1"),
        (job_key,),
    )


def subscriptions_changed(
    conn: sqlite3.Connection, *, channel_id: str, job_keys: Sequence[str]
) -> None:
    """Inside a subscription change's transaction: the creator's Home tab is stale, and
    when the subscription is personal the job's channel cards (their follower count) are."""
    for job_key in job_keys:
        conn.execute(
            _HOMES_DIRTY.format(where="channel_id = ? AND job_key = ?"), (channel_id, job_key)
        )
        personal = conn.execute(
            "SELECT 1 FROM subscriptions WHERE channel_id = ? AND job_key = ? "
            "AND owner_user_id IS NOT NULL",
            (channel_id, job_key),
        ).fetchone()
        if personal is not None:
            conn.execute(_CHANNEL_CARDS_DIRTY, (job_key, job_key))


def set_owner(
    conn: sqlite3.Connection, *, channel_id: str, job_key: str, owner_user_id: str
) -> None:
    """Inside the subscribe transaction: the subscription is `owner_user_id`'s own."""
    conn.execute(
        "UPDATE subscriptions SET owner_user_id = ? WHERE channel_id = ? AND job_key = ?",
        (owner_user_id, channel_id, job_key),
    )


def _home_item(conn: sqlite3.Connection, row: tuple[Any, ...]) -> HomeItem:
    sub, snapshot_json = Subscription.from_row(row[:_WIDTH]), row[_WIDTH + 4]
    return HomeItem(
        subscription=sub,
        personal=row[_WIDTH] is not None,
        status=row[_WIDTH + 1],
        best_performance=row[_WIDTH + 2],
        best_algorithm=row[_WIDTH + 3],
        # a finished job's snapshot may be in its archive (store/compact.py)
        snapshot_json=None if snapshot_json is None else restore(conn, sub.job_key, snapshot_json),
        forecast_json=row[_WIDTH + 5],
    )


class PersonalStore(StoreConnection):
    def subscription_owner(self, *, channel_id: str, job_key: str) -> str | None:
        """Whose personal subscription this is (None: a channel's, or none)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT owner_user_id FROM subscriptions WHERE channel_id = ? AND job_key = ?",
                (channel_id, job_key),
            ).fetchone()
            if row is None:  # an ended one may be folded (store/fold.py)
                row = folded_row(
                    conn,
                    "subscriptions",
                    channel_id=channel_id,
                    job_key=job_key,
                    columns="owner_user_id",
                )
        return None if row is None else row[0]

    def subscription_by_id(self, subscription_id: int) -> tuple[Subscription, str | None] | None:
        """A subscription and its owner (None: a channel's), by id."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_SUB}, s.owner_user_id FROM subscriptions s WHERE s.id = ?",
                (subscription_id,),
            ).fetchone()
        return None if row is None else (Subscription.from_row(row[:_WIDTH]), row[_WIDTH])

    def followers(self, job_key: str) -> int:
        """People who follow the job personally (active, delivering subscriptions)."""
        with self._read() as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM subscriptions WHERE job_key = ? AND active = 1 "
                "AND disabled_reason IS NULL AND owner_user_id IS NOT NULL",
                (job_key,),
            ).fetchone()
        return int(count)

    def home_items(self, user_id: str) -> list[HomeItem]:
        """The person's active personal subscriptions and the active channel subscriptions
        they created, newest first, with their jobs."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_SUB}, s.owner_user_id, j.status, j.best_performance, "
                "j.best_algorithm, j.snapshot_json, j.forecast_json FROM subscriptions s "
                "LEFT JOIN jobs j ON j.job_key = s.job_key WHERE s.active = 1 AND "
                "(s.owner_user_id = ? OR (s.owner_user_id IS NULL AND s.created_by = ?)) "
                "ORDER BY s.created_at DESC, s.id DESC",
                (user_id, user_id),
            ).fetchall()
            return [_home_item(conn, row) for row in rows]

    def home_opened(self, *, user_id: str, team_id: str | None, now: float | None = None) -> None:
        """The person opened the Home tab: from now on their view is kept current."""
        at = self._now(now)
        self._update_row(
            "INSERT INTO home_views (user_id, team_id, dirty, version, opened_at) "
            "VALUES (?, ?, 1, 1, ?) ON CONFLICT (user_id) DO UPDATE SET "
            "team_id = coalesce(excluded.team_id, team_id), opened_at = excluded.opened_at",
            (user_id, team_id, at),
        )

    def get_home_view(self, user_id: str) -> HomeView | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {HomeView.COLUMNS} FROM home_views WHERE user_id = ?", (user_id,)
            ).fetchone()
        return None if row is None else HomeView.from_row(row)

    def homes_due(self, *, now: float, every: float, limit: int = 50) -> list[HomeView]:
        """Stale views not published for `every` seconds, the longest-waiting first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {HomeView.COLUMNS} FROM home_views WHERE dirty = 1 AND "
                "(published_at IS NULL OR published_at <= ?) "
                "ORDER BY coalesce(published_at, 0), user_id LIMIT ?",
                (now - every, limit),
            ).fetchall()
        return [HomeView.from_row(row) for row in rows]

    def home_published(
        self, *, user_id: str, version: int, clean: bool, now: float | None = None
    ) -> None:
        """A publish of the view read at `version` was attempted now; with `clean` (it
        succeeded) the view is clean unless something changed since."""
        at = self._now(now)
        self._update_row(
            "UPDATE home_views SET published_at = ?, "
            "dirty = CASE WHEN ? AND version = ? THEN 0 ELSE dirty END WHERE user_id = ?",
            (at, clean, version, user_id),
        )
