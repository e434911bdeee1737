"""The poller's cadence, backoff, unreachable/recovered events, and what it does not write."""

from __future__ import annotations

import json
import logging

import pytest

from bot.core.models import Snapshot
from bot.core.notification import read_notification
from simulator.faults import Fault
from tests.conftest import Env
from tests.scripts import CHAMPION_TRAINING, LIFECYCLE, payload


async def subscribe(env: Env, key: str, channel: str = "C0TEST", extra: str = "") -> None:
    status, _, url = await env.command(f"subscribe {key} {extra}".strip(), channel=channel)
    assert status == 200
    await env.reply(url)


def polls(env: Env) -> int:
    return env.sim.stats.progress_polls


async def test_pending_is_polled_at_twice_the_interval(env: Env) -> None:
    key = env.sim.script_job([payload("PENDING")])
    await subscribe(env, key)
    await env.cycle()
    start = polls(env)
    for _ in range(6):
        await env.cycle(10.0)  # 60 s: a RUNNING job would be polled 6 times
    assert polls(env) - start == 3


async def test_running_is_polled_every_interval_and_unchanged_writes_nothing(env: Env) -> None:
    key = env.sim.script_job([LIFECYCLE[1]])
    await subscribe(env, key)
    await env.cycle()
    record = await env.service.store.get_job(key)
    assert record is not None
    start = polls(env)
    for _ in range(5):
        await env.cycle(10.0)
    assert polls(env) - start == 5
    after = await env.service.store.get_job(key)
    assert after is not None and after.version == record.version  # nothing written
    assert after.updated_at == record.updated_at


async def test_a_job_nobody_watches_is_not_polled(env: Env) -> None:
    key = env.sim.script_job([LIFECYCLE[1]])
    await subscribe(env, key)
    await env.cycle()
    status, _, _ = await env.command(f"unsubscribe {key}")
    assert status == 200
    await env.service.poller.resync()
    start = polls(env)
    for _ in range(3):
        await env.cycle(10.0)
    assert polls(env) == start
    assert env.service.poller.watched == 0


async def test_a_terminal_job_is_not_polled_once_its_events_are_queued(env: Env) -> None:
    key = env.sim.script_job([LIFECYCLE[1], LIFECYCLE[4]], training=CHAMPION_TRAINING)
    await subscribe(env, key)
    env.sim.advance(key)
    await env.cycle(10.0)
    record = await env.service.store.get_job(key)
    assert record is not None and record.terminal
    start = polls(env)
    await env.cycle(10.0)
    await env.cycle(10.0)
    assert polls(env) == start
    kinds = [r.kind for r in (await env.service.store.rows_in_state("sent"))]
    assert "champion" in kinds


async def test_errors_back_off_and_log_once_then_recover_once(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    key = env.sim.script_job([LIFECYCLE[1], LIFECYCLE[2]])
    await subscribe(env, key)
    await env.cycle()
    env.sim.add_fault(Fault(kind="status", status=503, path_prefix=f"/api/v1/training/{key}"))
    caplog.set_level(logging.INFO, logger="bot.engine.poller")
    attempts = []
    for _ in range(12):
        before = polls(env)
        await env.cycle(10.0)
        attempts.append(polls(env) - before)
    # 10 s, then 20, 40, 80 s between tries (plus the client's own retry): fewer and fewer.
    assert sum(attempts[:3]) > sum(attempts[-3:])
    assert sum(1 for a in attempts if a) < 12
    unreachable = [r for r in caplog.records if r.getMessage().startswith("MathFi unreachable")]
    assert len(unreachable) == 1
    env.sim.clear_faults()
    env.sim.advance(key)
    for _ in range(20):
        await env.cycle(10.0)
    recovered = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(recovered) == 1
    kinds = [r.kind for r in (await env.service.store.rows_in_state("sent"))]
    # unreachable after 60 s of failures (the test config), then recovered with the new best
    assert kinds.count("unreachable") == 1
    assert "recovered" in kinds or "new_best" in kinds


async def test_a_bad_payload_for_one_job_never_stops_the_others(env: Env) -> None:
    good = env.sim.script_job([LIFECYCLE[1], LIFECYCLE[2]])
    bad = env.sim.script_job([LIFECYCLE[1]])
    await subscribe(env, good, channel="C1")
    await subscribe(env, bad, channel="C2")
    await env.cycle()
    env.sim.add_fault(
        Fault(
            kind="body",
            body={
                "status": "RUNNING",
                "jobs": [{"algorithm": "BSEV01", "status": "RUNNING", "latestPerformance": "NaN?"}],
            },
            path_prefix=f"/api/v1/training/{bad}",
        )
    )
    env.sim.advance(good)
    await env.cycle(10.0)
    await env.cycle(1.0)
    replies = [m for m in env.sink.channels["C1"] if m.thread_ts]
    assert len(replies) == 1 and "0.74" in replies[0].text
    record = await env.service.store.get_job(bad)
    assert record is not None
    assert Snapshot.model_validate_json(record.snapshot_json).status == "RUNNING"


async def test_history_is_written_only_when_a_value_changes(env: Env) -> None:
    key = env.sim.script_job(LIFECYCLE[1:4])
    await subscribe(env, key)
    await env.cycle()
    for _ in range(2):
        env.sim.advance(key)
        await env.cycle(10.0)
    await env.cycle(10.0)  # unchanged
    history = await env.service.store.history(key)
    per_algorithm = {p.algorithm for p in history}
    assert per_algorithm == {"BSEV01", "BSEV02", "BSIX01", "BFIF01"}
    assert len(history) == 8  # two changed polls x four algorithms; the baseline is the card


async def test_muted_subscription_still_gets_the_final_status(env: Env) -> None:
    key = env.sim.script_job([LIFECYCLE[1], LIFECYCLE[2], LIFECYCLE[4]], training=CHAMPION_TRAINING)
    await subscribe(env, key)
    status, _, _ = await env.command(f"mute {key} 2h")
    assert status == 200
    await env.cycle()
    env.sim.advance(key)
    await env.cycle(10.0)
    env.sim.advance(key)
    await env.cycle(10.0)
    await env.cycle(1.0)
    kinds = [r.kind for r in (await env.service.store.rows_in_state("sent"))]
    assert "new_best" not in kinds
    assert "champion" in kinds


async def test_unreachable_and_recovered_rows_are_versioned_notifications(env: Env) -> None:
    key = env.sim.script_job([LIFECYCLE[1], LIFECYCLE[2]])
    await subscribe(env, key, channel="C1")
    await subscribe(env, key, channel="C2", extra="--events failures")
    await env.cycle()
    version = (await env.service.store.get_job(key)).version  # type: ignore[union-attr]
    env.sim.add_fault(Fault(kind="status", status=503, path_prefix=f"/api/v1/training/{key}"))
    for _ in range(12):
        await env.cycle(10.0)
    env.sim.clear_faults()
    for _ in range(20):
        await env.cycle(10.0)
    rows = [r for r in (await env.service.store.rows_in_state("sent")) if r.kind != "watch_started"]
    told = {
        (r.channel_id, r.kind): read_notification(
            r.payload, channel_id="", job_key="", kind="", dedupe_key=""
        )
        for r in rows
    }
    subs = {
        c: (await env.service.store.get_subscription(channel_id=c, job_key=key))
        for c in ("C1", "C2")
    }
    for channel in ("C1", "C2"):  # --events failures hears both as well
        lost = told[(channel, "unreachable")]
        assert lost.dedupe_key == f"{key}:v{version}:unreachable:{channel}"
        assert lost.subscription_id == subs[channel].id  # type: ignore[union-attr]
        back = told[(channel, "recovered")]
        assert back.dedupe_key == f"{key}:v{version + 1}:{channel}"
        assert back.events[0].kind.value == "recovered" and back.snapshot is not None
    assert all(json.loads(r.payload)["schema_version"] == 1 for r in rows)


async def test_the_unreachable_alert_names_the_kind_of_trouble_not_the_host(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11 item 7: the channel hears "connection refused"; the host and port of the
    MathFi it could not reach stay in the log."""
    key = env.sim.script_job([LIFECYCLE[1], LIFECYCLE[2]])
    await subscribe(env, key, channel="C1")
    await env.cycle()
    simulator = env.runners.pop(1)  # MathFi goes away: its port refuses connections
    port = env.sim_url.rsplit(":", 1)[1]
    await simulator.cleanup()
    caplog.set_level(logging.INFO, logger="bot.engine.poller")
    for _ in range(12):
        await env.cycle(10.0)
    (card,) = env.sink.top_level("C1")
    (alert,) = [m for m in env.sink.replies("C1", card.ts) if "cannot reach" in m.text]
    seen = alert.text + json.dumps(alert.blocks)
    assert "connection refused" in seen, seen
    assert "127.0.0.1" not in seen and port not in seen and "localhost" not in seen, seen
    logged = [r.getMessage() for r in caplog.records if "is unreachable since" in r.getMessage()]
    assert len(logged) == 1 and f"127.0.0.1:{port}" in logged[0], logged
