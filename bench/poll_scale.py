"""Cost at scale: N watched RUNNING jobs polled every S seconds by the real Poller.

The simulator runs in a child process (bench.common.ServerProcess) with N jobs that never
end and change every simulated tick (10 s by default, so nearly every poll at S = 10 s
finds a change and writes). The benchmark process is the bot: MathFiClient + Store +
Poller wired as bot/app/service.py wires them, with no sender (the outbox keeps filling).

Phases, one after the other, against the same simulator:
  steady     the Poller at interval S for D seconds after a warm-up of about one interval:
             achieved polls/s over the ideal N/S, CPU, RSS, database growth and writes,
             fetch latency, gap between two polls of one job;
  saturated  a second Poller with an interval of 1 ms: every job is always due, so this
             is the most polls/s the bot sustains at the same concurrency (measured once
             each job has been polled, so that its body digest is known);
  ceiling    bench.ceiling: a bare aiohttp GET loop at that concurrency, no diff, no DB;
  naive      bench.naive_poller in its own process: sequential GET + sqlite3 + post.

    python -m bench.poll_scale --jobs 10000 --interval 10 --duration 60

The bot runs as `mathfi-bot run` does: on uvloop when installed (`--loop asyncio`: the
standard loop), with `gc.freeze()` once set up (`--no-gc-freeze`), and with the cheap path
for unchanged answers (`--no-cheap-path`: every body parsed). The three switches are there
to measure each change's share (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import random
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.ceiling import measure_ceiling
from bench.common import (
    GcMeter,
    ServerOptions,
    ServerProcess,
    Servers,
    TimedSource,
    bench_settings,
    emit,
    machine,
    peak_rss_mb,
    ratio,
    rss_mb,
    spread,
    subscribe_all,
)
from bench.common import cpu_seconds as bot_cpu
from bot.__main__ import loop_factory
from bot.engine.poller import Poller, PollerConfig
from bot.mathfi.client import MathFiClient
from bot.metrics import Metrics
from store import AsyncStore, Store

TARGETS = {
    "achieved_over_ideal_min": 0.99,  # issue 7 (issue 3 asks 0.95 at 1,000 jobs / 1 s)
    "bot_core_fraction_max": 0.40,
    "rss_end_mb_max": 200.0,
    "ours_over_ceiling_min": 0.8,
}


@dataclass(frozen=True)
class Sample:
    """Counters at one moment of a phase."""

    wall: float
    cpu: float
    sim_cpu: float
    polls: int
    errors: float
    written: int
    commits: int
    rows: int
    db_bytes: int
    rss: float

    @classmethod
    async def take(cls, bot: Bot, poller: Poller, servers: ServerProcess) -> Sample:
        def read(store: Store) -> tuple[int, int, int, int]:  # on the store's thread
            conn = store.db.conn
            (written,) = conn.execute("SELECT coalesce(sum(version), 0) FROM jobs").fetchone()
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            (page_size,) = conn.execute("PRAGMA page_size").fetchone()
            return int(written), int(pages), int(page_size), conn.total_changes

        written, pages, page_size, rows = await bot.store.run(read)
        errors = sum(
            sample.value
            for metric in bot.metrics.poll_errors.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
        return cls(
            wall=asyncio.get_running_loop().time(),
            cpu=bot_cpu(),
            sim_cpu=servers.cpu_seconds(),
            polls=poller.polls_completed,
            errors=errors,
            written=int(written),
            commits=bot.commits,
            rows=rows,
            db_bytes=int(pages) * int(page_size),
            rss=rss_mb(),
        )


def compare(before: Sample, after: Sample) -> dict[str, Any]:
    """What happened between two samples."""
    wall = after.wall - before.wall
    polls = after.polls - before.polls
    cpu = after.cpu - before.cpu
    return {
        "seconds": round(wall, 3),
        "polls": polls,
        "poll_errors": int(after.errors - before.errors),
        "polls_per_s": round(polls / wall, 1),
        "bot_cpu_seconds": round(cpu, 3),
        "bot_core_fraction": ratio(cpu, wall),
        "cpu_s_per_1000_polls": ratio(cpu * 1000, polls),
        "sim_core_fraction": ratio(after.sim_cpu - before.sim_cpu, wall),
        "changed_poll_fraction": ratio(after.written - before.written, polls),
        "db_commits_per_poll": ratio(after.commits - before.commits, polls),
        "db_rows_written_per_poll": ratio(after.rows - before.rows, polls),
        "db_growth_mb_per_hour": round((after.db_bytes - before.db_bytes) / wall * 3600 / 2**20, 1),
        "rss_start_mb": before.rss,
        "rss_end_mb": after.rss,
    }


class Bot:
    """Store + MathFi client + metrics, as bot/app/service.py builds them."""

    def __init__(
        self, servers: Servers, *, database: Path, interval: float, cheap_path: bool
    ) -> None:
        """Private: `open` builds it and opens its store."""
        self.settings = bench_settings(servers, database=database, interval=interval)
        self.store: AsyncStore
        self.metrics = Metrics()
        self.session = aiohttp.ClientSession()
        self.client = MathFiClient.from_settings(self.settings, session=self.session)
        self.source = TimedSource(self.client, cheap_path=cheap_path)
        self.commits = 0

    @classmethod
    async def open(
        cls, servers: Servers, *, database: Path, interval: float, cheap_path: bool = True
    ) -> Bot:
        self = cls(servers, database=database, interval=interval, cheap_path=cheap_path)
        self.store = await AsyncStore.open(self.settings.database_path)
        await self.store.run(lambda store: store.db.conn.set_trace_callback(self._trace))
        return self

    def _trace(self, statement: str) -> None:
        if statement.startswith("COMMIT"):
            self.commits += 1

    def poller(self, config: PollerConfig) -> Poller:
        return Poller(self.store, self.source, config=config, metrics=self.metrics)

    async def close(self) -> None:
        await self.client.close()
        await self.session.close()
        await self.store.close()


async def run_phase(
    bot: Bot,
    poller: Poller,
    servers: ServerProcess,
    *,
    warmup: float,
    duration: float,
    gc_meter: GcMeter | None = None,
    warm_polls: int = 0,
) -> tuple[Sample, Sample, Sample]:
    """Samples at the start, the middle and the end of `duration` (after `warmup` seconds
    and at least `warm_polls` polls)."""
    task = asyncio.create_task(poller.run(), name="poller")
    try:
        await asyncio.sleep(warmup)
        for _ in range(600):  # at most a minute more
            if poller.polls_completed >= warm_polls:
                break
            await asyncio.sleep(0.1)
        before = await Sample.take(bot, poller, servers)
        bot.source.recording = True
        with gc_meter or contextlib.nullcontext():
            await asyncio.sleep(duration / 2)
            middle = await Sample.take(bot, poller, servers)
            await asyncio.sleep(duration / 2)
            after = await Sample.take(bot, poller, servers)
        bot.source.recording = False
    finally:
        poller.stop()
        await task
    return before, middle, after


async def steady(bot: Bot, servers: ServerProcess, args: argparse.Namespace) -> dict[str, Any]:
    config = PollerConfig(interval=args.interval, concurrency=bot.settings.poll_concurrency)
    poller = bot.poller(config)
    warmup = args.warmup if args.warmup is not None else args.interval * 2 + 1.0
    gc_meter = GcMeter()
    before, middle, after = await run_phase(
        bot, poller, servers, warmup=warmup, duration=args.duration, gc_meter=gc_meter
    )
    result = compare(before, after)
    result["gc"] = gc_meter.report(after.wall - before.wall)
    # The history is pruned once a job has been written PRUNE_EVERY times: the second
    # half of a long enough run shows the growth that lasts.
    result["db_growth_mb_per_hour_second_half"] = compare(middle, after)["db_growth_mb_per_hour"]
    result["db_mb_end"] = round(after.db_bytes / 2**20, 1)
    result["warmup_seconds"] = warmup
    result["rss_peak_mb"] = peak_rss_mb()
    result["achieved_over_ideal"] = ratio(result["polls_per_s"], args.jobs / args.interval)
    result["fetch_latency_ms"] = spread(bot.source.latencies, scale=1000, digits=2)
    result["poll_gap_s"] = spread(bot.source.gaps, digits=3)
    seconds = bot.metrics.registry.get_sample_value("mathfi_poll_latency_seconds_sum") or 0.0
    count = bot.metrics.registry.get_sample_value("mathfi_poll_latency_seconds_count") or 0.0
    result["poll_mean_ms"] = ratio(seconds * 1000, count, digits=2)
    return result


async def saturated(bot: Bot, servers: ServerProcess, args: argparse.Namespace) -> dict[str, Any]:
    config = PollerConfig(interval=0.001, jitter=0.0, concurrency=bot.settings.poll_concurrency)
    poller = bot.poller(config)
    for key in args.keys:
        await poller.watch(key)  # all due now (the stored next_poll_at would make them wait)
    bot.source.latencies.clear()
    # Measured once every job has been polled: the new poller's first poll of a job has no
    # body digest yet and parses it; under load those 10,000 parses fell in the window.
    before, _, after = await run_phase(
        bot, poller, servers, warmup=1.0, duration=args.references, warm_polls=len(args.keys)
    )
    result = compare(before, after)
    result["fetch_latency_ms"] = spread(bot.source.latencies, scale=1000, digits=2)
    return result


def naive(servers: Servers, *, keys_file: Path, database: Path, duration: float) -> Any:
    command = [sys.executable, "-m", "bench.naive_poller", "--mathfi", servers.sim_url]
    command += ["--slack", servers.sink_url, "--keys", str(keys_file)]
    command += ["--duration", str(duration), "--database", str(database)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    if done.returncode != 0:
        raise RuntimeError(f"naive poller failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


async def bot_phases(
    servers: Servers, process: ServerProcess, args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    bot = await Bot.open(
        servers, database=tmp / "bot.db", interval=args.interval, cheap_path=args.cheap_path
    )
    try:
        await bot.store.run(
            lambda store: subscribe_all(
                store, servers.keys, interval=args.interval, rng=random.Random(1)
            )
        )
        args.loop_used = type(asyncio.get_running_loop()).__module__  # uvloop may be missing
        if args.gc_freeze:  # as bot.app.service.serve does once the service has started
            gc.freeze()
        args.keys = servers.keys
        result = {"steady": await steady(bot, process, args)}
        result["saturated"] = await saturated(bot, process, args)
    finally:
        await bot.close()
    before = process.cpu_seconds()
    ceiling = await measure_ceiling(
        servers.sim_url, keys=servers.keys, concurrency=args.concurrency, duration=args.references
    )
    ceiling["sim_core_fraction"] = ratio(process.cpu_seconds() - before, ceiling["seconds"])
    result["ceiling"] = ceiling
    return result


def build_result(
    args: argparse.Namespace, phases: dict[str, Any], *, started: dict[str, Any]
) -> dict[str, Any]:
    ours = phases["saturated"]["polls_per_s"]
    ratios = {
        "achieved_over_ideal": phases["steady"]["achieved_over_ideal"],
        "ours_over_naive": ratio(ours, phases["naive"]["polls_per_s"], digits=1),
        "ours_over_ceiling": ratio(ours, phases["ceiling"]["polls_per_s"]),
        # The same comparison by CPU per poll (both loops run in this process): it does not
        # move with the share of the CPU the machine gives each phase, as polls/s does.
        "ours_over_ceiling_cpu": ratio(
            phases["ceiling"]["cpu_seconds"] * phases["saturated"]["polls"],
            phases["saturated"]["bot_cpu_seconds"] * phases["ceiling"]["polls"],
        ),
    }
    met = {
        "achieved_over_ideal": ratios["achieved_over_ideal"] >= TARGETS["achieved_over_ideal_min"],
        "bot_core_fraction": phases["steady"]["bot_core_fraction"]
        <= TARGETS["bot_core_fraction_max"],
        "rss_end_mb": phases["steady"]["rss_end_mb"] <= TARGETS["rss_end_mb_max"],
        "ours_over_ceiling": (ratios["ours_over_ceiling"] or 0) >= TARGETS["ours_over_ceiling_min"],
    }
    return {
        "benchmark": "poll_scale",
        "machine": started,
        "jobs": args.jobs,
        "interval": args.interval,
        "duration": args.duration,
        "concurrency": args.concurrency,
        "sim_tick_seconds": args.tick,
        "loop": args.loop_used,
        "gc_freeze": args.gc_freeze,
        "cheap_path": args.cheap_path,
        "ideal_polls_per_s": round(args.jobs / args.interval, 1),
        **phases,
        "ratios": ratios,
        "targets": TARGETS,
        "met": met,
    }


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="watched jobs (default 10000)")
    parser.add_argument("--interval", type=float, default=10.0, help="POLL_INTERVAL (default 10)")
    parser.add_argument("--duration", type=float, default=60.0, help="steady seconds (60)")
    parser.add_argument("--warmup", type=float, default=None, help="default 2 x interval + 1")
    parser.add_argument(
        "--references", type=float, default=10.0, help="seconds of saturated/ceiling/naive (10)"
    )
    parser.add_argument("--tick", type=float, default=10.0, help="simulated seconds a change")
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="event loop (uvloop)"
    )
    parser.add_argument("--no-gc-freeze", dest="gc_freeze", action="store_false")
    parser.add_argument("--no-cheap-path", dest="cheap_path", action="store_false")
    args = parser.parse_args(argv)
    args.concurrency = 50  # Settings.poll_concurrency and mathfi_max_concurrency defaults
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    started = machine() | {"rss_at_launch_mb": rss_mb()}
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    options = ServerOptions(jobs=args.jobs, tick_seconds=args.tick)
    process = ServerProcess(options)
    with tempfile.TemporaryDirectory(prefix="bench-poll-") as tmp, process as servers:
        with asyncio.Runner(loop_factory=loop_factory(args.loop == "uvloop")) as runner:
            phases = runner.run(bot_phases(servers, process, args, Path(tmp)))
        keys_file = Path(tmp) / "keys.txt"
        keys_file.write_text("\n".join(servers.keys))
        phases["naive"] = naive(
            servers, keys_file=keys_file, database=Path(tmp) / "naive.db", duration=args.references
        )
    emit(build_result(args, phases, started=started))


if __name__ == "__main__":
    main()
