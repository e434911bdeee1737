"""What must hold before `mathfi-bot run` starts anything: it is the only active instance on
its database, and it can write to that database.

One instance per database: an exclusive `flock` on a file beside the database
(`<DATABASE_PATH>.lock`), taken before the port, the store or any loop. The kernel drops it
when the process ends, however it ends (SIGKILL included), so it is never stale, and the
file is never deleted (deleting it would let a third process lock a new file while a second
still waits on the old one). The file holds the holder's pid for the refusal message.
`mathfi-bot check` does not take it: it only looks at the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
from pathlib import Path

from store import StoreUnavailable

log = logging.getLogger(__name__)


class InstanceLocked(Exception):
    """Another mathfi-bot holds the database."""

    def __init__(self, database: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"another mathfi-bot holds {database} ({holder}); stop it first, or set "
            "STANDBY=true to wait for it and take over when it stops"
        )
        self.database, self.pid = database, pid


class InstanceLock:
    """The exclusive lock of one database: `acquire`, or `wait_for` it as a standby."""

    def __init__(self, database: Path) -> None:
        self.database = database
        file = _file_of(database)
        self.path = file.with_name(file.name + ".lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; never blocks."""
        if self._fd is not None:
            return True
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as err:
            os.close(fd)
            raise StoreUnavailable(f"cannot lock {self.path}: {err.strerror}") from err
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def acquire(self) -> None:
        """Take the lock, or raise InstanceLocked naming the holder."""
        if not self.try_acquire():
            raise InstanceLocked(self.database, self.holder())

    async def wait_for(self, stop: asyncio.Event, *, every: float = 0.25) -> bool:
        """Stand by until the lock is free (True, now held) or `stop` is set (False)."""
        while not self.try_acquire():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)
            if stop.is_set():
                return False
        return True

    def holder(self) -> int | None:
        """The pid written by the holder (None when unreadable, e.g. not yet written)."""
        with contextlib.suppress(OSError, ValueError):
            return int(self.path.read_text(encoding="ascii").strip())
        return None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _open(self) -> int:
        """Owner-only, like the store's files: missing folders 0700, the file 0600 (the lock
        is taken before the store opens, so it may be the one creating the folder)."""
        parent = self.path.parent
        try:
            missing = [folder for folder in (parent, *parent.parents) if not folder.exists()]
            for folder in reversed(missing):
                folder.mkdir(mode=0o700, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise StoreUnavailable(
                f"cannot open the lock file {self.path}: {err.strerror} "
                "(the folder of DATABASE_PATH must be writable)"
            ) from err


def _file_of(database: Path) -> Path:
    """The file behind DATABASE_PATH, which may be an SQLite `file:` URI."""
    text = str(database)
    if text.startswith("file:"):
        return Path(text.removeprefix("file:").partition("?")[0])
    return database


def check_writable(database: Path, *, timeout: float = 2.0) -> None:
    """Raise StoreUnavailable when SQLite refuses to write to the (opened, migrated)
    database: a read-only file, folder or mount. A database merely locked by another
    process is only logged: the service rides that out."""
    text = str(database)
    try:
        conn = sqlite3.connect(text, uri=text.startswith("file:"), timeout=timeout)
    except sqlite3.Error as err:
        raise StoreUnavailable(str(err)) from err
    try:
        conn.isolation_level = None
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE migrations SET applied_at = applied_at WHERE 0")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as err:
        message = str(err)
        if "locked" in message or "busy" in message:
            log.warning("the database is locked by another process at start (%s)", message)
            return
        if "readonly" in message or "read-only" in message:
            raise StoreUnavailable(
                f"{database} is read-only ({message}); the bot writes to it: check the "
                "permissions of the file and of its folder, and that the disk is mounted "
                "read-write"
            ) from err
        raise StoreUnavailable(message) from err
    finally:
        conn.close()
