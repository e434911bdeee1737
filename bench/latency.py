"""Notification latency: from a state change in the simulator to the reply in Slack.

The simulator and the Slack sink run in a child process (bench.common.ServerProcess); the
full service (poller + sender, bot/app/service.py's Service) runs here. Each of `--jobs`
scripted jobs is watched in a channel of its own (the sender paces posts at 1 a second
per channel) and advanced `--changes` times, at random moments at least an interval and
`--settle` seconds apart, so every change is seen by its own poll and delivered on its own.
Each advance is a new best performance: one thread reply. Its latency is the sink's
timestamp of the reply minus the moment the advance was sent; the database's outbox row
splits it into detection (change -> committed row) and delivery (row -> Slack).

    python -m bench.latency --jobs 20 --interval 5 --changes 3
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
import time
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


async def start_service(servers: Servers, *, database: Path, interval: float) -> Service:
    settings = bench_settings(servers, database=database, interval=interval)
    config = PollerConfig(interval=interval, concurrency=settings.poll_concurrency)
    service = Service(settings, poller_config=config)
    await service.start()
    now = time.time()
    for i, key in enumerate(servers.scripted_keys):
        snapshot = Snapshot.from_api(key, await service.mathfi.get_progress(key))
        channel = f"CLAT{i:05d}"
        await service.store.run(
            partial(subscribe, snapshot=snapshot, channel=channel, next_poll_at=now)
        )
        await service.poller.watch(key, due_at=now + random.uniform(0, interval))
    return service


async def wait_for_cards(service: Service, *, jobs: int, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (await service.store.outbox_counts())["sent"] >= jobs:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the job cards were not posted in time")


async def advance_jobs(
    http: aiohttp.ClientSession, servers: Servers, *, changes: int, gap: float
) -> dict[str, list[float]]:
    """Advance every job `changes` times at random moments; when each advance was sent."""
    sent: dict[str, list[float]] = {key: [] for key in servers.scripted_keys}

    async def drive(key: str) -> None:
        for _ in range(changes):
            await asyncio.sleep(random.uniform(0, gap / 2))
            sent[key].append(time.time())
            async with http.post(f"{servers.sim_url}/_sim/jobs/{key}/advance") as response:
                response.raise_for_status()
            await asyncio.sleep(gap)

    await asyncio.gather(*(drive(key) for key in servers.scripted_keys))
    return sent


async def replies(http: aiohttp.ClientSession, servers: Servers) -> dict[str, list[float]]:
    """Sink timestamps of each channel's thread replies, oldest first."""
    async with http.get(f"{servers.sink_url}/_sink/messages") as response:
        channels = (await response.json())["channels"]
    return {
        channel: [float(m["ts"]) for m in messages if m["thread_ts"] is not None]
        for channel, messages in channels.items()
    }


async def measure(servers: Servers, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    service = await start_service(servers, database=tmp / "bot.db", interval=args.interval)
    try:
        await wait_for_cards(service, jobs=args.jobs, within=args.interval * 2 + 30)
        async with aiohttp.ClientSession() as http:
            gap = args.interval + args.settle
            sent = await advance_jobs(http, servers, changes=args.changes, gap=gap)
            expected = args.jobs * (args.changes + 1)
            deadline = time.monotonic() + 15.0
            while (await service.store.outbox_counts())["sent"] < expected:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            posted = await replies(http, servers)
        rows = await service.store.rows_in_state("sent")
    finally:
        await service.stop(grace=5.0)
    committed: dict[str, list[float]] = {}
    for row in rows:
        if row.kind != "watch_started":
            committed.setdefault(row.job_key, []).append(row.created_at)
    return collate(servers, sent, posted, committed, args)


def collate(
    servers: Servers,
    sent: dict[str, list[float]],
    posted: dict[str, list[float]],
    committed: dict[str, list[float]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    total: list[float] = []
    detect: list[float] = []
    deliver: list[float] = []
    for i, key in enumerate(servers.scripted_keys):
        arrivals = posted.get(f"CLAT{i:05d}", [])
        rows = committed.get(key, [])
        for change, arrival, row_at in zip(sent[key], arrivals, rows, strict=False):
            total.append(arrival - change)
            detect.append(row_at - change)
            deliver.append(arrival - row_at)
    p99 = spread(total, digits=3)["p99"]
    return {
        "changes": args.jobs * args.changes,
        "delivered": len(total),
        "latency_s": spread(total, digits=3),
        "detect_s": spread(detect, digits=3),
        "deliver_s": spread(deliver, digits=3),
        "p50_over_interval": ratio(spread(total)["p50"], args.interval),
        "p99_over_interval": ratio(p99, args.interval),
        "p99_minus_interval_s": None if p99 is None else round(p99 - args.interval, 3),
        "target_p99_max_s": args.interval + 0.5,
        "met": p99 is not None
        and p99 <= args.interval + 0.5
        and len(total) == args.jobs * args.changes,
    }


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs, one channel each (20)")
    parser.add_argument("--interval", type=float, default=5.0, help="POLL_INTERVAL (5)")
    parser.add_argument("--changes", type=int, default=3, help="changes per job (3)")
    parser.add_argument(
        "--settle", type=float, default=3.0, help="extra seconds between two changes (3)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    started = machine()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    options = ServerOptions(scripted=args.jobs, script_steps=args.changes + 1)
    process = ServerProcess(options)
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp, process as servers:
        result = asyncio.run(measure(servers, args, Path(tmp)))
    emit(
        {
            "benchmark": "latency",
            "machine": started,
            "jobs": args.jobs,
            "interval": args.interval,
            **result,
        }
    )


if __name__ == "__main__":
    main()
