"""Failure paths of the engine and the MathFi client that no other test reaches (issue #20):
each channel's own threshold through the whole service, the group commit's fallback when
one poll of a batch is bad, and the MathFi token registered with the log scrubber."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.engine.group_commit import GroupCommit
from bot.logs import REDACTED, configure_logging, redactor
from bot.mathfi.client import MathFiClient
from store import AsyncStore, NewOutboxRow, Store, StoreUnavailable
from store.db import PollRecord, refused_row
from tests.conftest import Env, make_settings
from tests.scripts import payload


# ----------------------------------------------------------------------------- fan-out
def best_step(value: float) -> dict[str, object]:
    """A RUNNING poll in which only BSEV02 moves (the others stay put)."""
    return payload("RUNNING", {"BSEV01": 0.50, "BSEV02": value, "BSIX01": 0.40, "BFIF01": 0.45})


def told(env: Env, channel: str) -> list[str]:
    """The thread replies the channel heard, as text."""
    return [m.text for m in env.sink.channels.get(channel, []) if m.thread_ts]


async def test_each_channel_hears_by_its_own_threshold_and_last_announced_best(
    env: Env,
) -> None:
    key = env.sim.script_job([best_step(v) for v in (0.60, 0.62, 0.64, 0.66)])
    for channel, threshold in (("CFINE", "0.01"), ("CCOARSE", "0.05")):
        status, _, url = await env.command(
            f"subscribe {key} --min-improvement {threshold}", channel=channel
        )
        assert status == 200
        await env.reply(url)
    await env.cycle()  # the cards
    heard: dict[str, list[int]] = {"CFINE": [], "CCOARSE": []}
    for _ in range(3):  # +0.02 a poll
        env.sim.advance(key)
        await env.cycle(10.0)
        for _ in range(3):
            await env.cycle(1.0)
        for channel in heard:
            heard[channel].append(len(told(env, channel)))
    # 0.01: every +0.02 step. 0.05: nothing at 0.62 or 0.64 (+0.02, +0.04 over 0.60, the
    # best it was last told of), then 0.66 (+0.06 over 0.60, only +0.02 over the last poll).
    assert heard == {"CFINE": [1, 2, 3], "CCOARSE": [0, 0, 1]}
    # the gain is counted from the best this channel was last told of
    assert [t.split("by")[0] for t in told(env, "CCOARSE")] == ["📈 New best 0.6600 "]
    assert "(+0.0600)" in told(env, "CCOARSE")[0]
    assert all("(+0.0200)" in text for text in told(env, "CFINE"))
    fine = await env.service.store.get_subscription(channel_id="CFINE", job_key=key)
    coarse = await env.service.store.get_subscription(channel_id="CCOARSE", job_key=key)
    assert fine is not None and coarse is not None
    assert (fine.last_best, coarse.last_best) == (pytest.approx(0.66), pytest.approx(0.66))


# ----------------------------------------------------------------------------- group commit
def poll(key: str, *, outbox_payload: str = "{}") -> PollRecord:
    return PollRecord(
        job_key=key,
        snapshot_json=json.dumps({"job_key": key, "status": "RUNNING"}),
        snapshot_hash=f"hash-{key}",
        status="RUNNING",
        best_performance=None,
        best_algorithm=None,
        terminal=False,
        next_poll_at=0.0,
        history=(),
        outbox=(
            NewOutboxRow(
                dedupe_key=f"{key}:1",
                channel_id="C1",
                job_key=key,
                kind="new_best",
                payload=outbox_payload,
            ),
        ),
        last_best={},
        improved=False,
    )


class Outcomes:
    """What each queued poll was told: written (its version) or refused (the error)."""

    def __init__(self) -> None:
        self.written: dict[str, int] = {}
        self.refused: dict[str, StoreUnavailable] = {}

    async def record(self, commit: GroupCommit, key: str, prepared: PollRecord | None) -> None:
        def prepare(store: Store) -> PollRecord:
            if prepared is None:
                raise ValueError(f"cannot prepare {key}")
            return prepared

        await commit.record(
            prepare,
            written=lambda version: self.written.__setitem__(key, version),
            refused=lambda err: self.refused.__setitem__(key, err),
        )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AsyncStore]:
    opened = await AsyncStore.open(tmp_path / "bot.db")
    try:
        yield opened
    finally:
        await opened.close()


async def test_one_refused_poll_does_not_sink_its_batch(store: AsyncStore) -> None:
    commit, seen = GroupCommit(store), Outcomes()
    results = await asyncio.gather(
        seen.record(commit, "J1", poll("J1")),
        seen.record(commit, "JBAD", poll("JBAD", outbox_payload="not json")),
        seen.record(commit, "J3", poll("J3")),
        seen.record(commit, "JBUG", None),  # our own bug while preparing: this poll alone
        return_exceptions=True,
    )
    assert results[:3] == [None, None, None]
    assert isinstance(results[3], ValueError) and "JBUG" in str(results[3])
    assert set(seen.written) == {"J1", "J3"}
    assert set(seen.refused) == {"JBAD"} and refused_row(seen.refused["JBAD"])
    for key in ("J1", "J3"):
        assert (await store.get_job(key)) is not None
    assert (await store.get_job("JBAD")) is None  # its transaction was rolled back alone
    pending = await store.rows_in_state("pending")
    assert sorted(r.job_key for r in pending) == ["J1", "J3"]


async def test_a_locked_database_refuses_the_whole_batch_at_once(
    store: AsyncStore, tmp_path: Path
) -> None:
    holder = sqlite3.connect(tmp_path / "bot.db", timeout=0, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        commit, seen = GroupCommit(store), Outcomes()
        await asyncio.gather(*(seen.record(commit, k, poll(k)) for k in ("J1", "J2", "J3")))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not seen.written
    assert set(seen.refused) == {"J1", "J2", "J3"}
    assert not any(refused_row(err) for err in seen.refused.values())
    assert "locked" in str(seen.refused["J1"])


async def test_a_callback_that_fails_is_raised_to_its_own_poll(store: AsyncStore) -> None:
    commit = GroupCommit(store)
    written: list[int] = []

    def broken(version: int) -> None:
        raise RuntimeError("poller bug")

    results = await asyncio.gather(
        commit.record(lambda s: poll("J1"), written=broken, refused=lambda err: None),
        commit.record(lambda s: poll("J2"), written=written.append, refused=lambda err: None),
        return_exceptions=True,
    )
    assert isinstance(results[0], RuntimeError) and results[1] is None
    assert written == [1]


async def test_a_closed_store_refuses_every_poll_of_the_batch(tmp_path: Path) -> None:
    closed = await AsyncStore.open(tmp_path / "bot.db")
    await closed.close()
    commit, seen = GroupCommit(closed), Outcomes()
    await asyncio.gather(*(seen.record(commit, k, poll(k)) for k in ("J1", "J2")))
    assert not seen.written
    assert {k: str(e) for k, e in seen.refused.items()} == {
        "J1": "the store is closed",
        "J2": "the store is closed",
    }


# ----------------------------------------------------------------------------- tokens in logs
async def test_a_token_mathfi_issues_is_scrubbed_from_every_log_line(env: Env) -> None:
    stream = io.StringIO()
    configure_logging(level="DEBUG", fmt="json", stream=stream)
    client = MathFiClient.from_settings(make_settings(mathfi_base_url=env.sim_url))
    try:
        await client.get_progress(env.sim.script_job([best_step(0.6)]))
        token = client._auth.current
    finally:
        await client.close()
    assert token and len(token) >= 8
    assert redactor().scrub(f"Bearer {token}") == f"Bearer {REDACTED}"
    log = logging.getLogger("tests.failure_paths")
    log.warning("request headers %s", {"Authorization": f"Bearer {token}"})
    try:
        raise RuntimeError(f"refused token {token}")
    except RuntimeError:
        log.exception("the call failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [line for line in lines if line["logger"] == "tests.failure_paths"]
    assert len(mine) == 2
    assert REDACTED in mine[0]["message"]
    assert REDACTED in mine[1]["exception"] and "RuntimeError" in mine[1]["exception"]
    assert token not in stream.getvalue()
