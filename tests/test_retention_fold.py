"""Folding a compacted job's ended watchers (issue #16): once nobody watches a finished,
compacted job, its subscriptions and cards go into its archive row (store/fold.py); every
answer stays the same, a resubscribe revives the old card as before, and the job is still
forgotten `JOB_RETENTION` after its last watcher left. Real SQLite files in tmp_path, a
manual clock; "twin" stores run the same story, one of them compacted and folded."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from store import Store, SubscriptionChange
from store.compact import pack, unpack
from tests.test_retention import DAY, MONTH, WEEK, prune_all_jobs
from tests.test_retention_compact import compact_all, send_all
from tests.test_store import ManualClock, poll, row, subscribe


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two stores, each on its own clock, through the same story (each a `finished_job`,
    then `later` moves both clocks): the first is compacted (and folded), the second never."""
    stores = (
        Store(tmp_path / "folded.db", clock=ManualClock()),
        Store(tmp_path / "whole.db", clock=ManualClock()),
    )
    for store in stores:
        finished_job(store, clock_of(store))
    yield stores
    for store in stores:
        store.close()


def clock_of(store: Store) -> ManualClock:
    clock = store._clock  # the ManualClock the twin was opened with
    assert isinstance(clock, ManualClock)
    return clock


def later(stores: tuple[Store, ...], seconds: float) -> None:
    for store in stores:
        clock_of(store).now += seconds


def finished_job(store: Store, clock: ManualClock, job: str = "J1") -> None:
    """`job` watched from C1 (a card, muted, a mention) and from U1's DM (personal), six
    polls, finished; both unsubscribe a day later and their cards get their last edit.
    LATER, subscribed afterwards from C9, holds the newest subscription (never folded)."""
    subscribe(store, job=job, mention="<!here>", events="status")
    subscribe(store, channel="DM1", job=job, owner_user_id="U1")
    store.set_muted_until(channel_id="C1", job_key=job, until=clock.now + DAY)
    for n in range(1, 7):
        clock.now += 30
        done = n == 6
        status = "COMPLETED" if done else "RUNNING"
        poll(store, job=job, snapshot_json=f'{{"n": {n}}}', status=status, terminal=done)
    for channel in ("C1", "DM1"):
        store.save_card(channel_id=channel, job_key=job, ts=f"{channel}.ts")
    send_all(store)
    clock.now += DAY
    store.unsubscribe(channel_id="C1", job_key=job, user_id="U2")
    clock.now += 60
    store.unsubscribe(channel_id="DM1", job_key=job, user_id="U1")
    for card in store.dirty_cards():
        assert card.unwatched_at is not None
        store.mark_unwatched_shown(
            channel_id=card.channel_id, job_key=card.job_key, unwatched_at=card.unwatched_at
        )
    subscribe(store, channel="C9", job="LATER")
    send_all(store)


def rows_of(store: Store, table: str, job: str = "J1") -> int:
    sql = f"SELECT count(*) FROM {table} WHERE job_key = ?"
    return int(store.db.execute(sql, (job,)).fetchone()[0])


def answers(store: Store, job: str = "J1") -> tuple[object, ...]:
    return (
        store.get_job(job),
        store.history(job),
        [store.get_subscription(channel_id=c, job_key=job) for c in ("C1", "DM1", "C2")],
        [store.get_card(channel_id=c, job_key=job) for c in ("C1", "DM1", "C2")],
        [store.subscription_owner(channel_id=c, job_key=job) for c in ("C1", "DM1")],
        store.list_subscriptions(channel_id="C1"),
        store.subscriptions_for_job(job),
        store.digest_jobs(channel_id="C1"),
        store.home_items("U1"),
        store.followers(job),
        store.count_all_active(),
        store.dirty_cards(),
    )


def test_nobody_watching_a_compacted_job_folds_its_watchers_and_answers_the_same(
    twins: tuple[Store, Store],
) -> None:
    folded, whole = twins
    before = answers(folded)
    assert before == answers(whole)
    later(twins, WEEK)
    assert compact_all(folded) == 1  # written once: compacted and folded together
    assert rows_of(folded, "subscriptions") == 0 and rows_of(folded, "cards") == 0
    assert rows_of(whole, "subscriptions") == 2 and rows_of(whole, "cards") == 2
    assert answers(folded) == before == answers(whole)
    assert rows_of(folded, "subscriptions", "LATER") == 1  # watched: left alone


def test_a_resubscribe_revives_the_folded_card_as_before(twins: tuple[Store, Store]) -> None:
    folded, whole = twins
    later(twins, WEEK)
    compact_all(folded)
    assert rows_of(folded, "subscriptions") == 0 and rows_of(folded, "cards") == 0
    changes: dict[str, list[SubscriptionChange]] = {"folded": [], "whole": []}
    for name, store in (("folded", folded), ("whole", whole)):
        sub, created = store.subscribe(
            team_id="T1", channel_id="C1", job_key="J1", user_id="U3",
            snapshot_json='{"n": 6}', snapshot_hash="h", status="COMPLETED",
            best_performance=0.6, best_algorithm="BSEV02", terminal=True, next_poll_at=0.0,
            watch_row=row("watch:again", "C1", "J1"),
            audit=lambda change, name=name: changes[name].append(change),  # type: ignore[misc]
        )  # fmt: skip
        assert created and sub.created_by == "U3" and sub.mention is None
        card = store.get_card(channel_id="C1", job_key="J1")
        assert card is not None and card.ts == "C1.ts" and card.unwatched_at is None
    assert changes["folded"] == changes["whole"] and changes["folded"][0].before is None
    assert rows_of(folded, "subscriptions") == 2 and rows_of(folded, "cards") == 2
    assert answers(folded) == answers(whole)
    assert folded.rows_in_state("pending") == whole.rows_in_state("pending")


CARD_WRITES = {
    "save": lambda store: store.save_card(channel_id="C1", job_key="J1", ts="new.ts"),
    "forget": lambda store: store.forget_card(channel_id="DM1", job_key="J1"),
    "dirty": lambda store: store.mark_card_dirty(channel_id="C1", job_key="J1"),
}


@pytest.mark.parametrize("write", CARD_WRITES)
def test_a_card_write_on_a_folded_job_puts_its_watchers_back_first(
    twins: tuple[Store, Store], write: str
) -> None:
    folded, whole = twins
    later(twins, WEEK)
    compact_all(folded)
    assert rows_of(folded, "subscriptions") == 0 and rows_of(folded, "cards") == 0
    for store in twins:
        CARD_WRITES[write](store)
    assert rows_of(folded, "subscriptions") == 2
    assert answers(folded) == answers(whole)


def test_a_folded_id_given_to_another_subscription_meanwhile_is_not_taken_back(
    twins: tuple[Store, Store],
) -> None:
    folded, _ = twins
    later(twins, WEEK)
    compact_all(folded)
    folded.db.execute("UPDATE subscriptions SET id = 1 WHERE job_key = 'LATER'")  # J1's C1 id
    subscribe(folded, channel="C1", job="J1", n=2)
    ids = dict(folded.db.execute("SELECT channel_id, id FROM subscriptions WHERE job_key = 'J1'"))
    assert len(set(ids.values())) == 2 and 1 not in ids.values()  # LATER keeps 1
    card = folded.get_card(channel_id="C1", job_key="J1")
    assert card is not None and card.ts == "C1.ts"


def test_watched_unsettled_or_newest_watchers_are_not_folded(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = Store(tmp_path / "bot.db", clock=clock)
    jobs = ("ACTIVE", "DISABLED", "DIRTY", "UNSENT", "FOLDED", "NEWEST")
    for job in jobs:
        finished_job(store, clock, job)
    done = {"status": "COMPLETED", "terminal": True}
    subscribe(store, channel="C3", job="ACTIVE", **done)  # still watched
    subscribe(store, channel="C4", job="DISABLED", **done)
    store.disable_channel(channel_id="C4", reason="channel_not_found")  # listed: active
    subscribe(store, channel="C6", job="UNSENT", **done)  # watched while compacted
    send_all(store)
    store.mark_card_dirty(channel_id="C1", job_key="FOLDED")  # shown unwatched: never drawn
    clock.now += WEEK + DAY
    compact_all(store)
    assert {job: rows_of(store, "subscriptions", job) for job in jobs} == {
        "ACTIVE": 3, "DISABLED": 3, "DIRTY": 0, "UNSENT": 3, "FOLDED": 0, "NEWEST": 0
    }  # fmt: skip
    subscribe(store, channel="C5", job="DIRTY", **done)
    store.save_card(channel_id="C5", job_key="DIRTY", ts="C5.ts")
    store.unsubscribe(channel_id="C5", job_key="DIRTY")  # its last edit is still to come
    store.enqueue([row("late", "C1", "UNSENT")])  # a row still to send
    store.unsubscribe(channel_id="C6", job_key="UNSENT")
    subscribe(store, channel="C7", job="NEWEST", **done)
    store.unsubscribe(channel_id="C7", job_key="NEWEST")  # ended, but the newest id
    for key in [r.id for r in store.rows_in_state("pending") if r.dedupe_key != "late"]:
        store.mark_sending(key)
        store.mark_sent(key, ts="1.0")
    assert store.dirty_cards() != []
    clock.now += WEEK + DAY
    compact_all(store)
    folded = {job: rows_of(store, "subscriptions", job) == 0 for job in jobs}
    assert folded == {job: job == "FOLDED" for job in jobs}
    store.close()


def test_a_folded_job_is_forgotten_a_job_retention_after_its_last_watcher_left(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = Store(tmp_path / "bot.db", clock=clock)
    finished_job(store, clock)
    left = clock.now  # the DM's unsubscribe (the later one; LATER's subscribe since)
    clock.now += DAY
    store.unsubscribe(channel_id="C9", job_key="LATER")
    subscribe(store, channel="C9", job="NEWER")  # so that LATER may fold too
    send_all(store)
    clock.now += 20 * DAY
    compact_all(store)
    assert rows_of(store, "subscriptions") == 0  # folded
    # J1's row last changed before its watchers left: the clock is theirs, not the job's
    clock.now = left + MONTH - 60
    assert prune_all_jobs(store) == 0
    clock.now = left + MONTH + 60
    assert prune_all_jobs(store) == 1
    assert store.get_job("J1") is None
    assert store.get_subscription(channel_id="C1", job_key="J1") is None
    assert store.get_job("LATER") is not None  # its watcher left later
    store.close()


def test_rows_archived_before_the_preset_dictionary_still_read() -> None:
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)  # migration 12's rows
    old = deflate.compress(b'{"snapshot":"{}","algorithms":["A"],"history":[[0,1.5,0.25]]}')
    assert unpack(old + deflate.flush())[0] == "{}"
    assert unpack(pack("{}", []))[0] == "{}"
