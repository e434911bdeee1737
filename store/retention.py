"""Retention: what the database forgets, so that it stops growing.

- Sent and dead outbox rows older than the outbox retention (7 days in the service):
  `prune_outbox`. Pending and sending rows are never pruned, whatever their age.
- Finished jobs, once terminal for the outbox retention (nothing more is sent about them):
  `compact_jobs` keeps their snapshot and the few history points their card draws in one
  small archive row, and drops their other history rows (store/compact.py: what every
  reader still gets); once nobody watches such a job, its ended subscriptions and cards
  are folded into that row too (store/fold.py). A compacted job costs ~1.3 KB instead of
  ~16 KB until the job retention forgets it.
- Jobs nobody has watched for the job retention (30 days): no active subscription (a
  disabled one counts as active: `list` still shows it), no subscription ended since
  (folded ones included), no change since, and no unsent outbox row. Such a job goes
  whole with its history, its cards, its ended subscriptions and its sent rows:
  `prune_jobs`. A later `subscribe` stores a fresh snapshot as it does for a new job;
  since none of the job's outbox rows is left, its versions can start again at 1
  without meeting an old dedupe key.
- The free pages this leaves are given back to the file system: `vacuum` (incremental
  auto-vacuum, turned on by migration 2), a few thousand pages a call.

Each method is ONE short transaction over a bounded batch and says whether more is
waiting, so the caller (the service, on the store's thread) loops and other calls get in
between batches: no long write lock. `database_size` is for `/metrics`.
"""

from __future__ import annotations

import sqlite3

from store.compact import compact_job
from store.connection import StoreConnection
from store.fold import FOLDABLE_JOBS, fold_job, foldable, take_watchers
from store.records import DatabaseSize, Pruned

OUTBOX_BATCH = 500  # outbox rows per transaction (payloads are ~1 KB)
JOB_BATCH = 100  # jobs per transaction (each with up to ~200 history points)
COMPACT_BATCH = 50  # jobs per transaction (each: read and delete ~100-250 history rows)
VACUUM_PAGES = 2048  # pages given back per call (8 MB at 4 KB pages)

_OLD_OUTBOX = "SELECT id FROM outbox WHERE state IN ('sent', 'dead') AND updated_at < ? LIMIT ?"
# Terminal jobs not compacted yet (the partial index `jobs_to_compact`, migration 12)
# whose last change is older than the cutoff and that have nothing left to send. ('' is
# `store.compact.COMPACTED`, written out: the planner matches the index's WHERE by text.)
_FINISHED_JOBS = (
    "SELECT j.job_key FROM jobs j WHERE j.terminal = 1 AND j.snapshot_json != '' "
    "AND j.updated_at < :cutoff AND NOT EXISTS (SELECT 1 FROM outbox o "
    "WHERE o.job_key = j.job_key AND o.state IN ('pending', 'sending')) "
    "ORDER BY j.updated_at LIMIT :limit"
)
# Candidates from the subscriptions (small rows): jobs whose every subscription ended
# before the cutoff, or whose folded ones did (`watched_until`, store/fold.py); then the
# job's own last change, and no unsent row of it.
_UNWATCHED_JOBS = (
    "SELECT j.job_key FROM jobs j WHERE j.job_key IN (SELECT job_key FROM subscriptions "
    "GROUP BY job_key HAVING max(active) = 0 AND max(coalesce(ended_at, 0)) < :cutoff "
    "UNION ALL SELECT job_key FROM jobs WHERE job_key NOT IN (SELECT job_key FROM subscriptions) "
    "AND coalesce(watched_until, 0) < :cutoff) "
    "AND j.updated_at < :cutoff AND NOT EXISTS (SELECT 1 FROM outbox o "
    "WHERE o.job_key = j.job_key AND o.state IN ('pending', 'sending')) LIMIT :limit"
)
# Children first: history, cards and subscriptions refer to the job (foreign keys); the
# job's on-call alerts go with it (they refer to its subscriptions and outbox rows).
_FORGET_JOB = (
    "DELETE FROM alerts WHERE job_key = ?",
    "DELETE FROM performance_history WHERE job_key = ?",
    "DELETE FROM job_archive WHERE job_key = ?",
    "DELETE FROM cards WHERE job_key = ?",
    "DELETE FROM subscriptions WHERE job_key = ?",
    "DELETE FROM outbox WHERE job_key = ?",
    "DELETE FROM jobs WHERE job_key = ?",
)


class RetentionStore(StoreConnection):
    def prune_outbox(
        self, *, retention: float, limit: int = OUTBOX_BATCH, now: float | None = None
    ) -> Pruned:
        """Delete up to `limit` sent or dead rows last changed more than `retention`
        seconds ago."""
        cutoff = self._now(now) - retention
        with self._write() as conn:
            ids = [row[0] for row in conn.execute(_OLD_OUTBOX, (cutoff, limit + 1))]
            conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids[:limit]])
        return Pruned(count=min(len(ids), limit), more=len(ids) > limit)

    def compact_jobs(
        self, *, after: float, limit: int = COMPACT_BATCH, now: float | None = None
    ) -> Pruned:
        """Compact up to `limit` jobs terminal (and unchanged) for more than `after`
        seconds with no unsent row (store/compact.py), oldest first; then fold the ended
        watchers of up to `limit` compacted jobs nobody watches (store/fold.py). `count`:
        the jobs compacted or folded."""
        cutoff = self._now(now) - after
        with self._write() as conn:
            keys = [
                row[0]
                for row in conn.execute(_FINISHED_JOBS, {"cutoff": cutoff, "limit": limit + 1})
            ]
            for key in keys[:limit]:  # nobody watches it: written once, folded
                compact_job(conn, key, take_watchers(conn, key) if foldable(conn, key) else None)
            unwatched = [row[0] for row in conn.execute(FOLDABLE_JOBS, {"limit": limit + 1})]
            folded = sum(fold_job(conn, key) for key in unwatched[:limit])
        return Pruned(
            count=min(len(keys), limit) + folded,
            more=len(keys) > limit or len(unwatched) > limit,
        )

    def prune_jobs(
        self, *, retention: float, limit: int = JOB_BATCH, now: float | None = None
    ) -> Pruned:
        """Forget up to `limit` jobs nobody has watched for `retention` seconds (see the
        module's docstring for what that means and what goes with them)."""
        cutoff = self._now(now) - retention
        with self._write() as conn:
            keys = [
                row[0]
                for row in conn.execute(_UNWATCHED_JOBS, {"cutoff": cutoff, "limit": limit + 1})
            ]
            for statement in _FORGET_JOB:
                conn.executemany(statement, [(key,) for key in keys[:limit]])
        return Pruned(count=min(len(keys), limit), more=len(keys) > limit)

    def vacuum(self, *, pages: int = VACUUM_PAGES) -> Pruned:
        """Give up to `pages` free pages back to the file system (incremental vacuum).

        The file itself shrinks when the WAL is next checkpointed (SQLite does it every
        1,000 pages written; this call asks for a passive one too)."""
        with self._read() as conn:
            before = _pragma(conn, "freelist_count")
            # executescript: the pragma frees one page per step, and only sqlite3_exec
            # steps it to the end (execute() stops after the first).
            conn.executescript(f"PRAGMA incremental_vacuum({int(pages)})")
            after = _pragma(conn, "freelist_count")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        return Pruned(count=before - after, more=after > 0 and after < before)

    def database_size(self) -> DatabaseSize:
        """Bytes of the database (page_count * page_size) and of its free pages."""
        with self._read() as conn:
            size = _pragma(conn, "page_size")
            return DatabaseSize(
                bytes=_pragma(conn, "page_count") * size,
                free_bytes=_pragma(conn, "freelist_count") * size,
            )


def _pragma(conn: sqlite3.Connection, name: str) -> int:
    return int(conn.execute(f"PRAGMA {name}").fetchone()[0])
