"""Start-up guards: the database's instance lock, and a read-only database refused at start
(issue 19, items 2 and 8)."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from bot.app.startup import InstanceLock, InstanceLocked, check_writable
from store import Store, StoreUnavailable
from tests.test_process import REQUIRED, refused_run


def test_the_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    db = tmp_path / "data" / "bot.db"
    first, second = InstanceLock(db), InstanceLock(db)
    assert first.try_acquire() and first.held
    assert first.path == tmp_path / "data" / "bot.db.lock"
    assert not second.try_acquire()
    with pytest.raises(InstanceLocked) as caught:
        second.acquire()
    assert caught.value.pid == os.getpid()
    assert str(caught.value).startswith(f"another mathfi-bot holds {db} (pid {os.getpid()});")
    first.release()
    second.acquire()
    assert second.holder() == os.getpid()
    second.release()
    assert first.path.exists()  # never deleted: see the module's docstring
    # owner-only, like the store's own files and folders
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.path.parent.stat().st_mode) == 0o700


def test_the_lock_of_a_uri_database_sits_beside_its_file(tmp_path: Path) -> None:
    lock = InstanceLock(Path(f"file:{tmp_path}/bot.db?mode=ro"))
    assert lock.path == tmp_path / "bot.db.lock"


async def test_a_standby_waits_until_the_lock_goes_or_it_is_stopped(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    holder, standby = InstanceLock(db), InstanceLock(db)
    holder.acquire()
    stop = asyncio.Event()
    waiting = asyncio.create_task(standby.wait_for(stop, every=0.01))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    holder.release()
    assert await asyncio.wait_for(waiting, timeout=2) is True
    assert standby.held
    stopped = asyncio.Event()
    stopped.set()
    assert await InstanceLock(db).wait_for(stopped, every=0.01) is False
    standby.release()


def test_a_lock_file_that_cannot_be_created_is_a_database_problem(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreUnavailable, match="cannot open the lock file"):
        InstanceLock(blocker / "bot.db").try_acquire()


def test_a_read_only_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    Store(db).close()
    check_writable(db)  # writable: no complaint
    with pytest.raises(StoreUnavailable, match=r"is read-only \(attempt to write a readonly"):
        check_writable(Path(f"file:{db}?mode=ro"))


async def test_run_on_a_read_only_database_refuses_in_one_line(tmp_path: Path) -> None:
    """Opened read-only (as a read-only file, folder or mount would be): before, the service
    started and only /healthz said 503."""
    db = tmp_path / "bot.db"
    Store(db).close()
    line = await refused_run(
        tmp_path, **REQUIRED, DATABASE_PATH=f"file:{db}?mode=ro", HTTP_PORT="0"
    )
    assert line.startswith("mathfi-bot: the database (DATABASE_PATH) cannot be used: ")
    assert "is read-only" in line
