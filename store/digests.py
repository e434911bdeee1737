"""Daily digests (issue #14): each channel's setting, the jobs a digest tells of, and the
one write that queues a day's digest and marks the day sent, together."""

from __future__ import annotations

import sqlite3

from store.compact import restore_record
from store.connection import StoreConnection
from store.outbox import insert_outbox
from store.records import DigestJob, DigestSetting, JobRecord, NewOutboxRow

_DIGEST = DigestSetting.COLUMNS
_JOB = ", ".join(f"j.{name.strip()}" for name in JobRecord.COLUMNS.split(","))


class DigestStore(StoreConnection):
    def set_digest(
        self,
        *,
        channel_id: str,
        team_id: str | None,
        daily_at: str,
        tz: str,
        user_id: str | None,
        skip_day: str | None = None,
        now: float | None = None,
    ) -> tuple[DigestSetting | None, DigestSetting]:
        """Turn the channel's digest on (or change its hour or zone): (before, after).

        `skip_day`: a local date (ISO) not to send for, when the hour has already passed
        today; the day last sent is kept when it is later (never twice on one day)."""
        at = self._now(now)
        with self._write() as conn:
            before = _get(conn, channel_id)
            conn.execute(
                "INSERT INTO digests (channel_id, team_id, daily_at, tz, last_sent_day, active, "
                "updated_by, updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?) "
                "ON CONFLICT (channel_id) DO UPDATE SET team_id = excluded.team_id, "
                "daily_at = excluded.daily_at, tz = excluded.tz, active = 1, "
                "updated_by = excluded.updated_by, updated_at = excluded.updated_at, "
                "last_sent_day = CASE WHEN excluded.last_sent_day IS NOT NULL AND "
                "(last_sent_day IS NULL OR last_sent_day < excluded.last_sent_day) "
                "THEN excluded.last_sent_day ELSE last_sent_day END",
                (channel_id, team_id, daily_at, tz, skip_day, user_id, at),
            )
            after = _get(conn, channel_id)
        assert after is not None
        return (before if before is not None and before.active else None), after

    def digest_off(
        self, *, channel_id: str, user_id: str | None, now: float | None = None
    ) -> DigestSetting | None:
        """Turn the channel's digest off (its last day sent is kept); the setting it had,
        None when it had none."""
        at = self._now(now)
        with self._write() as conn:
            before = _get(conn, channel_id)
            conn.execute(
                "UPDATE digests SET active = 0, updated_by = ?, updated_at = ? "
                "WHERE channel_id = ? AND active = 1",
                (user_id, at, channel_id),
            )
        return before if before is not None and before.active else None

    def get_digest(self, *, channel_id: str) -> DigestSetting | None:
        """The channel's digest setting when it is on."""
        with self._read() as conn:
            setting = _get(conn, channel_id)
        return setting if setting is not None and setting.active else None

    def active_digests(self) -> list[DigestSetting]:
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_DIGEST} FROM digests WHERE active = 1 ORDER BY channel_id"
            ).fetchall()
        return [DigestSetting.from_row(row) for row in rows]

    def digest_jobs(self, *, channel_id: str) -> list[DigestJob]:
        """The jobs the channel watches (delivering subscriptions), oldest watch first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_JOB}, s.created_at FROM subscriptions s "
                "JOIN jobs j ON j.job_key = s.job_key WHERE s.channel_id = ? AND s.active = 1 "
                "AND s.disabled_reason IS NULL ORDER BY s.created_at, s.id",
                (channel_id,),
            ).fetchall()
            jobs = [(restore_record(conn, JobRecord.from_row(row[:-1])), row[-1]) for row in rows]
        return [DigestJob(job=job, watched_since=since) for job, since in jobs]

    def record_digest(
        self, *, channel_id: str, day: str, row: NewOutboxRow | None, now: float | None = None
    ) -> bool:
        """Mark `day` (the local date, ISO) sent and queue its digest (`row`; None: nothing
        to tell), in one transaction. False, and nothing written, when that day (or a later
        one) is already marked or the digest is off: a second loop, or the same one after a
        restart, cannot queue it twice."""
        at = self._now(now)
        with self._write() as conn:
            marked = conn.execute(
                "UPDATE digests SET last_sent_day = ?, last_sent_at = ? WHERE channel_id = ? "
                "AND active = 1 AND (last_sent_day IS NULL OR last_sent_day < ?)",
                (day, at, channel_id, day),
            ).rowcount
            if marked and row is not None:
                insert_outbox(conn, [row], at)
        return marked > 0


def _get(conn: sqlite3.Connection, channel_id: str) -> DigestSetting | None:
    row = conn.execute(
        f"SELECT {_DIGEST} FROM digests WHERE channel_id = ?", (channel_id,)
    ).fetchone()
    return None if row is None else DigestSetting.from_row(row)
