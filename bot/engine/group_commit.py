"""Group commit: the changed polls that finish in the same turn of the event loop share one
SQLite transaction (a write per poll would cap the poller at the disk's fsync rate), and
one turn of the store's thread (a round trip per poll would queue them behind each other).
One batch is written at a time: the polls that finish while it is on the store's thread
wait for it and make the next batch together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from store import AsyncStore, Store, StoreUnavailable
from store.db import PollRecord, refused_row

# What one poll's part of a batch came to: its new version, the database's refusal, or
# an error of our own (a bug) that belongs to that poll alone.
Outcome = int | StoreUnavailable | Exception


@dataclass(frozen=True)
class _Queued:
    prepare: Callable[[Store], PollRecord]
    written: Callable[[int], None]
    refused: Callable[[StoreUnavailable], None]
    done: asyncio.Future[None]


class GroupCommit:
    """Changed polls that finish in the same turn of the event loop share one transaction;
    those that finish while a batch is being written make up the next one.

    `record` queues a poll and returns once it is written or refused. The poll is given as
    `prepare(store)`, run on the store's thread just before the batch's transaction: the
    reads a poll's rows depend on (who subscribes to the job) and the writes share one
    round trip to that thread. What to do once written or refused is given as callbacks
    that the flush itself runs, so a poll cancelled while it waits cannot leave the
    database and the poller's memory disagreeing. One bad poll never fails its neighbours
    (see `_write`).
    """

    def __init__(self, store: AsyncStore) -> None:
        self._store = store
        self._queue: list[_Queued] = []
        self._flushing: asyncio.Task[None] | None = None

    async def record(
        self,
        prepare: Callable[[Store], PollRecord],
        *,
        written: Callable[[int], None],
        refused: Callable[[StoreUnavailable], None],
    ) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append(_Queued(prepare, written, refused, done))
        if self._flushing is None:
            # A task, not a `call_soon`: it starts on the next turn, after every poll that
            # finishes in this one has queued itself, and then awaits the store once per
            # batch. Before one batch was written at a time, the loop went on answering
            # while a batch was on the store's thread, and the next poll to finish
            # started a batch of its own: 0.15-0.21 commits per poll instead of 0.05, each
            # a commit and a round trip to the thread (docs/benchmarks.md, issue 10).
            self._flushing = loop.create_task(self._flush_all(), name="group-commit")
        await done

    async def _flush_all(self) -> None:
        try:
            while self._queue:
                await self._flush()
        finally:  # normally with nothing queued; cancelled (shut down): nothing will write
            self._flushing = None
            waiting, self._queue = self._queue, []
            for entry in waiting:
                entry.done.cancel()

    async def _flush(self) -> None:
        batch, self._queue = self._queue, []
        prepares = [entry.prepare for entry in batch]
        try:
            outcomes = await self._store.run(lambda store: _write(store, prepares))
        except Exception as err:  # the store's thread itself failed (closed): every poll
            outcomes = [err] * len(batch)
        for entry, outcome in zip(batch, outcomes, strict=True):
            try:
                if isinstance(outcome, StoreUnavailable):
                    entry.refused(outcome)
                elif isinstance(outcome, Exception):
                    raise outcome
                else:
                    entry.written(outcome)
            except Exception as err:  # the poll that waits logs it
                _settle(entry.done, err)
            else:
                _settle(entry.done, None)


def _write(store: Store, prepares: list[Callable[[Store], PollRecord]]) -> list[Outcome]:
    """On the store's thread: prepare each poll (a poll whose preparation fails fails
    alone), then write the prepared ones in one transaction."""
    outcomes: list[Outcome | None] = []
    polls: list[PollRecord] = []
    for prepare in prepares:
        try:
            polls.append(prepare(store))
            outcomes.append(None)
        except Exception as err:
            outcomes.append(err)
    written = iter(_record(store, polls))
    return [next(written) if outcome is None else outcome for outcome in outcomes]


def _record(store: Store, polls: list[PollRecord]) -> list[Outcome]:
    """The batch in one transaction. If SQLite refused a row, each poll is tried on its
    own; if the database itself failed (locked, full...), every poll gets that error at
    once rather than waiting out the busy timeout one by one."""
    if not polls:
        return []
    try:
        return list(store.record_polls(polls))
    except StoreUnavailable as err:
        if len(polls) == 1 or not refused_row(err):
            return [err] * len(polls)
    except Exception as err:
        if len(polls) == 1:
            return [err]
    return [_record(store, [poll])[0] for poll in polls]


def _settle(done: asyncio.Future[None], error: Exception | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
