"""The outbox: notifications waiting for Slack, one row each, delivered in channel order."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from store.connection import StoreConnection
from store.migrations import OUTBOX_STATES
from store.records import NewOutboxRow, OutboxRow

_OUTBOX = OutboxRow.COLUMNS
_INSERT_OUTBOX = (
    "INSERT OR IGNORE INTO outbox (dedupe_key, channel_id, job_key, kind, payload, state, "
    "attempts, next_attempt_at, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)"
)


def insert_outbox(conn: sqlite3.Connection, rows: Sequence[NewOutboxRow], now: float) -> int:
    """Add rows inside the caller's transaction; a dedupe_key already there is skipped."""
    params = [
        (r.dedupe_key, r.channel_id, r.job_key, r.kind, r.payload, now, now, now) for r in rows
    ]
    return conn.executemany(_INSERT_OUTBOX, params).rowcount if params else 0


class OutboxStore(StoreConnection):
    def enqueue(self, rows: Sequence[NewOutboxRow], *, now: float | None = None) -> int:
        """Add rows to the outbox; a dedupe_key already there is skipped. Returns inserted."""
        at = self._now(now)
        with self._write() as conn:
            return insert_outbox(conn, rows, at)

    def due_outbox(self, *, now: float | None = None, limit: int = 100) -> list[OutboxRow]:
        """Each channel's oldest unsent row, when it is pending and due; by id.

        A channel whose head row waits on a retry (or is being sent) yields nothing, so
        per-channel order holds.
        """
        columns = ", ".join(f"o.{name.strip()}" for name in _OUTBOX.split(","))
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {columns} FROM outbox o JOIN (SELECT min(id) AS id FROM outbox "
                "WHERE state IN ('pending', 'sending') GROUP BY channel_id) head "
                "ON head.id = o.id WHERE o.state = 'pending' AND o.next_attempt_at <= ? "
                "ORDER BY o.id LIMIT ?",
                (self._now(now), limit),
            ).fetchall()
        return [OutboxRow.from_row(row) for row in rows]

    def mark_sending(self, row_id: int, *, now: float | None = None) -> None:
        """An attempt begins: its Slack call starts now (`call_started_at`)."""
        at = self._now(now)
        self._update_row(
            "UPDATE outbox SET state = 'sending', attempts = attempts + 1, "
            "call_started_at = ?, updated_at = ? WHERE id = ?",
            (at, at, row_id),
        )

    def mark_call_started(self, row_id: int, *, now: float | None = None) -> None:
        """A further Slack call of the same attempt starts now (the reply after its card)."""
        at = self._now(now)
        self._update_row(
            "UPDATE outbox SET call_started_at = ?, updated_at = ? WHERE id = ?",
            (at, at, row_id),
        )

    def mark_sent(
        self,
        row_id: int,
        *,
        ts: str,
        verify_at: float | None = None,
        now: float | None = None,
    ) -> None:
        """Slack holds the row as `ts`; `verify_at`: when to look for a late copy of it."""
        self._update_row(
            "UPDATE outbox SET state = 'sent', slack_ts = ?, verify_at = ?, updated_at = ? "
            "WHERE id = ?",
            (ts, verify_at, self._now(now), row_id),
        )

    def rows_to_verify(self, *, now: float | None = None, limit: int = 100) -> list[OutboxRow]:
        """Sent rows whose look for a late copy is due; by id."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_OUTBOX} FROM outbox WHERE verify_at IS NOT NULL AND verify_at <= ? "
                "AND state = 'sent' ORDER BY id LIMIT ?",
                (self._now(now), limit),
            ).fetchall()
        return [OutboxRow.from_row(row) for row in rows]

    def set_verify_at(self, row_id: int, *, at: float | None) -> None:
        """The next look for a late copy of a sent row (None: no more)."""
        self._update_row("UPDATE outbox SET verify_at = ? WHERE id = ?", (at, row_id))

    def mark_retry(
        self, row_id: int, *, next_attempt_at: float, error: str, now: float | None = None
    ) -> None:
        self._update_row(
            "UPDATE outbox SET state = 'pending', next_attempt_at = ?, last_error = ?, "
            "updated_at = ? WHERE id = ?",
            (next_attempt_at, error, self._now(now), row_id),
        )

    def mark_dead(self, row_id: int, *, error: str, now: float | None = None) -> None:
        self._update_row(
            "UPDATE outbox SET state = 'dead', last_error = ?, updated_at = ? WHERE id = ?",
            (error, self._now(now), row_id),
        )

    def dead_channel_rows(self, *, channel_id: str, error: str, now: float | None = None) -> int:
        """Give up on every unsent row of a channel (permanent Slack error); returns count."""
        return self._update_row(
            "UPDATE outbox SET state = 'dead', last_error = ?, updated_at = ? "
            "WHERE channel_id = ? AND state IN ('pending', 'sending')",
            (error, self._now(now), channel_id),
        )

    def rows_in_state(self, state: str) -> list[OutboxRow]:
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_OUTBOX} FROM outbox WHERE state = ? ORDER BY id", (state,)
            ).fetchall()
        return [OutboxRow.from_row(row) for row in rows]

    def outbox_counts(self) -> dict[str, int]:
        """Rows per state; every state is present, zero included."""
        with self._read() as conn:
            rows = conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall()
        return {state: 0 for state in OUTBOX_STATES} | {state: n for state, n in rows}

    def get_outbox_row(self, row_id: int) -> OutboxRow | None:
        with self._read() as conn:
            row = conn.execute(f"SELECT {_OUTBOX} FROM outbox WHERE id = ?", (row_id,)).fetchone()
        return None if row is None else OutboxRow.from_row(row)
