"""A compacted job's ended watchers, folded into its archive row (issue #16).

Once a compacted job (store/compact.py) has no active subscription left (a disabled one
is active), no card still to draw and nothing to send or verify, `fold_job` moves its
subscription and card rows, every column, into the job's `job_archive` row (the same
deflated JSON), and writes the latest end of those subscriptions on the job
(`watched_until`): the job retention's clock still starts when the last watcher left. A
subscription and a card with their indexes cost ~450 B a watcher; folded, ~60 B.

Nothing a reader asks changes:

- `get_subscription`, `subscription_owner` and `get_card` of the job fall back to the
  folded rows (`folded_row`): a Retrain click on an old card still takes the ended
  subscription's mention and events, a note still goes in the old card's thread;
- the reads of active subscriptions (list, digest, Home, followers, limits, delivery)
  never saw ended ones; an unsubscribe, mute or refresh of an ended one does nothing;
- a write that needs the rows puts them back first (`unfold_job`, in the write's own
  transaction): `subscribe` (a resubscribe revives the old card, as before),
  `save_card`, `forget_card`, `mark_card_dirty`.

`subscription_by_id` does not look in the archive (nothing indexes a folded id): a Home
button of a subscription that ended before its job was folded is refused as "no such
subscription" instead of "not the clicker's" (both refused, the view redrawn).

The job holding the newest subscription is never folded: SQLite gives a new row the
largest id + 1, so while that row stays, no folded id is given to another subscription
(and `unfold_job` takes a fresh id should one ever be).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from store.compact import Watchers, pack, unpack, unpack_watchers

FOLDED_TABLES = ("subscriptions", "cards")

# What makes a job's watchers foldable: every subscription ended, and not the table's
# newest; no card to draw (as `dirty_cards` sees them), no row to send or verify. `:key`
# is the job. (`+c.dirty`: the job's cards by their job, not every dirty card by `dirty`:
# 10x the round's CPU at 1,000 jobs a day.)
_UNWATCHED = (
    "max(active) = 0 AND max(id) < (SELECT max(id) FROM subscriptions) "
    "AND NOT EXISTS (SELECT 1 FROM cards c WHERE c.job_key = :key AND +c.dirty = 1 "
    "AND c.unwatched_shown = 0) "
    "AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.job_key = :key "
    "AND (o.state IN ('pending', 'sending') OR o.verify_at IS NOT NULL))"
)
# Compacted jobs ('' is `store.compact.COMPACTED`) whose watchers are foldable; the
# archive row first (a small index), to leave the jobs that still wait for compaction.
FOLDABLE_JOBS = (
    "SELECT k.job_key FROM (SELECT job_key FROM subscriptions s GROUP BY job_key HAVING "
    "max(active) = 0 AND EXISTS (SELECT 1 FROM job_archive a WHERE a.job_key = s.job_key) "
    f"AND {_UNWATCHED.replace(':key', 's.job_key')}) k "
    "JOIN jobs j ON j.job_key = k.job_key AND j.snapshot_json = '' LIMIT :limit"
)


def foldable(conn: sqlite3.Connection, job_key: str) -> bool:
    """Whether the job's watchers can be folded (it has some, and they are all gone)."""
    found = conn.execute(
        f"SELECT 1 FROM subscriptions WHERE job_key = :key GROUP BY job_key HAVING {_UNWATCHED}",
        {"key": job_key},
    )
    return found.fetchone() is not None


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    names = [str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")]
    return [name for name in names if name != "job_key"]


def _archive(conn: sqlite3.Connection, job_key: str) -> bytes | None:
    row = conn.execute("SELECT data FROM job_archive WHERE job_key = ?", (job_key,)).fetchone()
    return None if row is None else bytes(row[0])


def take_watchers(conn: sqlite3.Connection, job_key: str) -> Watchers:
    """Inside the caller's transaction: the job's subscriptions and cards, every column,
    deleted from their tables; the latest end of those subscriptions on the job."""
    watchers: Watchers = {}
    for table in FOLDED_TABLES:
        columns = _columns(conn, table)
        rows = conn.execute(
            f"SELECT {', '.join(columns)} FROM {table} WHERE job_key = ? ORDER BY rowid",
            (job_key,),
        )
        watchers[table] = [columns, *(list(row) for row in rows)]
    (until,) = conn.execute(
        "SELECT max(coalesce(ended_at, 0)) FROM subscriptions WHERE job_key = ?", (job_key,)
    ).fetchone()
    conn.execute("UPDATE jobs SET watched_until = ? WHERE job_key = ?", (until, job_key))
    conn.execute("DELETE FROM cards WHERE job_key = ?", (job_key,))
    conn.execute("DELETE FROM subscriptions WHERE job_key = ?", (job_key,))
    return watchers


def fold_job(conn: sqlite3.Connection, job_key: str) -> bool:
    """Inside the caller's transaction: move a compacted job's subscriptions and cards
    into its archive row (False, nothing done, if it has no archive row or is folded)."""
    data = _archive(conn, job_key)
    if data is None or unpack_watchers(data) is not None:
        return False
    snapshot, points = unpack(data)
    _rewrite(conn, job_key, pack(snapshot, points, take_watchers(conn, job_key)))
    return True


def unfold_job(conn: sqlite3.Connection, job_key: str) -> bool:
    """Inside the caller's (write) transaction: put the job's folded subscriptions and
    cards back as they were; False if none are folded. (`watched_until` stays: it is only
    read for a job without subscription rows, and the next fold writes it again.)"""
    data = _archive(conn, job_key)
    watchers = None if data is None else unpack_watchers(data)
    if data is None or watchers is None:
        return False
    for table in FOLDED_TABLES:
        columns, *rows = watchers[table]
        for values in rows:
            row = dict(zip(columns, values, strict=True), job_key=job_key)
            if table == "subscriptions" and _id_taken(conn, row["id"]):
                row["id"] = None  # given to another subscription meanwhile: a fresh one
            names = ", ".join(row)
            marks = ", ".join("?" * len(row))
            conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", tuple(row.values()))
    snapshot, points = unpack(data)
    _rewrite(conn, job_key, pack(snapshot, points))
    return True


def _rewrite(conn: sqlite3.Connection, job_key: str, data: bytes) -> None:
    """The archive row, deleted and inserted again at the end of the table: grown in place,
    rows split their pages (job_archive kept a third of its pages empty in
    bench/retention.py); appended, they fill new pages and the old ones are merged."""
    conn.execute("DELETE FROM job_archive WHERE job_key = ?", (job_key,))
    conn.execute("INSERT INTO job_archive (job_key, data) VALUES (?, ?)", (job_key, data))


def _id_taken(conn: sqlite3.Connection, subscription_id: object) -> bool:
    found = conn.execute("SELECT 1 FROM subscriptions WHERE id = ?", (subscription_id,))
    return found.fetchone() is not None


def folded_row(
    conn: sqlite3.Connection, table: str, *, channel_id: str, job_key: str, columns: str
) -> tuple[Any, ...] | None:
    """The folded row of (channel, job) in `table` (subscriptions or cards), its values in
    the order of `columns` (comma-separated names); None when there is none."""
    data = _archive(conn, job_key)
    watchers = None if data is None else unpack_watchers(data)
    if watchers is None:
        return None
    names, *rows = watchers[table]
    for values in rows:
        row = dict(zip(names, values, strict=True), job_key=job_key)
        if row["channel_id"] == channel_id:
            return tuple(row.get(name.strip()) for name in columns.split(","))
    return None
