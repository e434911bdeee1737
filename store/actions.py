"""Actions taken from Slack: each start, cancel or retrain is one row, written BEFORE MathFi
is called, so a double click, a redelivered interaction or a lost answer never acts twice.

States: `requested` (written, MathFi not answered yet) -> `done` | `failed` (MathFi did
nothing) | `unknown` (MathFi may have acted; a person must check); `refused` (the person
may not act; written as such, MathFi never called).
"""

from __future__ import annotations

import sqlite3

from store.connection import StoreConnection
from store.migrations import ACTION_KINDS
from store.records import ActionRecord

_COLUMNS = ActionRecord.COLUMNS
FINISHED_STATES = ("done", "failed", "unknown")
# A subject taken "once" (a job is cancelled once, retrained once) is taken by a row in one
# of these. A cancel whose outcome is unknown does not hold its job: asking again is
# harmless (MathFi refuses to cancel a job that is no longer running, and the runner reads
# the status back), and the person told "check the job before you try again" must be able
# to. A retrain whose outcome is unknown holds: a second one could start a second training.
_HOLDING_STATES = ("requested", "done", "unknown")
_HOLDING_BY_KIND = {"cancel": ("requested", "done")}
_INSERT = (
    "INSERT INTO actions (idempotency_key, kind, team_id, channel_id, user_id, subject_key, "
    "parameters, state, answer, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _by_key(conn: sqlite3.Connection, key: str) -> ActionRecord | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM actions WHERE idempotency_key = ?", (key,)
    ).fetchone()
    return None if row is None else ActionRecord.from_row(row)


def _by_id(conn: sqlite3.Connection, action_id: int) -> ActionRecord | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM actions WHERE id = ?", (action_id,)).fetchone()
    return None if row is None else ActionRecord.from_row(row)


class ActionStore(StoreConnection):
    def begin_action(
        self,
        *,
        idempotency_key: str,
        kind: str,
        team_id: str | None,
        channel_id: str,
        user_id: str,
        subject_key: str,
        parameters: str = "{}",
        once_per_subject: bool = False,
        now: float | None = None,
    ) -> tuple[ActionRecord, bool]:
        """Record an action in state `requested`: `(row, True)`. When the key was seen (a
        double click, a redelivery), or, with `once_per_subject`, another row of this kind
        holds the subject (requested, done or unknown: a job is cancelled once; an unknown
        cancel holds nothing, see _HOLDING_BY_KIND), nothing is written: `(that row, False)`.
        A row that `failed` holds nothing: MathFi did nothing."""
        if kind not in ACTION_KINDS:
            raise ValueError(f"unknown action kind {kind!r}")
        at = self._now(now)
        with self._write() as conn:
            seen = _by_key(conn, idempotency_key)
            if seen is not None:
                return seen, False
            if once_per_subject:
                states = _HOLDING_BY_KIND.get(kind, _HOLDING_STATES)
                holding = ", ".join("?" for _ in states)
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM actions WHERE subject_key = ? AND kind = ? "
                    f"AND state IN ({holding}) ORDER BY id LIMIT 1",
                    (subject_key, kind, *states),
                ).fetchone()
                if row is not None:
                    return ActionRecord.from_row(row), False
            values = (team_id, channel_id, user_id, subject_key, parameters)
            cursor = conn.execute(
                _INSERT, (idempotency_key, kind, *values, "requested", None, at, at)
            )
            created = _by_id(conn, int(cursor.lastrowid or 0))
        assert created is not None
        return created, True

    def refuse_action(
        self,
        *,
        idempotency_key: str,
        kind: str,
        team_id: str | None,
        channel_id: str,
        user_id: str,
        subject_key: str,
        reason: str,
        parameters: str = "{}",
        now: float | None = None,
    ) -> ActionRecord:
        """Record a refusal (MathFi is not called); a key already there is kept as it is."""
        at = self._now(now)
        values = (team_id, channel_id, user_id, subject_key, parameters)
        with self._write() as conn:
            conn.execute(
                _INSERT.replace("INSERT", "INSERT OR IGNORE", 1),
                (idempotency_key, kind, *values, "refused", reason, at, at),
            )
            row = _by_key(conn, idempotency_key)
        assert row is not None
        return row

    def finish_action(
        self,
        action_id: int,
        *,
        state: str,
        answer: str,
        result_job_key: str | None = None,
        now: float | None = None,
    ) -> ActionRecord | None:
        """Move a `requested` action to done / failed / unknown with MathFi's answer (a short
        summary) and the resulting job key. Returns the row as it now is (unchanged when it
        had already finished), or None for an unknown id."""
        if state not in FINISHED_STATES:
            raise ValueError(f"an action finishes as one of {FINISHED_STATES}, not {state!r}")
        with self._write() as conn:
            conn.execute(
                "UPDATE actions SET state = ?, answer = ?, result_job_key = ?, updated_at = ? "
                "WHERE id = ? AND state = 'requested'",
                (state, answer, result_job_key, self._now(now), action_id),
            )
            return _by_id(conn, action_id)

    def expire_requested(
        self, *, before: float, answer: str, now: float | None = None
    ) -> list[ActionRecord]:
        """Actions left `requested` since before `before` (a bot stopped or died while MathFi
        was asked) finish `unknown` with `answer`: MathFi may have acted, so they are never
        sent again, and they stop saying "under way". Returns them as they now are."""
        with self._write() as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM actions WHERE state = 'requested' AND updated_at < ? "
                    "ORDER BY id",
                    (before,),
                )
            ]
            conn.executemany(
                "UPDATE actions SET state = 'unknown', answer = ?, updated_at = ? WHERE id = ?",
                [(answer, self._now(now), action_id) for action_id in ids],
            )
            rows = [_by_id(conn, action_id) for action_id in ids]
        return [row for row in rows if row is not None]

    def get_action(self, action_id: int) -> ActionRecord | None:
        with self._read() as conn:
            return _by_id(conn, action_id)

    def job_origin(self, job_key: str) -> ActionRecord | None:
        """The start or retrain from Slack that created `job_key` (done), if there was one:
        the job's card says who started it and which job it retrains."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM actions WHERE result_job_key = ? "
                "AND kind IN ('start', 'retrain') AND state = 'done' ORDER BY id LIMIT 1",
                (job_key,),
            ).fetchone()
        return None if row is None else ActionRecord.from_row(row)

    def recent_actions(
        self,
        *,
        channel_id: str | None = None,
        subject_key: str | None = None,
        limit: int = 20,
    ) -> list[ActionRecord]:
        """The newest actions first, of one channel and/or one subject (dataset or job)."""
        where, params = [], []
        for column, value in (("channel_id", channel_id), ("subject_key", subject_key)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM actions {clause}ORDER BY id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [ActionRecord.from_row(row) for row in rows]
