"""Jobs and their history: the last snapshot of each watched job, its polls (changed or
failed), and the performance points its cards draw."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from store.alerts import insert_alerts
from store.compact import archived_points, merge, restore_record
from store.connection import StoreConnection
from store.outbox import insert_outbox
from store.personal import touch_homes_of_job
from store.records import HistoryPoint, JobRecord, NewAlert, NewOutboxRow

_UPSERT_JOB = (
    "INSERT INTO jobs (job_key, snapshot_json, snapshot_hash, status, best_performance, "
    "best_algorithm, next_poll_at, unreachable, terminal, version, updated_at, "
    "last_improvement_at, forecast_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?) "
    "ON CONFLICT (job_key) DO UPDATE SET snapshot_json = excluded.snapshot_json, "
    "snapshot_hash = excluded.snapshot_hash, status = excluded.status, "
    "best_performance = excluded.best_performance, best_algorithm = excluded.best_algorithm, "
    "next_poll_at = excluded.next_poll_at, unreachable = excluded.unreachable, "
    "terminal = excluded.terminal, consecutive_errors = 0, version = version + 1, "
    "updated_at = excluded.updated_at, "
    "last_improvement_at = coalesce(excluded.last_improvement_at, last_improvement_at), "
    "forecast_json = coalesce(excluded.forecast_json, forecast_json) "
    "RETURNING version"
)
_INSERT_HISTORY = (
    "INSERT INTO performance_history (job_key, algorithm, at, value) VALUES (?, ?, ?, ?)"
)
# The newest `keep` points of each algorithm of one job stay; older ones go.
_PRUNE_HISTORY = (
    "DELETE FROM performance_history WHERE rowid IN (SELECT rowid FROM (SELECT rowid, "
    "row_number() OVER (PARTITION BY algorithm ORDER BY at DESC, rowid DESC) AS newer "
    "FROM performance_history WHERE job_key = ?) WHERE newer > ?)"
)
# Points kept per (job, algorithm): the card's sparkline shows the last 12. A job is
# pruned every PRUNE_EVERY changed polls, so it holds at most HISTORY_KEEP + PRUNE_EVERY.
HISTORY_KEEP = 48
PRUNE_EVERY = 16


@dataclass(frozen=True, slots=True)
class PollRecord:
    """One changed poll, as `Store.record_polls` takes it (the fields of `record_poll`)."""

    job_key: str
    snapshot_json: str
    snapshot_hash: str
    status: str
    best_performance: float | None
    best_algorithm: str | None
    terminal: bool
    next_poll_at: float
    history: Sequence[HistoryPoint]
    outbox: Sequence[NewOutboxRow]
    last_best: Mapping[int, float]
    improved: bool
    unreachable: bool = False
    forecast_json: str | None = None  # the job's forecast state; None keeps the stored one
    alerts: Sequence[NewAlert] = ()  # on-call alerts opened with their outbox rows


class JobStore(StoreConnection):
    _history_keep: int = HISTORY_KEEP

    def get_job(self, job_key: str) -> JobRecord | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {JobRecord.COLUMNS} FROM jobs WHERE job_key = ?", (job_key,)
            ).fetchone()
            return None if row is None else restore_record(conn, JobRecord.from_row(row))

    def jobs_to_watch(self) -> list[JobRecord]:
        """Jobs not terminal with at least one delivering subscription, soonest due first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {JobRecord.COLUMNS} FROM jobs j WHERE terminal = 0 AND EXISTS "
                "(SELECT 1 FROM subscriptions s WHERE s.job_key = j.job_key AND s.active = 1 "
                "AND s.disabled_reason IS NULL) ORDER BY next_poll_at, job_key"
            ).fetchall()
            return [restore_record(conn, JobRecord.from_row(row)) for row in rows]

    def watched_keys(self) -> dict[str, float]:
        """`jobs_to_watch` without the snapshots: job key -> next_poll_at.

        The poller's resync asks this every few seconds; reading 10,000 full records each
        time stalled its loop for ~0.1 s (and the garbage collector after it)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT job_key, next_poll_at FROM jobs j WHERE terminal = 0 AND EXISTS "
                "(SELECT 1 FROM subscriptions s WHERE s.job_key = j.job_key AND s.active = 1 "
                "AND s.disabled_reason IS NULL)"
            ).fetchall()
        return {key: float(next_poll_at) for key, next_poll_at in rows}

    def record_poll(
        self,
        *,
        job_key: str,
        snapshot_json: str,
        snapshot_hash: str,
        status: str,
        best_performance: float | None,
        best_algorithm: str | None,
        terminal: bool,
        next_poll_at: float,
        history: Sequence[HistoryPoint],
        outbox: Sequence[NewOutboxRow],
        last_best: Mapping[int, float],
        improved: bool,
        unreachable: bool = False,
        forecast_json: str | None = None,
        now: float | None = None,
    ) -> int:
        """Store one changed poll in ONE transaction; returns the job's new version.

        Job row (version + 1, errors reset), history points, outbox rows (deduplicated),
        the subscriptions' `last_best`, and every card of the job marked dirty. Every
        PRUNE_EVERY versions the job's history is cut back to its newest `history_keep`
        points per algorithm (without it, 10,000 jobs at 10 s grew the file ~2.8 GB/h).
        """
        poll = PollRecord(
            job_key=job_key,
            snapshot_json=snapshot_json,
            snapshot_hash=snapshot_hash,
            status=status,
            best_performance=best_performance,
            best_algorithm=best_algorithm,
            terminal=terminal,
            next_poll_at=next_poll_at,
            history=history,
            outbox=outbox,
            last_best=last_best,
            improved=improved,
            unreachable=unreachable,
            forecast_json=forecast_json,
        )
        return self.record_polls([poll], now=now)[0]

    def record_polls(self, polls: Sequence[PollRecord], *, now: float | None = None) -> list[int]:
        """Store several changed polls in ONE transaction (group commit); their versions.

        Each poll is written exactly as `record_poll` writes it. One commit for a batch
        costs far less than one each: fewer WAL frames (the polls share the history
        table's last page) and fewer checkpoints; at 1,000 changed polls a second this
        took a third off the database's share of a poll.
        """
        at = self._now(now)
        with self._write() as conn:
            return [self._record(conn, poll, at) for poll in polls]

    def _record(self, conn: sqlite3.Connection, poll: PollRecord, at: float) -> int:
        (version,) = conn.execute(
            _UPSERT_JOB,
            (
                poll.job_key,
                poll.snapshot_json,
                poll.snapshot_hash,
                poll.status,
                poll.best_performance,
                poll.best_algorithm,
                poll.next_poll_at,
                int(poll.unreachable),
                int(poll.terminal),
                at,
                at if poll.improved else None,
                poll.forecast_json,
            ),
        ).fetchall()[0]
        if poll.history:
            conn.executemany(
                _INSERT_HISTORY,
                [(poll.job_key, point.algorithm, point.at, point.value) for point in poll.history],
            )
            if version % PRUNE_EVERY == 0:
                conn.execute(_PRUNE_HISTORY, (poll.job_key, self._history_keep))
        insert_outbox(conn, poll.outbox, at)
        if poll.alerts:
            insert_alerts(conn, poll.alerts)
        if poll.last_best:
            conn.executemany(
                "UPDATE subscriptions SET last_best = ? WHERE id = ?",
                [(value, sub_id) for sub_id, value in poll.last_best.items()],
            )
        conn.execute(
            "UPDATE cards SET dirty = 1, card_version = card_version + 1 WHERE job_key = ?",
            (poll.job_key,),
        )
        touch_homes_of_job(conn, poll.job_key)
        return int(version)

    def record_error(
        self,
        *,
        job_key: str,
        next_poll_at: float,
        unreachable: bool,
        outbox: Sequence[NewOutboxRow] = (),
        now: float | None = None,
    ) -> int:
        """Count a failed poll; returns consecutive errors (0 if the job is unknown)."""
        at = self._now(now)
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE jobs SET consecutive_errors = consecutive_errors + 1, unreachable = ?, "
                "next_poll_at = ?, updated_at = ? WHERE job_key = ? RETURNING consecutive_errors",
                (int(unreachable), next_poll_at, at, job_key),
            ).fetchall()
            insert_outbox(conn, outbox, at)
        return int(rows[0][0]) if rows else 0

    def history(
        self, job_key: str, *, algorithm: str | None = None, since: float | None = None
    ) -> list[HistoryPoint]:
        """Performance points of a job, oldest first (about the newest `history_keep` of
        each algorithm: older ones are pruned as the job is polled; a finished job keeps
        the newest few in its archive, store/compact.py)."""
        where, params = "job_key = ?", list[str | float]([job_key])
        if algorithm is not None:
            where, params = where + " AND algorithm = ?", [*params, algorithm]
        if since is not None:
            where, params = where + " AND at >= ?", [*params, since]
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT algorithm, at, value FROM performance_history WHERE {where} "
                "ORDER BY at, rowid",
                params,
            ).fetchall()
            archived = [
                point
                for point in archived_points(conn, job_key)
                if (algorithm is None or point.algorithm == algorithm)
                and (since is None or point.at >= since)
            ]
        return merge(archived, [HistoryPoint(*row) for row in rows])
