"""The ceiling: a bare aiohttp GET loop, no model, no diff, no database.

`concurrency` workers share one session and GET /progress of the jobs in turn for
`duration` seconds, reading each body and nothing else: the most polls a second this
machine gets out of the simulator with aiohttp at that concurrency.

    python -m bench.ceiling --jobs 1000 --concurrency 50 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from bench.common import (
    PASSWORD,
    USERNAME,
    ServerOptions,
    ServerProcess,
    Stopwatch,
    emit,
    ratio,
    spread,
)


async def login(session: aiohttp.ClientSession, base_url: str) -> str:
    body = {"username": USERNAME, "password": PASSWORD}
    async with session.post(f"{base_url}/api/login", json=body) as response:
        response.raise_for_status()
        return str((await response.json())["access_token"])


async def measure_ceiling(
    base_url: str, *, keys: Sequence[str], concurrency: int, duration: float
) -> dict[str, Any]:
    """Polls a second of the bare loop, its CPU, and the latency of one GET."""
    latencies: list[float] = []
    polls = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        headers = {"Authorization": f"Bearer {await login(session, base_url)}"}
        turn = itertools.cycle(keys)
        deadline = 0.0

        async def worker() -> None:
            nonlocal polls
            while time.monotonic() < deadline:
                url = f"{base_url}/api/v1/training/{next(turn)}/progress"
                started = time.perf_counter()
                async with session.get(url, headers=headers) as response:
                    await response.read()
                latencies.append(time.perf_counter() - started)
                polls += 1

        watch = Stopwatch()
        watch.start()
        deadline = time.monotonic() + duration
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        watch.stop()
    return {
        "polls": polls,
        "seconds": round(watch.wall, 3),
        "polls_per_s": round(polls / watch.wall, 1),
        "cpu_seconds": round(watch.cpu, 3),
        "core_fraction": ratio(watch.cpu, watch.wall),
        "latency_ms": spread(latencies, scale=1000, digits=2),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    with ServerProcess(ServerOptions(jobs=args.jobs)) as servers:
        result = asyncio.run(
            measure_ceiling(
                servers.sim_url,
                keys=servers.keys,
                concurrency=args.concurrency,
                duration=args.duration,
            )
        )
    emit({"benchmark": "ceiling", "jobs": args.jobs, "concurrency": args.concurrency} | result)


if __name__ == "__main__":
    main()
