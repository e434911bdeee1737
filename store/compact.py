"""A finished job's compact form (issue #16): what it keeps once nothing more can be sent
about it, long before the job retention forgets it.

Once a job has been terminal for the outbox retention (its last notifications are sent
and being pruned), `compact_job` moves its snapshot and the newest `TAIL_POINTS` points of
each algorithm's history into ONE `job_archive` row, deflated (about 0.8 KB where the
snapshot and ~100 history rows took ~16 KB); its history rows go, and its `jobs` row keeps
every column but an empty `snapshot_json`. Nothing a reader asks changes:

- the snapshot: `get_job`, `digest_jobs` and `home_items` give the archived one back
  (`restore`), byte for byte;
- the history: `history` gives the archived points with any newer rows; the card draws
  the last `TAIL_POINTS` values of each algorithm (its sparkline's width), so it draws the
  same card; the forecast only reads the history of a running job, which is never
  compacted;
- status, list, best, forecast state: the job row keeps every other column; its
  subscriptions and cards stay where they are until nobody watches the job, then they
  are folded into the same archive row (store/fold.py), and read back from it.

A later `subscribe` on a job nobody watches writes a fresh snapshot over the empty one
(then the job row's snapshot wins, and a new compaction archives it with the old points).
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from store.records import HistoryPoint, JobRecord

# The newest points kept per algorithm: the card's sparkline draws the last 12 values
# (bot.core.sparkline's width; tests/test_retention_compact.py keeps the two equal).
TAIL_POINTS = 12
COMPACTED = ""  # a compacted job's `snapshot_json`: the snapshot is in `job_archive`

_WBITS = -15  # raw deflate: no header or checksum (the row is SQLite's to keep whole)
# Deflate's preset dictionary: what every row's JSON repeats (the body's and a snapshot's
# keys, the folded tables' column names), so that a row of ~1 KB does not pay for it (the
# folded watchers of a job: ~100 B instead of ~260). Never change it: the rows were deflated
# with it. Rows deflated without one (before it) decode the same: they never refer to it.
_ZDICT = (
    b'{"snapshot":"{\\"job_key\\":\\"\\",\\"status\\":\\"COMPLETED\\",'
    b'\\"target_performance\\":0.9,\\"algorithms\\":[{\\"training_job_key\\":null,'
    b'\\"algorithm\\":\\"\\",\\"status\\":\\"COMPLETED\\",'
    b'\\"latest_performance\\":0.5,\\"recent_performances\\":[0.5]}],'
    b'\\"model_key\\":null,\\"achieved_performance\\":null,'
    b'\\"training_performance\\":null,\\"test_performance\\":null}",'
    b'"algorithms":[],"history":[[0,1.0,0.5]],"watchers":{"subscriptions":[["id","team_id",'
    b'"channel_id","created_by","created_at","min_improvement","mention","events",'
    b'"muted_until","active","disabled_reason","last_best","ended_at","broadcast",'
    b'"owner_user_id"],[1,null,"","",1.0,0.005,null,"all",null,0,null,0.5,1.0,"final",null]],'
    b'"cards":[["channel_id","ts","dirty","card_version","unwatched_at","unwatched_by",'
    b'"unwatched_shown"],["","",0,1,null,null,1]]}}'
)

# A folded job's subscriptions and cards (store/fold.py): for each table, its column names
# (job_key left out) then one list of values per row.
Watchers = dict[str, list[list[Any]]]


def pack(
    snapshot_json: str, points: Sequence[HistoryPoint], watchers: Watchers | None = None
) -> bytes:
    """The archive row's `data`: deflated JSON of the snapshot and the points in order,
    each point's algorithm as an index into `algorithms` (a tenth smaller deflated), and
    the job's folded subscriptions and cards if any (store/fold.py)."""
    names = list(dict.fromkeys(p.algorithm for p in points))
    index = {name: n for n, name in enumerate(names)}
    body: dict[str, object] = {
        "snapshot": snapshot_json,
        "algorithms": names,
        "history": [[index[p.algorithm], p.at, p.value] for p in points],
    }
    if watchers is not None:
        body["watchers"] = watchers
    deflate = zlib.compressobj(9, zlib.DEFLATED, _WBITS, zdict=_ZDICT)
    return deflate.compress(json.dumps(body, separators=(",", ":")).encode()) + deflate.flush()


def _body(data: bytes) -> dict[str, Any]:
    inflate = zlib.decompressobj(_WBITS, zdict=_ZDICT)
    body: dict[str, Any] = json.loads(inflate.decompress(data) + inflate.flush())
    return body


def unpack(data: bytes) -> tuple[str, list[HistoryPoint]]:
    body = _body(data)
    names = [str(name) for name in body["algorithms"]]
    points = [HistoryPoint(names[n], float(at), float(v)) for n, at, v in body["history"]]
    return str(body["snapshot"]), points


def unpack_watchers(data: bytes) -> Watchers | None:
    """The folded subscriptions and cards (None: the job has none folded)."""
    watchers: Watchers | None = _body(data).get("watchers")
    return watchers


def _archived(conn: sqlite3.Connection, job_key: str) -> tuple[str, list[HistoryPoint]] | None:
    row = conn.execute("SELECT data FROM job_archive WHERE job_key = ?", (job_key,)).fetchone()
    return None if row is None else unpack(row[0])


def restore(conn: sqlite3.Connection, job_key: str, snapshot_json: str) -> str:
    """The job's snapshot: the row's own, or the archived one when the row's is empty."""
    if snapshot_json != COMPACTED:
        return snapshot_json
    archived = _archived(conn, job_key)
    return archived[0] if archived is not None else snapshot_json


def restore_record(conn: sqlite3.Connection, record: JobRecord) -> JobRecord:
    if record.snapshot_json != COMPACTED:
        return record
    return replace(record, snapshot_json=restore(conn, record.job_key, record.snapshot_json))


def archived_points(conn: sqlite3.Connection, job_key: str) -> list[HistoryPoint]:
    """The history points kept by the job's last compaction (none if it has none)."""
    archived = _archived(conn, job_key)
    return [] if archived is None else archived[1]


def archived_watchers(conn: sqlite3.Connection, job_key: str) -> Watchers | None:
    row = conn.execute("SELECT data FROM job_archive WHERE job_key = ?", (job_key,)).fetchone()
    return None if row is None else unpack_watchers(row[0])


def merge(archived: Sequence[HistoryPoint], rows: Sequence[HistoryPoint]) -> list[HistoryPoint]:
    """Oldest first, as `history` orders its rows (by time, then as written: the archived
    points were written before any row that is left)."""
    if not archived:
        return list(rows)
    return sorted([*archived, *rows], key=lambda p: p.at)  # stable: archived first on a tie


def newest(points: Iterable[HistoryPoint], keep: int) -> list[HistoryPoint]:
    """The last `keep` points of each algorithm, in the order given (oldest first)."""
    kept: list[HistoryPoint] = []
    seen: dict[str, int] = {}
    for point in reversed(list(points)):
        count = seen.get(point.algorithm, 0)
        if count < keep:
            seen[point.algorithm] = count + 1
            kept.append(point)
    return kept[::-1]


def compact_job(conn: sqlite3.Connection, job_key: str, watchers: Watchers | None = None) -> None:
    """Inside the caller's transaction: archive the job's snapshot and history tail (and
    `watchers`, its folded subscriptions and cards: store/fold.py), then drop its history
    rows and empty its snapshot."""
    row = conn.execute("SELECT snapshot_json FROM jobs WHERE job_key = ?", (job_key,)).fetchone()
    if row is None or row[0] == COMPACTED:
        return
    rows = [
        HistoryPoint(*point)
        for point in conn.execute(
            "SELECT algorithm, at, value FROM performance_history WHERE job_key = ? "
            "ORDER BY at, rowid",
            (job_key,),
        )
    ]
    tail = newest(merge(archived_points(conn, job_key), rows), TAIL_POINTS)
    conn.execute(
        "INSERT INTO job_archive (job_key, data) VALUES (?, ?) "
        "ON CONFLICT (job_key) DO UPDATE SET data = excluded.data",
        (job_key, pack(row[0], tail, watchers or archived_watchers(conn, job_key))),
    )
    conn.execute("DELETE FROM performance_history WHERE job_key = ?", (job_key,))
    # `rowid = rowid` makes SQLite delete the row and insert it again instead of shrinking
    # it in place: a page left mostly empty is then merged with its neighbours (an UPDATE
    # alone never does that, and the file kept ~2 KB a compacted job: 10 % growth instead
    # of 6 % over days 20-30 in bench/retention.py).
    conn.execute(
        "UPDATE jobs SET rowid = rowid, snapshot_json = ? WHERE job_key = ?", (COMPACTED, job_key)
    )
