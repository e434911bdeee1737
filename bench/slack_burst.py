"""A burst against Slack's limits: every watched job improves, then 2 s later every one FAILS.

The MathFi simulator and the local Slack sink run in a child process (bench.common); the
sink enforces 1 `chat.postMessage` a second per channel and 1 `chat.update` a second for
the workspace (`RateLimits`). `--jobs` scripted jobs are watched in `--channels` channels
(the cards are posted and settled first); then all improve at once (a new best each) and,
`--gap` seconds later, all FAIL. Reported:

- alert latency: the FAILED reply's Slack ts minus the moment its job was made to fail,
  p50 and max, against the channel's physical limit (jobs per channel x 1 s);
- 429s per method during the burst;
- card convergence: when the last card first shows FAILED, against what the chat.update
  budget allows (jobs / 1 a second);
- duplicates (a row posted twice) and losses (a row neither sent nor carried, or a job
  whose FAILED or new best was never told).

    python -m bench.slack_burst --jobs 200 --channels 10
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    ServerOptions,
    ServerProcess,
    Servers,
    bench_settings,
    emit,
    machine,
    ratio,
    spread,
    subscribe,
)
from bot.app.service import Service
from bot.core.models import Snapshot
from bot.engine.poller import PollerConfig

LIMITS = {"enabled": True, "post_per_channel": 1, "update_per_workspace": 1}
# The bot's budgets where this version has them (main has not): the sink's limits.
BUDGET = {"slack_update_rate": 60.0, "slack_post_rate": 1.0}


def channel_of(i: int, channels: int) -> str:
    return f"CBURST{i % channels:04d}"


async def start_service(servers: Servers, args: argparse.Namespace, database: Path) -> Service:
    settings = bench_settings(servers, database=database, interval=args.interval)
    budget = BUDGET | {"slack_update_rate": args.update_rate}
    known = {k: v for k, v in budget.items() if k in type(settings).model_fields}
    settings = settings.model_copy(update=known)
    service = Service(settings, poller_config=PollerConfig(interval=args.interval))
    await service.start()
    now = time.time()
    for i, key in enumerate(servers.scripted_keys):
        snapshot = Snapshot.from_api(key, await service.mathfi.get_progress(key))
        channel = channel_of(i, args.channels)
        await service.store.run(
            partial(subscribe, snapshot=snapshot, channel=channel, next_poll_at=now)
        )
        await service.poller.watch(key, due_at=now + args.interval * i / args.jobs)
    return service


async def settled(service: Service) -> bool:
    counts = await service.store.outbox_counts()
    return counts["pending"] + counts["sending"] == 0 and not await service.store.dirty_cards()


async def get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        response.raise_for_status()
        return await response.json()


async def advance_all(http: aiohttp.ClientSession, servers: Servers) -> dict[str, float]:
    """Advance every job once, all at once; when each advance was answered."""
    at: dict[str, float] = {}

    async def one(key: str) -> None:
        async with http.post(f"{servers.sim_url}/_sim/jobs/{key}/advance") as response:
            response.raise_for_status()
        at[key] = time.time()

    await asyncio.gather(*(one(key) for key in servers.scripted_keys))
    return at


def failed_card(message: dict[str, Any]) -> bool:
    return "FAILED" in message["text"].upper()


async def watch_cards(
    http: aiohttp.ClientSession, servers: Servers, seen: dict[str, float], stop: asyncio.Event
) -> None:
    """When each card (channel, ts) was first seen showing FAILED."""
    while not stop.is_set():
        channels = (await get(http, f"{servers.sink_url}/_sink/messages"))["channels"]
        now = time.time()
        for channel, messages in channels.items():
            for m in messages:
                if m["thread_ts"] is None and failed_card(m):
                    seen.setdefault(f"{channel}/{m['ts']}", now)
        await asyncio.sleep(0.5)


async def measure(servers: Servers, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    service = await start_service(servers, args, tmp / "bot.db")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{servers.sink_url}/_sink/limits", json=LIMITS) as response:
                response.raise_for_status()
            deadline = time.monotonic() + args.jobs / args.channels * 3 + 60
            while not await settled(service) or (
                (await service.store.outbox_counts())["sent"] < args.jobs
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the cards were not posted in time")
                await asyncio.sleep(0.5)
            before = await get(http, f"{servers.sink_url}/_sink/stats")
            improved_at = await advance_all(http, servers)
            await asyncio.sleep(args.gap)
            failed_at = await advance_all(http, servers)
            seen: dict[str, float] = {}
            stop = asyncio.Event()
            watcher = asyncio.create_task(watch_cards(http, servers, seen, stop))
            deadline = time.monotonic() + args.jobs * 1.5 + 120
            while time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                if len(seen) >= args.jobs and await settled(service):
                    break
            stop.set()
            await watcher
            after = await get(http, f"{servers.sink_url}/_sink/stats")
            channels = (await get(http, f"{servers.sink_url}/_sink/messages"))["channels"]
        rows = {state: await service.store.rows_in_state(state) for state in ("sent", "dead")}
        counts = await service.store.outbox_counts()
    finally:
        await service.stop(grace=5.0)
    return collate(args, improved_at, failed_at, seen, before, after, channels, rows, counts)


def collate(
    args: argparse.Namespace,
    improved_at: dict[str, float],
    failed_at: dict[str, float],
    seen: dict[str, float],
    before: dict[str, Any],
    after: dict[str, Any],
    channels: dict[str, list[dict[str, Any]]],
    rows: dict[str, list[Any]],
    counts: dict[str, int],
) -> dict[str, Any]:
    replies = [m for messages in channels.values() for m in messages if m["thread_ts"]]
    named = Counter(
        m["metadata"]["event_payload"]["outbox_id"]
        for m in replies
        if m.get("metadata") and m["metadata"].get("event_type") == "mathfi_notification"
    )
    duplicates = sum(n - 1 for n in named.values() if n > 1)
    sent = {row.id: row for row in rows["sent"]}
    posted_alone = {
        i
        for i in sent
        if getattr(sent[i], "carried_by", None) is None and sent[i].kind != "watch_started"
    }
    lost_rows = [i for i in posted_alone if i not in named]
    latencies: list[float] = []
    told_best: set[str] = set()
    failed_jobs: Counter[str] = Counter()
    by_id = {row.id: row for row in rows["sent"]}
    for m in replies:
        meta = (m.get("metadata") or {}).get("event_payload") or {}
        row = by_id.get(meta.get("outbox_id"))
        if row is None:
            continue
        if "FAILED" in m["text"] and row.kind == "job_status":
            failed_jobs[row.job_key] += 1
            latencies.append(float(m["ts"]) - failed_at[row.job_key])
            if "new best" in m["text"]:
                told_best.add(row.job_key)
        if row.kind == "new_best":
            told_best.add(row.job_key)
    physical = args.jobs / args.channels  # seconds: one post a second per channel
    fail_start = min(failed_at.values())
    converged = max(seen.values()) - fail_start if len(seen) >= args.jobs else None
    allowed = args.jobs / LIMITS["update_per_workspace"]
    limited = {
        method: n - before["ratelimited"].get(method, 0)
        for method, n in after["ratelimited"].items()
        if n - before["ratelimited"].get(method, 0)
    }
    latency = spread(latencies, digits=2)
    carried = sum(1 for row in rows["sent"] if getattr(row, "carried_by", None) is not None)
    return {
        "alert_latency_s": latency,
        "physical_limit_s": physical,
        "alert_max_over_physical": ratio(latency["max"], physical),
        "ratelimited_during_burst": limited,
        "calls_during_burst": {
            method: n - before["calls"].get(method, 0) for method, n in after["calls"].items()
        },
        "cards_converged_s": None if converged is None else round(converged, 1),
        "cards_allowed_s": allowed,
        "cards_over_allowed": ratio(converged, allowed),
        "cards_final": len(seen),
        "progress_carried": carried,
        "duplicates": duplicates,
        "lost": len(lost_rows)
        + (args.jobs - sum(1 for k in failed_at if failed_jobs[k] == 1))
        + (args.jobs - len(told_best & set(improved_at)))
        + counts["pending"]
        + counts["sending"]
        + counts["dead"],
        "met": latency["max"] is not None
        and latency["max"] <= 1.25 * physical
        and all(n <= 10 for n in limited.values())
        and converged is not None
        and converged <= 1.1 * allowed
        and duplicates == 0,
    }


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="watched jobs (200)")
    parser.add_argument("--channels", type=int, default=10, help="channels (10)")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds improve -> FAIL (2)")
    parser.add_argument("--interval", type=float, default=1.0, help="POLL_INTERVAL (1)")
    parser.add_argument(
        "--update-rate", type=float, default=60.0, help="the bot's SLACK_UPDATE_RATE (60)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    started = machine()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    options = ServerOptions(scripted=args.jobs, script_steps=2, final_status="FAILED")
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp, ServerProcess(options) as s:
        result = asyncio.run(measure(s, args, Path(tmp)))
    emit(
        {
            "benchmark": "slack_burst",
            "machine": started,
            "jobs": args.jobs,
            "channels": args.channels,
            **result,
        }
    )


if __name__ == "__main__":
    main()
