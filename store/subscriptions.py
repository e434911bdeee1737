"""Subscriptions: which channel watches which job, with its options, mute and limits.

(About 360 lines: each write, its limits, its card and its audit row share one transaction,
so they stay together.)
"""

from __future__ import annotations

import sqlite3

from store.cards import rewatch_card, unwatch_cards
from store.connection import StoreConnection
from store.fold import folded_row, unfold_job
from store.outbox import insert_outbox
from store.personal import set_owner, subscriptions_changed
from store.records import (
    AuditRow,
    NewOutboxRow,
    Subscription,
    SubscriptionChange,
    SubscriptionLimitReached,
    SubscriptionView,
)

_SUB = Subscription.COLUMNS
# What a new subscription gets for an option not given (the schema's defaults too).
DEFAULT_MIN_IMPROVEMENT = 0.005
DEFAULT_EVENTS = "all"
DEFAULT_BROADCAST = "final"

_UPSERT_BASELINE = (
    "INSERT INTO jobs (job_key, snapshot_json, snapshot_hash, status, "
    "best_performance, best_algorithm, next_poll_at, terminal, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (job_key) DO UPDATE SET snapshot_json = excluded.snapshot_json, "
    "snapshot_hash = excluded.snapshot_hash, status = excluded.status, "
    "best_performance = excluded.best_performance, "
    "best_algorithm = excluded.best_algorithm, next_poll_at = excluded.next_poll_at, "
    "terminal = excluded.terminal, updated_at = excluded.updated_at, "
    "consecutive_errors = 0, unreachable = 0, version = version + 1 WHERE ?"
)
_UPSERT_SUBSCRIPTION = (
    "INSERT INTO subscriptions (team_id, channel_id, job_key, created_by, created_at, "
    "min_improvement, mention, events, broadcast, active, last_best) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?) "
    "ON CONFLICT (channel_id, job_key) DO UPDATE SET team_id = excluded.team_id, "
    "min_improvement = excluded.min_improvement, mention = excluded.mention, "
    "events = excluded.events, broadcast = excluded.broadcast, active = 1, "
    "disabled_reason = NULL, "
    "created_by = CASE WHEN ? THEN excluded.created_by ELSE created_by END, "
    "created_at = CASE WHEN ? THEN excluded.created_at ELSE created_at END, "
    "muted_until = CASE WHEN ? THEN NULL ELSE muted_until END, "
    "last_best = CASE WHEN ? THEN excluded.last_best ELSE last_best END"
)


def _get(conn: sqlite3.Connection, channel_id: str, job_key: str) -> Subscription | None:
    row = conn.execute(
        f"SELECT {_SUB} FROM subscriptions WHERE channel_id = ? AND job_key = ?",
        (channel_id, job_key),
    ).fetchone()
    return None if row is None else Subscription.from_row(row)


def _audit(conn: sqlite3.Connection, audit: AuditRow | None, change: SubscriptionChange) -> None:
    """The change's visible line, queued in the change's own transaction."""
    row = audit(change) if audit is not None else None
    if row is not None:
        insert_outbox(conn, [row], change.at)


def _check_limits(
    conn: sqlite3.Connection, channel_id: str, channel_limit: int | None, global_limit: int | None
) -> None:
    """Raise SubscriptionLimitReached if one more active subscription would pass a limit.
    Runs inside the subscribe transaction (BEGIN IMMEDIATE holds the write lock), so no
    other writer can add one between the count and the insert."""
    if channel_limit is not None:
        (count,) = conn.execute(
            "SELECT count(*) FROM subscriptions WHERE channel_id = ? AND active = 1",
            (channel_id,),
        ).fetchone()
        if count >= channel_limit:
            raise SubscriptionLimitReached(scope="channel", limit=channel_limit)
    if global_limit is not None:
        (count,) = conn.execute("SELECT count(*) FROM subscriptions WHERE active = 1").fetchone()
        if count >= global_limit:
            raise SubscriptionLimitReached(scope="global", limit=global_limit)


class SubscriptionStore(StoreConnection):
    def subscribe(
        self,
        *,
        team_id: str | None,
        channel_id: str,
        job_key: str,
        user_id: str | None,
        min_improvement: float | None = None,
        mention: str | None = None,
        events: str | None = None,
        broadcast: str | None = None,
        snapshot_json: str,
        snapshot_hash: str,
        status: str,
        best_performance: float | None,
        best_algorithm: str | None,
        terminal: bool,
        next_poll_at: float,
        watch_row: NewOutboxRow,
        channel_limit: int | None = None,
        global_limit: int | None = None,
        audit: AuditRow | None = None,
        owner_user_id: str | None = None,
        now: float | None = None,
    ) -> tuple[Subscription, bool]:
        """Insert or re-activate the (channel, job) subscription, with the job baseline.

        An option left None keeps what an active subscription (disabled or not) has
        stored; a new or unsubscribed one gets the default (0.005, no mention, "all",
        broadcast "final").
        `created` is True when the subscription is new, was unsubscribed, or was disabled;
        only then is `watch_row` enqueued, the mute lifted and `last_best` set to
        `best_performance`. When the subscription is not active yet, the channel's and the
        store's active subscriptions are counted in the same transaction as the insert: at
        `channel_limit` or `global_limit`, SubscriptionLimitReached and nothing is written.
        `audit` is given the change (before, after) and its row is queued in the same
        transaction; a card the channel had stopped watching is live again. `owner_user_id`:
        the subscription is that person's own (its channel is their DM with the bot).
        """
        at = self._now(now)
        with self._write() as conn:
            unfold_job(conn, job_key)  # a finished job's ended watchers (store/fold.py)
            previous = _get(conn, channel_id, job_key)
            active = previous is not None and previous.active
            if not active:
                _check_limits(conn, channel_id, channel_limit, global_limit)
            kept = (
                (previous.min_improvement, previous.mention, previous.events, previous.broadcast)
                if previous is not None and active
                else (DEFAULT_MIN_IMPROVEMENT, None, DEFAULT_EVENTS, DEFAULT_BROADCAST)
            )
            given_options = (min_improvement, mention, events, broadcast)
            options = [
                given if given is not None else stored
                for given, stored in zip(given_options, kept, strict=True)
            ]
            watched_elsewhere = conn.execute(
                "SELECT 1 FROM subscriptions WHERE job_key = ? "
                "AND active = 1 AND disabled_reason IS NULL LIMIT 1",
                (job_key,),
            ).fetchone()
            # Nobody watches the job, so its stored snapshot may be stale: the fresh
            # one becomes the baseline (else the next poll would replay old changes).
            conn.execute(
                _UPSERT_BASELINE,
                (
                    job_key,
                    snapshot_json,
                    snapshot_hash,
                    status,
                    best_performance,
                    best_algorithm,
                    next_poll_at,
                    int(terminal),
                    at,
                    watched_elsewhere is None,
                ),
            )
            # New, unsubscribed, or disabled by Slack (the bot was since invited back):
            # each starts afresh with a card.
            created = not active or (previous is not None and previous.disabled_reason is not None)
            conn.execute(
                _UPSERT_SUBSCRIPTION,
                (team_id, channel_id, job_key, user_id, at, *options, best_performance)
                + (created,) * 4,
            )
            if created:
                insert_outbox(conn, [watch_row], at)
                rewatch_card(conn, channel_id=channel_id, job_key=job_key)
            if owner_user_id is not None:  # a personal subscription (store/personal.py)
                set_owner(conn, channel_id=channel_id, job_key=job_key, owner_user_id=owner_user_id)
            subscriptions_changed(conn, channel_id=channel_id, job_keys=[job_key])
            after = _get(conn, channel_id, job_key)
            assert after is not None
            _audit(
                conn,
                audit,
                SubscriptionChange(
                    channel_id, job_key, user_id, previous if active else None, after, 1, at
                ),
            )
        return after, created

    def unsubscribe(
        self,
        *,
        channel_id: str,
        job_key: str,
        user_id: str | None = None,
        audit: AuditRow | None = None,
        now: float | None = None,
    ) -> bool:
        """Stop the subscription and drop what was queued for it; True if it was active.
        Its card is due for one last edit (no longer watched), and `audit`'s row is queued,
        all in one transaction."""
        at = self._now(now)
        with self._write() as conn:
            previous = _get(conn, channel_id, job_key)
            stopped = conn.execute(
                "UPDATE subscriptions SET active = 0, ended_at = ? "
                "WHERE channel_id = ? AND job_key = ? AND active = 1",
                (at, channel_id, job_key),
            ).rowcount
            conn.execute(
                "UPDATE outbox SET state = 'dead', last_error = 'unsubscribed', updated_at = ? "
                "WHERE channel_id = ? AND job_key = ? AND state = 'pending'",
                (at, channel_id, job_key),
            )
            if stopped:
                unwatch_cards(conn, channel_id=channel_id, job_keys=[job_key], by=user_id, at=at)
                subscriptions_changed(conn, channel_id=channel_id, job_keys=[job_key])
                change = SubscriptionChange(
                    channel_id, job_key, user_id, previous, _get(conn, channel_id, job_key), 1, at
                )
                _audit(conn, audit, change)
            return stopped > 0

    def unsubscribe_all(
        self,
        *,
        channel_id: str,
        user_id: str | None = None,
        audit: AuditRow | None = None,
        now: float | None = None,
    ) -> int:
        """Stop every subscription of the channel (as `unsubscribe` does each); how many."""
        at = self._now(now)
        with self._write() as conn:
            keys = [
                key
                for (key,) in conn.execute(
                    "SELECT job_key FROM subscriptions WHERE channel_id = ? AND active = 1",
                    (channel_id,),
                ).fetchall()
            ]
            conn.execute(
                "UPDATE outbox SET state = 'dead', last_error = 'unsubscribed', updated_at = ? "
                "WHERE channel_id = ? AND state = 'pending' AND job_key IN (SELECT job_key "
                "FROM subscriptions WHERE channel_id = ? AND active = 1)",
                (at, channel_id, channel_id),
            )
            count = conn.execute(
                "UPDATE subscriptions SET active = 0, ended_at = ? "
                "WHERE channel_id = ? AND active = 1",
                (at, channel_id),
            ).rowcount
            if count:
                unwatch_cards(conn, channel_id=channel_id, job_keys=keys, by=user_id, at=at)
                subscriptions_changed(conn, channel_id=channel_id, job_keys=keys)
                change = SubscriptionChange(channel_id, None, user_id, None, None, count, at)
                _audit(conn, audit, change)
            return int(count)

    def list_subscriptions(self, *, channel_id: str) -> list[SubscriptionView]:
        """The channel's active subscriptions, disabled ones included, oldest first."""
        columns = ", ".join(f"s.{name.strip()}" for name in _SUB.split(","))
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {columns}, j.status, j.best_performance, j.best_algorithm, "
                "j.unreachable FROM subscriptions s LEFT JOIN jobs j ON j.job_key = s.job_key "
                "WHERE s.channel_id = ? AND s.active = 1 ORDER BY s.created_at, s.id",
                (channel_id,),
            ).fetchall()
        width = len(_SUB.split(","))
        return [
            SubscriptionView(
                subscription=Subscription.from_row(row[:width]),
                status=row[width],
                best_performance=row[width + 1],
                best_algorithm=row[width + 2],
                unreachable=bool(row[width + 3]),
            )
            for row in rows
        ]

    def get_subscription(self, *, channel_id: str, job_key: str) -> Subscription | None:
        """Active or ended (an ended one may be folded into its job's archive)."""
        with self._read() as conn:
            found = _get(conn, channel_id, job_key)
            if found is None:
                row = folded_row(
                    conn, "subscriptions", channel_id=channel_id, job_key=job_key, columns=_SUB
                )
                found = None if row is None else Subscription.from_row(row)
        return found

    def count_active(self, *, channel_id: str) -> int:
        """Active subscriptions of the channel (disabled ones count: `list` shows them)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT count(*) FROM subscriptions WHERE channel_id = ? AND active = 1",
                (channel_id,),
            ).fetchone()
        return int(row[0])

    def count_all_active(self) -> int:
        with self._read() as conn:
            row = conn.execute("SELECT count(*) FROM subscriptions WHERE active = 1").fetchone()
        return int(row[0])

    def set_muted_until(
        self,
        *,
        channel_id: str,
        job_key: str,
        until: float | None,
        user_id: str | None = None,
        audit: AuditRow | None = None,
        now: float | None = None,
    ) -> bool:
        """Mute (or unmute with None) an active subscription; False if there is none.
        `audit`'s row is queued in the same transaction."""
        at = self._now(now)
        with self._write() as conn:
            previous = _get(conn, channel_id, job_key)
            changed = conn.execute(
                "UPDATE subscriptions SET muted_until = ? "
                "WHERE channel_id = ? AND job_key = ? AND active = 1",
                (until, channel_id, job_key),
            ).rowcount
            if changed:
                subscriptions_changed(conn, channel_id=channel_id, job_keys=[job_key])
                change = SubscriptionChange(
                    channel_id, job_key, user_id, previous, _get(conn, channel_id, job_key), 1, at
                )
                _audit(conn, audit, change)
            return changed > 0

    def disable_channel(self, *, channel_id: str, reason: str) -> int:
        """Stop delivering to every active subscription of the channel; they stay listed."""
        return self._update_row(
            "UPDATE subscriptions SET disabled_reason = ? "
            "WHERE channel_id = ? AND active = 1 AND disabled_reason IS NULL",
            (reason, channel_id),
        )

    def subscriptions_for_job(self, job_key: str) -> list[Subscription]:
        """Subscriptions to deliver to: active and not disabled, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_SUB} FROM subscriptions WHERE job_key = ? AND active = 1 "
                "AND disabled_reason IS NULL ORDER BY id",
                (job_key,),
            ).fetchall()
        return [Subscription.from_row(row) for row in rows]
