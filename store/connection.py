"""The store's one SQLite connection: opened, tuned, migrated, and the two ways in.

The connection belongs to the thread that opened it (sqlite3's own `check_same_thread`
holds): the synchronous `Store` is used from one thread, and `AsyncStore` (store/
async_store.py) runs it on a thread of its own so the event loop never waits on SQLite.
Every change that touches more than one row runs in ONE transaction (`BEGIN IMMEDIATE`
inside `with conn:`). Any SQLite failure leaves a method as `StoreUnavailable` with
SQLite's one-line message.

A database file and the folders the store creates for it are owner-only (0600 / 0700):
the file holds channel ids, user ids and job keys. SQLite gives its -wal and -shm files
the mode of the database file.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlite_utils import Database

from store.migrations import apply_migrations
from store.records import StoreUnavailable

log = logging.getLogger(__name__)

# Short on purpose: a write waiting on another process's lock holds up its caller (and,
# under AsyncStore, every call queued behind it on the store's thread); callers treat
# StoreUnavailable as "try again".
BUSY_TIMEOUT_MS = 250
DIR_MODE = 0o700
FILE_MODE = 0o600


@contextmanager
def unavailable() -> Iterator[None]:
    """Turn any SQLite error inside the block into `StoreUnavailable` (cause chained)."""
    try:
        yield
    except sqlite3.DatabaseError as err:
        message = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise StoreUnavailable(message) from err


def refused_row(err: StoreUnavailable) -> bool:
    """True when SQLite refused the data (a constraint or check), not the database itself
    (locked, read-only, full, I/O): retrying the same rows cannot help, other rows can."""
    return isinstance(err.__cause__, sqlite3.IntegrityError)


def create_private(path: Path) -> None:
    """Create the missing folders of `path` (0700) and the empty file itself (0600).

    An existing folder or file is left as it is. An empty file is a valid empty database.
    """
    missing = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=DIR_MODE, exist_ok=True)  # exists: another process was quicker
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def connect(path: str | Path, *, busy_timeout_ms: int) -> sqlite3.Connection:
    """`path` may be a `file:` URI (e.g. `file:/x.db?mode=ro`), used as given; otherwise
    the file and its folders are created owner-only when missing."""
    text = str(path)
    if not text.startswith("file:") and text != ":memory:":
        try:
            create_private(Path(text))
        except OSError as err:
            raise StoreUnavailable(f"cannot create {text}: {err.strerror}") from err
    # `timeout` is SQLite's busy timeout: how long a write waits for another's lock.
    conn = sqlite3.connect(text, uri=text.startswith("file:"), timeout=busy_timeout_ms / 1000)
    try:
        if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
            # A new file takes it before its first page is written (WAL would write it);
            # an existing one gets it from migration 2's VACUUM.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


class StoreConnection:
    """Opens the database (migrations applied) and hands the parts of `Store` a connection:
    `_read()` for queries, `_write()` for one transaction."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        self._clock = clock
        with unavailable():
            self.db = Database(connect(path, busy_timeout_ms=busy_timeout_ms))
            try:
                apply_migrations(self.db, now=clock())
            except BaseException:
                self.db.close()
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with unavailable():
            yield self.db.conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with unavailable():
            conn = self.db.conn
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                yield conn

    def _update_row(self, sql: str, params: tuple[object, ...]) -> int:
        """One statement in its own transaction; the number of rows it changed."""
        with self._write() as conn:
            return conn.execute(sql, params).rowcount

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

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
        with unavailable():
            self.db.close()
