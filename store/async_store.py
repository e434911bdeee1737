"""AsyncStore: the Store on a thread of its own, so SQLite never blocks the event loop.

The single-writer pattern of datasette's `Database.execute_write_fn`: one dedicated thread
opens the `Store` (its connection belongs to that thread), takes calls from a queue and
runs them one at a time, in the order they were made. A coroutine awaits its call; what the
call returns or raises (`StoreUnavailable`, `SubscriptionLimitReached`, ...) comes back to
that coroutine. While a call waits on SQLite (another process's lock, a slow disk), the
loop goes on; only calls queued behind it wait.

Every public method of `Store` is here under the same name and signature, returning an
awaitable; `run(fn)` runs several calls as one turn of the thread. A call whose awaiting
coroutine is cancelled before the thread reaches it is skipped; once started it completes.
`close()` runs the calls already queued, closes the connection and joins the thread.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from store.connection import BUSY_TIMEOUT_MS
from store.db import HISTORY_KEEP, Store
from store.records import StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")

_Call = tuple[Callable[[Store], Any], "Future[Any]"]


def _on_thread(
    method: Callable[Concatenate[Store, P], T],
) -> Callable[Concatenate[AsyncStore, P], Coroutine[Any, Any, T]]:
    """`Store.method`, run on the store's thread and awaited: same arguments, same result."""

    @functools.wraps(method)
    async def call(self: AsyncStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.run(lambda store: method(store, *args, **kwargs))

    return call


class AsyncStore:
    """Open with `await AsyncStore.open(path, ...)` (the arguments of `Store`); use it from
    one event loop."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float],
        busy_timeout_ms: int,
        history_keep: int,
    ) -> None:
        """Private: `open` builds it, starts the thread and waits for the store to open."""
        self._open: Callable[[], Store] = lambda: Store(
            path, clock=clock, busy_timeout_ms=busy_timeout_ms, history_keep=history_keep
        )
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._opened: Future[None] = Future()
        self._closed: Future[None] = Future()
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="store", daemon=True)

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        history_keep: int = HISTORY_KEEP,
    ) -> AsyncStore:
        """Start the thread and open the store on it; raises what `Store(...)` raises."""
        self = cls(path, clock=clock, busy_timeout_ms=busy_timeout_ms, history_keep=history_keep)
        self._thread.start()
        try:
            await _wait(self._opened)
        except BaseException:
            await self.close()
            raise
        return self

    async def run(self, fn: Callable[[Store], T]) -> T:
        """Run `fn(store)` on the store's thread, after every call made before it."""
        if self._closing:
            raise StoreUnavailable("the store is closed")
        done: Future[T] = Future()
        self._calls.put((fn, done))
        return await _wait(done)

    async def close(self) -> None:
        """Finish the queued calls, close the connection, join the thread. Idempotent."""
        if not self._closing:
            self._closing = True
            self._calls.put(None)
        try:
            await _wait(self._closed)
        finally:
            self._thread.join()  # the thread has nothing left to do but return

    # -- the thread -------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            store = self._open()
        except BaseException as err:
            self._opened.set_exception(err)
            self._closed.set_result(None)
            return
        self._opened.set_result(None)
        while (item := self._calls.get()) is not None:
            fn, done = item
            if not done.set_running_or_notify_cancel():
                continue  # its coroutine was cancelled before the call started
            try:
                done.set_result(fn(store))
            except BaseException as err:
                done.set_exception(err)
        try:
            store.close()
        except BaseException as err:
            self._closed.set_exception(err)
        else:
            self._closed.set_result(None)

    # -- the Store's methods, awaited -------------------------------------------------

    subscribe = _on_thread(Store.subscribe)
    unsubscribe = _on_thread(Store.unsubscribe)
    unsubscribe_all = _on_thread(Store.unsubscribe_all)
    list_subscriptions = _on_thread(Store.list_subscriptions)
    get_subscription = _on_thread(Store.get_subscription)
    count_active = _on_thread(Store.count_active)
    count_all_active = _on_thread(Store.count_all_active)
    set_muted_until = _on_thread(Store.set_muted_until)
    disable_channel = _on_thread(Store.disable_channel)
    subscriptions_for_job = _on_thread(Store.subscriptions_for_job)

    get_job = _on_thread(Store.get_job)
    jobs_to_watch = _on_thread(Store.jobs_to_watch)
    watched_keys = _on_thread(Store.watched_keys)
    record_poll = _on_thread(Store.record_poll)
    record_polls = _on_thread(Store.record_polls)
    record_error = _on_thread(Store.record_error)
    history = _on_thread(Store.history)

    enqueue = _on_thread(Store.enqueue)
    due_outbox = _on_thread(Store.due_outbox)
    mark_sending = _on_thread(Store.mark_sending)
    claim_carried = _on_thread(Store.claim_carried)
    carried = _on_thread(Store.carried)
    queued_jobs = _on_thread(Store.queued_jobs)
    queued_by_priority = _on_thread(Store.queued_by_priority)
    mark_sent = _on_thread(Store.mark_sent)
    mark_call_started = _on_thread(Store.mark_call_started)
    rows_to_verify = _on_thread(Store.rows_to_verify)
    set_verify_at = _on_thread(Store.set_verify_at)
    mark_retry = _on_thread(Store.mark_retry)
    mark_dead = _on_thread(Store.mark_dead)
    dead_channel_rows = _on_thread(Store.dead_channel_rows)
    rows_in_state = _on_thread(Store.rows_in_state)
    outbox_counts = _on_thread(Store.outbox_counts)
    get_outbox_row = _on_thread(Store.get_outbox_row)

    get_card = _on_thread(Store.get_card)
    save_card = _on_thread(Store.save_card)
    forget_card = _on_thread(Store.forget_card)
    dirty_cards = _on_thread(Store.dirty_cards)
    mark_card_clean = _on_thread(Store.mark_card_clean)
    mark_card_dirty = _on_thread(Store.mark_card_dirty)
    mark_unwatched_shown = _on_thread(Store.mark_unwatched_shown)

    prune_outbox = _on_thread(Store.prune_outbox)
    compact_jobs = _on_thread(Store.compact_jobs)
    prune_jobs = _on_thread(Store.prune_jobs)
    vacuum = _on_thread(Store.vacuum)
    database_size = _on_thread(Store.database_size)
    begin_action = _on_thread(Store.begin_action)
    refuse_action = _on_thread(Store.refuse_action)
    finish_action = _on_thread(Store.finish_action)
    expire_requested = _on_thread(Store.expire_requested)
    get_action = _on_thread(Store.get_action)
    recent_actions = _on_thread(Store.recent_actions)
    set_digest = _on_thread(Store.set_digest)
    digest_off = _on_thread(Store.digest_off)
    get_digest = _on_thread(Store.get_digest)
    active_digests = _on_thread(Store.active_digests)
    digest_jobs = _on_thread(Store.digest_jobs)
    record_digest = _on_thread(Store.record_digest)
    job_origin = _on_thread(Store.job_origin)

    open_alerts = _on_thread(Store.open_alerts)
    count_open_alerts = _on_thread(Store.count_open_alerts)
    due_alerts = _on_thread(Store.due_alerts)
    page_alert = _on_thread(Store.page_alert)
    acknowledge_alert = _on_thread(Store.acknowledge_alert)

    subscription_owner = _on_thread(Store.subscription_owner)
    subscription_by_id = _on_thread(Store.subscription_by_id)
    followers = _on_thread(Store.followers)
    home_items = _on_thread(Store.home_items)
    home_opened = _on_thread(Store.home_opened)
    get_home_view = _on_thread(Store.get_home_view)
    homes_due = _on_thread(Store.homes_due)
    home_published = _on_thread(Store.home_published)

    ping = _on_thread(Store.ping)


async def _wait(done: Future[T]) -> T:
    return await asyncio.wrap_future(done)
