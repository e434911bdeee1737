"""Group commit: the changed polls that finish in the same turn of the event loop share one
SQLite transaction (a write per poll would cap the poller at the disk's fsync rate)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from store import Store, StoreUnavailable
from store.db import PollRecord, refused_row


@dataclass(frozen=True)
class _Queued:
    poll: PollRecord
    written: Callable[[int], None]
    refused: Callable[[StoreUnavailable], None]
    done: asyncio.Future[None]


class GroupCommit:
    """Changed polls that finish in the same turn of the event loop share one transaction.

    `record` queues a poll and returns once it is written or refused. What to do then is
    given as callbacks that the flush itself runs, so a poll cancelled while it waits
    cannot leave the database and the poller's memory disagreeing. One bad poll never
    fails its neighbours (see `_write`).
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: list[_Queued] = []

    async def record(
        self,
        poll: PollRecord,
        *,
        written: Callable[[int], None],
        refused: Callable[[StoreUnavailable], None],
    ) -> None:
        loop = asyncio.get_running_loop()
        if not self._queue:
            loop.call_soon(self._flush)
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append(_Queued(poll, written, refused, done))
        await done

    def _write(self, polls: list[PollRecord]) -> list[int | StoreUnavailable]:
        """The batch in one transaction. If SQLite refused a row, each poll is tried on its
        own; if the database itself failed (locked, full...), every poll gets that error
        at once rather than waiting out the busy timeout one by one."""
        try:
            return list(self._store.record_polls(polls))
        except StoreUnavailable as err:
            if len(polls) == 1 or not refused_row(err):
                return [err] * len(polls)
        except Exception:
            if len(polls) == 1:
                raise
        return [self._write([poll])[0] for poll in polls]

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        try:
            outcomes = self._write([entry.poll for entry in batch])
        except Exception as err:  # not the database's refusal: a bug, told to every poll
            for entry in batch:
                _settle(entry.done, err)
            return
        for entry, outcome in zip(batch, outcomes, strict=True):
            try:
                if isinstance(outcome, StoreUnavailable):
                    entry.refused(outcome)
                else:
                    entry.written(outcome)
            except Exception as err:  # the poll that waits logs it
                _settle(entry.done, err)
            else:
                _settle(entry.done, None)


def _settle(done: asyncio.Future[None], error: Exception | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
