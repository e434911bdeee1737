"""On-call alerts (issue #17): a bad ending told to a channel with a `--mention` is an alert
until a person acknowledges it; until then it is paged again (`due_alerts`, `page_alert`).

An alert is opened in the poll's own transaction, with the outbox row that carries it
(`insert_alerts`). It is *open* while nobody has acknowledged it and the subscription that
raised it still delivers: unsubscribed, disabled by Slack, or subscribed afresh since (a
new `created_at`) closes it, and nobody is paged for it any more.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from store.connection import StoreConnection
from store.outbox import insert_outbox
from store.records import AckOutcome, Alert, NewAlert, NewOutboxRow

_SELECT = f"SELECT {Alert.COLUMNS} FROM alerts a LEFT JOIN outbox o ON o.id = a.outbox_id"
# The subscription that raised the alert still delivers, and is the one that raised it.
_LIVE = (
    "EXISTS (SELECT 1 FROM subscriptions s WHERE s.id = a.subscription_id AND s.active = 1 "
    "AND s.disabled_reason IS NULL AND s.created_at <= a.raised_at)"
)
_OPEN = f"a.acked_at IS NULL AND {_LIVE}"
_INSERT = (
    "INSERT OR IGNORE INTO alerts (outbox_id, job_key, channel_id, subscription_id, mention, "
    "status, raised_at, pages) SELECT id, ?, ?, ?, ?, ?, ?, 0 FROM outbox WHERE dedupe_key = ?"
)


def insert_alerts(conn: sqlite3.Connection, alerts: Sequence[NewAlert]) -> None:
    """Open alerts inside the caller's transaction, after their outbox rows are inserted;
    an outbox row that already has its alert (a poll written twice) is skipped."""
    conn.executemany(
        _INSERT,
        [
            (
                a.job_key,
                a.channel_id,
                a.subscription_id,
                a.mention,
                a.status,
                a.raised_at,
                a.outbox_key,
            )
            for a in alerts
        ],
    )


class AlertStore(StoreConnection):
    def open_alerts(self, *, channel_id: str | None = None) -> list[Alert]:
        """Open alerts (unacknowledged, subscription live), oldest first; of one channel."""
        where, params = _OPEN, tuple[str, ...]()
        if channel_id is not None:
            where, params = f"a.channel_id = ? AND {where}", (channel_id,)
        with self._read() as conn:
            rows = conn.execute(f"{_SELECT} WHERE {where} ORDER BY a.id", params).fetchall()
        return [Alert.from_row(row) for row in rows]

    def count_open_alerts(self) -> int:
        with self._read() as conn:
            (count,) = conn.execute(f"SELECT count(*) FROM alerts a WHERE {_OPEN}").fetchone()
        return int(count)

    def due_alerts(
        self, *, now: float, repage: float, max_pages: int, limit: int = 100
    ) -> list[Alert]:
        """Open alerts whose next page is due: posted (their outbox row is sent), fewer
        than `max_pages` pages, and `next_page_at` (or, before the first page, `repage`
        seconds after the alert was posted) reached."""
        with self._read() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE {_OPEN} AND o.state = 'sent' AND a.pages < ? "
                "AND coalesce(a.next_page_at, o.updated_at + ?) <= ? ORDER BY a.id LIMIT ?",
                (max_pages, repage, now, limit),
            ).fetchall()
        return [Alert.from_row(row) for row in rows]

    def page_alert(
        self,
        alert_id: int,
        *,
        pages: int,
        next_page_at: float,
        row: NewOutboxRow,
        now: float | None = None,
    ) -> bool:
        """Queue one re-page (`row`) and advance the alert to `pages + 1`, in ONE
        transaction; only while the alert is open and still has `pages` pages (what the
        caller read), so two callers never queue the same page. True if queued."""
        at = self._now(now)
        with self._write() as conn:
            moved = conn.execute(
                f"UPDATE alerts AS a SET pages = pages + 1, next_page_at = ? "
                f"WHERE a.id = ? AND a.pages = ? AND {_OPEN}",
                (next_page_at, alert_id, pages),
            ).rowcount
            if moved:
                insert_outbox(conn, [row], at)
            return moved > 0

    def acknowledge_alert(
        self,
        *,
        outbox_id: int,
        channel_id: str,
        user_id: str,
        rows: Callable[[Alert], Sequence[NewOutboxRow]],
        now: float | None = None,
    ) -> tuple[AckOutcome, Alert | None]:
        """`user_id` acknowledges the alert: in ONE transaction it is marked (no more pages)
        and `rows(alert)` (the acknowledged alert) are queued. Nothing is written when it
        was acknowledged already, its subscription is closed, or the channel has no such alert."""
        at = self._now(now)
        with self._write() as conn:
            found = conn.execute(
                f"{_SELECT} WHERE a.outbox_id = ? AND a.channel_id = ?", (outbox_id, channel_id)
            ).fetchone()
            if found is None:
                return "missing", None
            alert = Alert.from_row(found)
            if alert.acked_at is not None:
                return "already", alert
            changed = conn.execute(
                f"UPDATE alerts AS a SET acked_by = ?, acked_at = ?, next_page_at = NULL "
                f"WHERE a.id = ? AND {_OPEN}",
                (user_id, at, alert.id),
            ).rowcount
            if not changed:
                return "ended", alert
            row = conn.execute(f"{_SELECT} WHERE a.id = ?", (alert.id,)).fetchone()
            acked = Alert.from_row(row)
            insert_outbox(conn, rows(acked), at)
            return "acked", acked
