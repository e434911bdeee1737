"""The outbox: notifications waiting for Slack, one row each, delivered in channel order.

A channel's queued rows go by `priority` (an alert first, progress last), then oldest
first. A job's final notification may carry that job's queued progress (`claim_carried`):
the carried rows are marked sent in the statement that marks their carrier sent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from store.connection import StoreConnection
from store.migrations import OUTBOX_STATES
from store.records import NewOutboxRow, OutboxRow

_OUTBOX = OutboxRow.COLUMNS
_INSERT_OUTBOX = (
    "INSERT OR IGNORE INTO outbox (dedupe_key, channel_id, job_key, kind, payload, priority, "
    "state, attempts, next_attempt_at, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)"
)
ALERT = 0  # bot.core.priority.Priority.ALERT
PROGRESS = 2  # bot.core.priority.Priority.PROGRESS


def insert_outbox(conn: sqlite3.Connection, rows: Sequence[NewOutboxRow], now: float) -> int:
    """Add rows inside the caller's transaction; a dedupe_key already there is skipped."""
    params = [
        (r.dedupe_key, r.channel_id, r.job_key, r.kind, r.payload, r.priority, now, now, now)
        for r in rows
    ]
    return conn.executemany(_INSERT_OUTBOX, params).rowcount if params else 0


class OutboxStore(StoreConnection):
    def enqueue(self, rows: Sequence[NewOutboxRow], *, now: float | None = None) -> int:
        """Add rows to the outbox; a dedupe_key already there is skipped. Returns inserted."""
        at = self._now(now)
        with self._write() as conn:
            return insert_outbox(conn, rows, at)

    def due_outbox(self, *, now: float | None = None, limit: int = 100) -> list[OutboxRow]:
        """Each channel's next row, when it is due; channels with an alert first, then by id.

        A channel's most urgent pending row (the lowest priority, then the oldest; rows
        carried by another left out) goes first, but after any earlier row of the same job
        that is not progress: a job's card and its status changes keep their order, only
        its queued progress is overtaken (and carried by a final reply, `claim_carried`).
        A channel with a row being sent yields nothing, nor one whose next row waits on a
        retry, so per-channel order (within a priority) holds.
        """
        columns = ", ".join(f"r.{name.strip()}" for name in _OUTBOX.split(","))
        queued = "q.state = 'pending' AND q.carried_by IS NULL AND q.channel_id = c.channel_id"
        with self._read() as conn:
            rows = conn.execute(
                "WITH c AS (SELECT o.id, o.channel_id, o.job_key, o.priority FROM outbox o "
                "WHERE o.state = 'pending' AND o.id = (SELECT p.id FROM outbox p "
                "WHERE p.state = 'pending' AND p.channel_id = o.channel_id "
                "AND p.carried_by IS NULL ORDER BY p.priority, p.id LIMIT 1) "
                "AND NOT EXISTS (SELECT 1 FROM outbox s WHERE s.state = 'sending' "
                "AND s.channel_id = o.channel_id)) "
                f"SELECT {columns} FROM c JOIN outbox r ON r.id = (SELECT min(q.id) "
                f"FROM outbox q WHERE {queued} AND q.job_key = c.job_key AND q.id <= c.id "
                "AND (q.id = c.id OR q.priority <> ?)) "
                "WHERE r.next_attempt_at <= ? ORDER BY c.priority, c.id LIMIT ?",
                (PROGRESS, self._now(now), limit),
            ).fetchall()
        return [OutboxRow.from_row(row) for row in rows]

    def claim_carried(self, row_id: int, *, now: float | None = None) -> list[OutboxRow]:
        """An attempt of a job's final row begins (`mark_sending`), and it takes the job's
        progress still queued before it in the channel (never attempted: it cannot be in
        Slack already). Returns every row it carries, those of earlier attempts included,
        oldest first; all in one transaction."""
        at = self._now(now)
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET state = 'sending', attempts = attempts + 1, "
                "call_started_at = ?, updated_at = ? WHERE id = ?",
                (at, at, row_id),
            )
            conn.execute(
                "UPDATE outbox SET carried_by = ?, updated_at = ? WHERE id IN ("
                "SELECT p.id FROM outbox p JOIN outbox c ON c.id = ? "
                "WHERE p.channel_id = c.channel_id AND p.job_key = c.job_key AND p.id < c.id "
                "AND p.state = 'pending' AND p.attempts = 0 AND p.priority = ? "
                "AND p.carried_by IS NULL)",
                (row_id, at, row_id, PROGRESS),
            )
            rows = conn.execute(
                f"SELECT {_OUTBOX} FROM outbox WHERE carried_by = ? AND state = 'pending' "
                "ORDER BY id",
                (row_id,),
            ).fetchall()
        return [OutboxRow.from_row(row) for row in rows]

    def queued_jobs(self) -> set[tuple[str, str]]:
        """(channel, job) pairs with a row not yet sent: their cards will change again."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT DISTINCT channel_id, job_key FROM outbox "
                "WHERE state IN ('pending', 'sending')"
            ).fetchall()
        return {(channel, job) for channel, job in rows}

    def carried(self, row_id: int) -> list[OutboxRow]:
        """The rows `row_id` carries or carried, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_OUTBOX} FROM outbox WHERE carried_by = ? ORDER BY id", (row_id,)
            ).fetchall()
        return [OutboxRow.from_row(row) for row in rows]

    def queued_by_priority(self) -> tuple[dict[int, int], float | None]:
        """Pending and sending rows per priority (carried ones included), and when the
        oldest queued alert was written (None: no alert waits)."""
        with self._read() as conn:
            counts = conn.execute(
                "SELECT priority, count(*) FROM outbox WHERE state IN ('pending', 'sending') "
                "GROUP BY priority"
            ).fetchall()
            (oldest,) = conn.execute(
                "SELECT min(created_at) FROM outbox WHERE state IN ('pending', 'sending') "
                "AND priority = ?",
                (ALERT,),
            ).fetchone()
        return {priority: n for priority, n in counts}, oldest

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
        """Slack holds the row as `ts`; `verify_at`: when to look for a late copy of it.
        The rows it carries are sent with it (same transaction, same ts)."""
        at = self._now(now)
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET state = 'sent', slack_ts = ?, verify_at = ?, updated_at = ? "
                "WHERE id = ?",
                (ts, verify_at, at, row_id),
            )
            conn.execute(
                "UPDATE outbox SET state = 'sent', slack_ts = ?, updated_at = ? "
                "WHERE carried_by = ? AND state = 'pending'",
                (ts, at, row_id),
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
        """Give up on the row; the rows it carried are queued on their own again."""
        at = self._now(now)
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET state = 'dead', last_error = ?, updated_at = ? WHERE id = ?",
                (error, at, row_id),
            )
            conn.execute(
                "UPDATE outbox SET carried_by = NULL, updated_at = ? "
                "WHERE carried_by = ? AND state = 'pending'",
                (at, row_id),
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
