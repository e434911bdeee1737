"""The Store: every read and write of the bot's SQLite database, as small typed methods.

One connection (WAL, `check_same_thread=False`) guarded by a lock, so the store may be
called from worker threads. Every change that touches more than one row runs in ONE
transaction (`BEGIN IMMEDIATE` inside `with conn:`). Any SQLite failure leaves a method
as `StoreUnavailable` with SQLite's one-line message.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database

from store.migrations import OUTBOX_STATES, apply_migrations
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

log = logging.getLogger(__name__)

_SUB = Subscription.COLUMNS
_OUTBOX = OutboxRow.COLUMNS
_INSERT_OUTBOX = (
    "INSERT OR IGNORE INTO outbox (dedupe_key, channel_id, job_key, kind, payload, state, "
    "attempts, next_attempt_at, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)"
)
_UPSERT_JOB = (
    "INSERT INTO jobs (job_key, snapshot_json, snapshot_hash, status, best_performance, "
    "best_algorithm, next_poll_at, unreachable, terminal, version, updated_at, "
    "last_improvement_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?) "
    "ON CONFLICT (job_key) DO UPDATE SET snapshot_json = excluded.snapshot_json, "
    "snapshot_hash = excluded.snapshot_hash, status = excluded.status, "
    "best_performance = excluded.best_performance, best_algorithm = excluded.best_algorithm, "
    "next_poll_at = excluded.next_poll_at, unreachable = excluded.unreachable, "
    "terminal = excluded.terminal, consecutive_errors = 0, version = version + 1, "
    "updated_at = excluded.updated_at, "
    "last_improvement_at = coalesce(excluded.last_improvement_at, last_improvement_at) "
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


@contextmanager
def _unavailable() -> Iterator[None]:
    try:
        yield
    except sqlite3.DatabaseError as err:
        message = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise StoreUnavailable(message) from err


def refused_row(err: StoreUnavailable) -> bool:
    """True when SQLite refused the data (a constraint or check), not the database itself
    (locked, read-only, full, I/O): retrying the same rows cannot help, other rows can."""
    return isinstance(err.__cause__, sqlite3.IntegrityError)


def _connect(path: str | Path, *, busy_timeout_ms: int) -> sqlite3.Connection:
    """`path` may be a `file:` URI (e.g. `file:/x.db?mode=ro`); otherwise its dir is created."""
    text = str(path)
    if not text.startswith("file:") and text != ":memory:":
        try:
            Path(text).parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreUnavailable(f"cannot create {Path(text).parent}: {err.strerror}") from err
    conn = sqlite3.connect(
        text,
        uri=text.startswith("file:"),
        timeout=busy_timeout_ms / 1000,
        check_same_thread=False,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


class Store:
    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        # Short on purpose: calls run on the event loop, so a write lock held by another
        # process must not freeze the service; callers treat StoreUnavailable as "try again".
        busy_timeout_ms: int = 250,
        history_keep: int = HISTORY_KEEP,
    ) -> None:
        self._clock = clock
        self._history_keep = history_keep
        self._lock = threading.RLock()
        with _unavailable():
            self.db = Database(_connect(path, busy_timeout_ms=busy_timeout_ms))
            try:
                apply_migrations(self.db, now=clock())
            except BaseException:
                self.db.close()
                raise

    # -- plumbing ---------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, _unavailable():
            yield self.db.conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self._lock, _unavailable():
            conn = self.db.conn
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                yield conn

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    def _insert_outbox(
        self, conn: sqlite3.Connection, rows: Sequence[NewOutboxRow], now: float
    ) -> int:
        params = [
            (r.dedupe_key, r.channel_id, r.job_key, r.kind, r.payload, now, now, now) for r in rows
        ]
        return conn.executemany(_INSERT_OUTBOX, params).rowcount if params else 0

    # -- subscriptions ----------------------------------------------------------------

    def subscribe(
        self,
        *,
        team_id: str | None,
        channel_id: str,
        job_key: str,
        user_id: str | None,
        min_improvement: float,
        mention: str | None,
        events: str,
        snapshot_json: str,
        snapshot_hash: str,
        status: str,
        best_performance: float | None,
        best_algorithm: str | None,
        terminal: bool,
        next_poll_at: float,
        watch_row: NewOutboxRow,
        now: float | None = None,
    ) -> tuple[Subscription, bool]:
        """Insert or re-activate the (channel, job) subscription, with the job baseline.

        `created` is True when the subscription is new or was unsubscribed; only then is
        `watch_row` enqueued and `last_best` set to `best_performance`.
        """
        at = self._now(now)
        with self._write() as conn:
            watched_elsewhere = conn.execute(
                "SELECT 1 FROM subscriptions WHERE job_key = ? "
                "AND active = 1 AND disabled_reason IS NULL LIMIT 1",
                (job_key,),
            ).fetchone()
            # Nobody watches the job, so its stored snapshot may be stale: the fresh
            # one becomes the baseline (else the next poll would replay old changes).
            conn.execute(
                "INSERT INTO jobs (job_key, snapshot_json, snapshot_hash, status, "
                "best_performance, best_algorithm, next_poll_at, terminal, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (job_key) DO UPDATE SET snapshot_json = excluded.snapshot_json, "
                "snapshot_hash = excluded.snapshot_hash, status = excluded.status, "
                "best_performance = excluded.best_performance, "
                "best_algorithm = excluded.best_algorithm, next_poll_at = excluded.next_poll_at, "
                "terminal = excluded.terminal, updated_at = excluded.updated_at, "
                "consecutive_errors = 0, unreachable = 0, version = version + 1 WHERE ?",
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
            before = conn.execute(
                "SELECT active, disabled_reason FROM subscriptions "
                "WHERE channel_id = ? AND job_key = ?",
                (channel_id, job_key),
            ).fetchone()
            # New, unsubscribed, or disabled by Slack (the bot was since invited back):
            # each starts afresh with a card.
            created = before is None or not before[0] or before[1] is not None
            conn.execute(
                "INSERT INTO subscriptions (team_id, channel_id, job_key, created_by, created_at, "
                "min_improvement, mention, events, active, last_best) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?) "
                "ON CONFLICT (channel_id, job_key) DO UPDATE SET team_id = excluded.team_id, "
                "min_improvement = excluded.min_improvement, mention = excluded.mention, "
                "events = excluded.events, active = 1, disabled_reason = NULL, "
                "created_by = CASE WHEN ? THEN excluded.created_by ELSE created_by END, "
                "created_at = CASE WHEN ? THEN excluded.created_at ELSE created_at END, "
                "muted_until = CASE WHEN ? THEN NULL ELSE muted_until END, "
                "last_best = CASE WHEN ? THEN excluded.last_best ELSE last_best END",
                (
                    team_id,
                    channel_id,
                    job_key,
                    user_id,
                    at,
                    min_improvement,
                    mention,
                    events,
                    best_performance,
                    created,
                    created,
                    created,
                    created,
                ),
            )
            if created:
                self._insert_outbox(conn, [watch_row], at)
            row = conn.execute(
                f"SELECT {_SUB} FROM subscriptions WHERE channel_id = ? AND job_key = ?",
                (channel_id, job_key),
            ).fetchone()
        return Subscription.from_row(row), created

    def unsubscribe(self, *, channel_id: str, job_key: str) -> bool:
        """Stop the subscription and drop what was queued for it; True if it was active."""
        with self._write() as conn:
            stopped = conn.execute(
                "UPDATE subscriptions SET active = 0 "
                "WHERE channel_id = ? AND job_key = ? AND active = 1",
                (channel_id, job_key),
            ).rowcount
            conn.execute(
                "UPDATE outbox SET state = 'dead', last_error = 'unsubscribed', updated_at = ? "
                "WHERE channel_id = ? AND job_key = ? AND state = 'pending'",
                (self._now(None), channel_id, job_key),
            )
            return stopped > 0

    def unsubscribe_all(self, *, channel_id: str) -> int:
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET state = 'dead', last_error = 'unsubscribed', updated_at = ? "
                "WHERE channel_id = ? AND state = 'pending' AND job_key IN (SELECT job_key "
                "FROM subscriptions WHERE channel_id = ? AND active = 1)",
                (self._now(None), channel_id, channel_id),
            )
            return int(
                conn.execute(
                    "UPDATE subscriptions SET active = 0 WHERE channel_id = ? AND active = 1",
                    (channel_id,),
                ).rowcount
            )

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
        return [
            SubscriptionView(
                subscription=Subscription.from_row(row[:13]),
                status=row[13],
                best_performance=row[14],
                best_algorithm=row[15],
                unreachable=bool(row[16]),
            )
            for row in rows
        ]

    def get_subscription(self, *, channel_id: str, job_key: str) -> Subscription | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_SUB} FROM subscriptions WHERE channel_id = ? AND job_key = ?",
                (channel_id, job_key),
            ).fetchone()
        return None if row is None else Subscription.from_row(row)

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

    def set_muted_until(self, *, channel_id: str, job_key: str, until: float | None) -> bool:
        """Mute (or unmute with None) an active subscription; False if there is none."""
        with self._write() as conn:
            return (
                conn.execute(
                    "UPDATE subscriptions SET muted_until = ? "
                    "WHERE channel_id = ? AND job_key = ? AND active = 1",
                    (until, channel_id, job_key),
                ).rowcount
                > 0
            )

    def disable_channel(self, *, channel_id: str, reason: str) -> int:
        """Stop delivering to every active subscription of the channel; they stay listed."""
        with self._write() as conn:
            return conn.execute(
                "UPDATE subscriptions SET disabled_reason = ? "
                "WHERE channel_id = ? AND active = 1 AND disabled_reason IS NULL",
                (reason, channel_id),
            ).rowcount

    def subscriptions_for_job(self, job_key: str) -> list[Subscription]:
        """Subscriptions to deliver to: active and not disabled, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_SUB} FROM subscriptions WHERE job_key = ? AND active = 1 "
                "AND disabled_reason IS NULL ORDER BY id",
                (job_key,),
            ).fetchall()
        return [Subscription.from_row(row) for row in rows]

    # -- jobs and history -------------------------------------------------------------

    def get_job(self, job_key: str) -> JobRecord | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {JobRecord.COLUMNS} FROM jobs WHERE job_key = ?", (job_key,)
            ).fetchone()
        return None if row is None else JobRecord.from_row(row)

    def jobs_to_watch(self) -> list[JobRecord]:
        """Jobs not terminal with at least one delivering subscription, soonest due first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {JobRecord.COLUMNS} FROM jobs j WHERE terminal = 0 AND EXISTS "
                "(SELECT 1 FROM subscriptions s WHERE s.job_key = j.job_key AND s.active = 1 "
                "AND s.disabled_reason IS NULL) ORDER BY next_poll_at, job_key"
            ).fetchall()
        return [JobRecord.from_row(row) for row in rows]

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
            ),
        ).fetchall()[0]
        if poll.history:
            conn.executemany(
                _INSERT_HISTORY,
                [(poll.job_key, point.algorithm, point.at, point.value) for point in poll.history],
            )
            if version % PRUNE_EVERY == 0:
                conn.execute(_PRUNE_HISTORY, (poll.job_key, self._history_keep))
        self._insert_outbox(conn, poll.outbox, at)
        if poll.last_best:
            conn.executemany(
                "UPDATE subscriptions SET last_best = ? WHERE id = ?",
                [(value, sub_id) for sub_id, value in poll.last_best.items()],
            )
        conn.execute(
            "UPDATE cards SET dirty = 1, card_version = card_version + 1 WHERE job_key = ?",
            (poll.job_key,),
        )
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
            self._insert_outbox(conn, outbox, at)
        return int(rows[0][0]) if rows else 0

    def history(
        self, job_key: str, *, algorithm: str | None = None, since: float | None = None
    ) -> list[HistoryPoint]:
        """Performance points of a job, oldest first (about the newest `history_keep` of
        each algorithm: older ones are pruned as the job is polled)."""
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
        return [HistoryPoint(*row) for row in rows]

    # -- outbox -----------------------------------------------------------------------

    def enqueue(self, rows: Sequence[NewOutboxRow], *, now: float | None = None) -> int:
        """Add rows to the outbox; a dedupe_key already there is skipped. Returns inserted."""
        at = self._now(now)
        with self._write() as conn:
            return self._insert_outbox(conn, rows, at)

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

    def _update_row(self, sql: str, params: tuple[object, ...]) -> int:
        with self._write() as conn:
            return conn.execute(sql, params).rowcount

    def mark_sending(self, row_id: int, *, now: float | None = None) -> None:
        self._update_row(
            "UPDATE outbox SET state = 'sending', attempts = attempts + 1, updated_at = ? "
            "WHERE id = ?",
            (self._now(now), row_id),
        )

    def mark_sent(self, row_id: int, *, ts: str, now: float | None = None) -> None:
        self._update_row(
            "UPDATE outbox SET state = 'sent', slack_ts = ?, updated_at = ? WHERE id = ?",
            (ts, self._now(now), row_id),
        )

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

    # -- cards ------------------------------------------------------------------------

    def get_card(self, *, channel_id: str, job_key: str) -> Card | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {Card.COLUMNS} FROM cards WHERE channel_id = ? AND job_key = ?",
                (channel_id, job_key),
            ).fetchone()
        return None if row is None else Card.from_row(row)

    def save_card(self, *, channel_id: str, job_key: str, ts: str) -> None:
        """Remember the card's message ts; the card is clean (its version is kept)."""
        self._update_row(
            "INSERT INTO cards (channel_id, job_key, ts, dirty, card_version) "
            "VALUES (?, ?, ?, 0, 0) ON CONFLICT (channel_id, job_key) "
            "DO UPDATE SET ts = excluded.ts, dirty = 0",
            (channel_id, job_key, ts),
        )

    def forget_card(self, *, channel_id: str, job_key: str) -> None:
        """The card's message is gone from Slack (deleted): the next row posts a new one."""
        self._update_row(
            "DELETE FROM cards WHERE channel_id = ? AND job_key = ?", (channel_id, job_key)
        )

    def dirty_cards(self, *, limit: int = 100) -> list[Card]:
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {Card.COLUMNS} FROM cards WHERE dirty = 1 "
                "ORDER BY job_key, channel_id LIMIT ?",
                (limit,),
            ).fetchall()
        return [Card.from_row(row) for row in rows]

    def mark_card_clean(self, *, channel_id: str, job_key: str, card_version: int) -> bool:
        """Clean only if nothing marked the card dirty since `card_version` was read."""
        return (
            self._update_row(
                "UPDATE cards SET dirty = 0 "
                "WHERE channel_id = ? AND job_key = ? AND card_version = ?",
                (channel_id, job_key, card_version),
            )
            > 0
        )

    def mark_card_dirty(self, *, channel_id: str, job_key: str) -> None:
        self._update_row(
            "UPDATE cards SET dirty = 1, card_version = card_version + 1 "
            "WHERE channel_id = ? AND job_key = ?",
            (channel_id, job_key),
        )

    # -- health -----------------------------------------------------------------------

    def ping(self) -> bool:
        """True if the database answers a read and accepts a write; never raises."""
        try:
            with self._write() as conn:
                conn.execute("SELECT 1").fetchone()
                conn.execute("UPDATE migrations SET applied_at = applied_at WHERE 0")
        except StoreUnavailable as err:
            log.debug("store ping failed: %s", err)
            return False
        return True

    def close(self) -> None:
        with self._lock, _unavailable():
            self.db.close()
