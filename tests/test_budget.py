"""One budget per Slack method for the workspace (issue #18): a bucket shared by every
channel, paused for every caller by a 429, and a card rendered only once its token is
granted (never a stale render)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from functools import partial

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.metrics import Metrics
from bot.slack.api import SlackCaller
from bot.slack.budget import Bucket, Budget, BudgetConfig
from bot.slack.delivery import disable_channel
from bot.slack.live_cards import LiveCards
from simulator.slack import SlackFault, SlackSink, start_in_background
from store import Card
from tests.conftest import Env, ManualClock
from tests.test_sender import drain, tick, watch


class Sleeps:
    """A sleep that moves the manual clock, and remembers each wait."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(round(seconds, 6))
        self.clock.advance(seconds)
        await asyncio.sleep(0)


async def test_a_bucket_spaces_calls_and_a_pause_holds_every_caller() -> None:
    clock = ManualClock(1000.0)
    sleeps = Sleeps(clock)
    bucket = Bucket(1.0, burst=2, clock=clock, sleep=sleeps)
    assert bucket.available() == 2
    await bucket.acquire()
    await bucket.acquire()
    assert (bucket.available(), sleeps.waits) == (0, [])
    await bucket.acquire()  # the third waits for the rate
    assert sleeps.waits == [1.0]
    bucket.pause(5.0)
    assert bucket.available() == 0
    await asyncio.gather(bucket.acquire(), bucket.acquire())  # two callers after a 429
    assert clock() == 1001.0 + 5.0 + 1.0  # the first at the pause's end, the next 1 s later
    assert bucket.granted == 5
    with pytest.raises(ValueError):
        Bucket(0.0)


async def test_a_bucket_of_two_calls_a_second_with_a_burst_of_three() -> None:
    """A half-second interval: three calls at once, then one every half second; `space`
    spreads three sent calls over three intervals (1.5 s)."""
    clock = ManualClock(0.0)
    sleeps = Sleeps(clock)
    bucket = Bucket(2.0, burst=3, clock=clock, sleep=sleeps)
    assert bucket.available() == 3
    for _ in range(4):
        await bucket.acquire()
    assert (sleeps.waits, bucket.available()) == ([0.5], 0)
    clock.advance(0.5)
    assert bucket.available() == 1
    for _ in range(4):
        await bucket.space()
    assert sleeps.waits == [0.5, 1.5]


async def test_a_clock_that_does_not_move_holds_a_caller_three_waits_at_most() -> None:
    """A pause whose end the clock never reaches: the caller waits its slot three times,
    then goes (it must not be held for ever)."""
    clock = ManualClock(0.0)
    waits: list[float] = []

    async def stuck(seconds: float) -> None:
        waits.append(seconds)

    bucket = Bucket(1.0, clock=clock, sleep=stuck)
    bucket.pause(5.0)
    await bucket.acquire()
    assert (waits, bucket.granted) == ([5.0, 6.0, 7.0], 1)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_a_bucket_needs_a_positive_rate_and_a_burst(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match=r"^a bucket needs rate > 0 and burst >= 1$"):
        Bucket(rate, burst=burst)


async def test_each_limited_method_has_its_configured_rate_and_burst() -> None:
    """chat.update: its rate, one at a time; chat.delete and the lookups: their own rates,
    in bursts of `lookup_burst` (the two lookup methods share one bucket)."""
    clock = ManualClock(0.0)
    sleeps = Sleeps(clock)
    config = BudgetConfig(
        update_per_minute=20.0, history_per_minute=30.0, delete_per_minute=15.0, lookup_burst=2
    )
    budget = Budget(config, clock=clock, sleep=sleeps)
    assert [budget.available(m) for m in METHODS] == [1, 2, 2, 2]
    for method, wait in zip(METHODS, (3.0, 4.0, 2.0), strict=False):
        for _ in range(3):
            await budget.acquire(method)
        assert sleeps.waits[-1] == wait, method
    await budget.acquire("conversations.replies")  # the history's bucket: no token left
    assert sleeps.waits[-1] == 2.0
    assert budget.available("conversations.replies") == 0


METHODS = ("chat.update", "chat.delete", "conversations.history", "conversations.replies")


async def test_a_granted_call_goes_one_interval_after_the_last_one_sent() -> None:
    """Two slots granted 1 s apart; the first call's render was slow (it goes 0.5 s late):
    the second still goes a whole second after it, not 0.5 s."""
    clock = ManualClock(0.0)
    bucket = Bucket(1.0, clock=clock, sleep=Sleeps(clock))
    await bucket.acquire()
    await bucket.acquire()  # waits to 1.0
    clock.advance(0.5)
    await bucket.space()
    first = clock()
    await bucket.space()
    assert clock() - first == 1.0


def test_methods_without_a_workspace_limit_are_not_held() -> None:
    budget = Budget(BudgetConfig(update_per_minute=60.0))
    assert budget.available("chat.postMessage") is None
    assert budget.available("chat.update") == 1
    assert budget.bucket("conversations.history") is budget.bucket("conversations.replies")


async def test_a_429_on_chat_update_pauses_every_caller(env: Env) -> None:
    """C1's edit is refused with Retry-After 3: C2's edit, asked for right after by another
    task, waits those 3 s too (not just C1's)."""
    sleeps = Sleeps(env.clock)
    budget = Budget(clock=env.clock, sleep=sleeps)
    slack = SlackCaller(env.service.slack, metrics=(metrics := Metrics()), budget=budget)
    env.sink.add_fault(SlackFault(kind="ratelimit", method="chat.update", count=1, retry_after=3))
    key = await watch(env, "C1", "C2")
    await drain(env)
    cards = [await env.service.store.get_card(channel_id=c, job_key=key) for c in ("C1", "C2")]
    limited_at = env.clock()
    with pytest.raises(Exception, match="ratelimited"):
        await slack.call("chat.update", channel="C1", ts=cards[0].ts, text="x")  # type: ignore[union-attr]
    await slack.call("chat.update", channel="C2", ts=cards[1].ts, text="y")  # type: ignore[union-attr]
    assert env.clock() - limited_at == pytest.approx(3.0)
    sample = metrics.registry.get_sample_value(
        "mathfi_slack_ratelimited_total", {"method": "chat.update"}
    )
    assert sample == 1.0


async def test_the_update_budget_is_shared_by_every_channel(env: Env) -> None:
    """Cards of 6 channels dirty at once: one edit per 1.2 s for them all (50 a minute),
    each card once, all converge."""
    channels = [f"C{i}" for i in range(6)]
    key = await watch(env, *channels)
    await drain(env)
    for channel in channels:
        await env.service.store.mark_card_dirty(channel_id=channel, job_key=key)
    edits: list[tuple[float, str]] = []
    start = env.clock()
    for _ in range(40):
        env.clock.advance(0.2)
        edits += [
            (env.clock() - start, p["channel"]) for m, p in await tick(env) if m == "chat.update"
        ]
    assert sorted(channel for _, channel in edits) == channels
    times = [at for at, _ in edits]
    assert min(b - a for a, b in itertools.pairwise(times)) >= 1.2 - 1e-6
    assert not await env.service.store.dirty_cards()


async def test_a_card_waiting_for_its_token_is_rendered_when_it_goes(env: Env) -> None:
    """The card is picked while the job is PENDING; the budget makes it wait, the job moves
    on meanwhile: the edit sent shows the job as it is then, never the stale render."""
    key = await watch(env, "C1")
    await drain(env)
    store = env.service.store
    card = await store.get_card(channel_id="C1", job_key=key)
    assert card is not None

    async def meanwhile(seconds: float) -> None:
        env.sim.advance(key)  # PENDING -> RUNNING with four algorithms
        env.clock.advance(seconds)
        await env.service.poller.tick()

    budget = Budget(clock=env.clock, sleep=meanwhile)
    slack = SlackCaller(env.service.slack, metrics=Metrics(), budget=budget)
    cards = LiveCards(
        store,
        slack,
        metrics=Metrics(),
        pace=1.0,
        clock=env.clock,
        disable=partial(disable_channel, store),
    )
    stale = await cards.message("C1", key)
    await budget.acquire("chat.update")  # another channel's edit took the token
    before = len(env.sink.calls)
    await cards.refresh(card)
    ((method, params),) = env.sink.calls[before:]
    assert method == "chat.update"
    assert params["text"] != stale.text
    assert params["text"] == (await cards.message("C1", key)).text
    assert "RUNNING" in params["text"]


async def test_an_edit_goes_first_to_a_card_no_queued_post_will_change(env: Env) -> None:
    """One token: of two dirty cards, the one whose job still has a row queued in its
    channel (the post will make the card stale again) waits; the other goes."""
    slack = SlackCaller(env.service.slack, metrics=Metrics(), budget=Budget(clock=env.clock))
    cards = LiveCards(
        env.service.store,
        slack,
        metrics=Metrics(),
        pace=1.0,
        clock=env.clock,
        disable=partial(disable_channel, env.service.store),
    )
    older = Card(channel_id="C1", job_key="J1", ts="1.1", dirty=True, card_version=2)
    newer = Card(channel_id="C2", job_key="J1", ts="1.2", dirty=True, card_version=2)
    now = env.clock()
    picked = cards.due(now, [older, newer], posting=(), editing=(), queued={("C1", "J1")})
    assert picked == [newer]
    assert cards.due(now, [older, newer], posting=(), editing=()) == [older]


@pytest.fixture
async def client() -> AsyncIterator[AsyncWebClient]:
    """A client of the Slack sink alone (no service): the budget's own clock decides."""
    sink = SlackSink()
    runner, _ = await start_in_background(sink)
    yield AsyncWebClient(token=sink.token, base_url=sink.api_url)
    await runner.cleanup()


async def test_slackcaller_takes_each_methods_own_token(client: AsyncWebClient) -> None:
    """One chat.update a second: the second edit waits a second, a chat.delete (its own
    bucket) and a post (no workspace bucket) do not wait for it."""
    clock = ManualClock(1000.0)
    sleeps = Sleeps(clock)
    budget = Budget(BudgetConfig(update_per_minute=60.0), clock=clock, sleep=sleeps)
    slack = SlackCaller(client, metrics=Metrics(), budget=budget)
    posted = [(await slack.call("chat.postMessage", channel="C1", text=t))["ts"] for t in "ab"]
    await slack.call("chat.update", channel="C1", ts=posted[0], text="a2")
    assert sleeps.waits == []
    await slack.call("chat.update", channel="C1", ts=posted[0], text="a3")
    assert sleeps.waits == [1.0]
    await slack.call("chat.delete", channel="C1", ts=posted[1])
    assert sleeps.waits == [1.0] and budget.bucket("chat.update").granted == 2  # type: ignore[union-attr]


async def test_slackcaller_spaces_granted_calls_by_their_methods_bucket(
    client: AsyncWebClient,
) -> None:
    """Two edits granted a second apart, the first sent half a second late (a slow render):
    `call_granted` still sends the second a whole second after it."""
    clock = ManualClock(1000.0)
    sleeps = Sleeps(clock)
    budget = Budget(BudgetConfig(update_per_minute=60.0), clock=clock, sleep=sleeps)
    slack = SlackCaller(client, metrics=Metrics(), budget=budget)
    ts = (await slack.call("chat.postMessage", channel="C1", text="a"))["ts"]
    await slack.acquire("chat.update")
    await slack.acquire("chat.update")
    assert sleeps.waits == [1.0]
    clock.advance(0.5)
    await slack.call_granted("chat.update", channel="C1", ts=ts, text="a2")
    await slack.call_granted("chat.update", channel="C1", ts=ts, text="a3")
    assert sleeps.waits == [1.0, 1.0]
