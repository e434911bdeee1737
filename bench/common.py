"""What every benchmark shares: the servers' child process, percentiles, CPU and memory.

The MathFi simulator and the local Slack sink run in a SEPARATE process (multiprocessing,
spawn), so the bot's CPU time measured in the benchmark process is the bot's alone. The
child builds its jobs before it listens (no setup traffic), reports its URLs and keys
through a pipe, answers "cpu" with its own CPU seconds, and exits on "stop" or when the
pipe closes (the parent died): no process is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import multiprocessing
import os
import random
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from bot.config import Settings
from bot.core.events import EventsFilter
from bot.core.models import Snapshot, TrainingJob
from bot.mathfi.client import MathFiClient, ProgressReply
from bot.slack.commands import subscribe_snapshot
from store import Store

USERNAME = "demo@mathfi.ai"
PASSWORD = "demo-password"
SINK_TOKEN = "xoxb-bench-sink-token"
ALGORITHMS = ("BSEV01", "BSEV02", "BSIX01", "BFIF01")


@dataclass(frozen=True)
class ServerOptions:
    """What the child serves. Natural jobs run forever and change every `tick_seconds`."""

    jobs: int = 0
    age: float = 300.0  # simulated seconds the natural jobs have run when the bench starts
    scripted: int = 0
    script_steps: int = 6
    tick_seconds: float = 10.0
    speed: float = 1.0
    seed: int = 0
    final_status: str | None = None  # scripted jobs end in this status after their rise


@dataclass(frozen=True)
class Servers:
    sim_url: str
    sink_url: str
    keys: list[str] = field(default_factory=list)
    scripted_keys: list[str] = field(default_factory=list)


def rising_script(steps: int) -> list[dict[str, Any]]:
    """RUNNING payloads whose best performance rises by 0.02 a step (a new best each time)."""
    payloads = []
    for step in range(steps):
        jobs = [
            {
                "trainingJobKey": f"00000000-0000-4000-8000-{i:012d}",
                "algorithm": name,
                "status": "RUNNING",
                "latestPerformance": round(0.5 + 0.02 * step + 0.001 * i, 4),
                "recentPerformances": [round(0.5 + 0.02 * step + 0.001 * i, 4)],
            }
            for i, name in enumerate(ALGORITHMS)
        ]
        payloads.append({"status": "RUNNING", "targetPerformance": 0.99, "jobs": jobs})
    return payloads


# --------------------------------------------------------------------- the child
class SkewedClock:
    """`time.monotonic()` minus `base` and a random part of `skew` (both 0: the plain clock)."""

    def __init__(self, rng: random.Random, *, base: float, skew: float) -> None:
        self._rng = rng
        self.base, self.skew = base, skew

    def __call__(self) -> float:
        return time.monotonic() - self.base - self._rng.uniform(0, self.skew)


def _recv(conn: Connection) -> Any:
    try:
        return conn.recv()
    except (EOFError, OSError):
        return None


async def _child_main(conn: Connection, options: ServerOptions) -> None:
    from simulator.mathfi import Simulator
    from simulator.mathfi import start_in_background as start_simulator
    from simulator.slack import SlackSink
    from simulator.slack import start_in_background as start_sink

    # Jobs never end by themselves: no stall rule, no time limit, no PENDING phase. While
    # they are created the clock reads `age` plus up to one tick early: the jobs are past
    # their first rise, and their ticks (changes) are spread evenly in time.
    clock = SkewedClock(
        random.Random(options.seed),
        base=options.age / options.speed,
        skew=options.tick_seconds / options.speed,
    )
    sim = Simulator(
        clock=clock,
        speed=options.speed,
        seed=options.seed,
        pending_seconds=0.0,
        stall_window=1e9,
        time_limit=1e9,
        tick_seconds=options.tick_seconds,
    )
    dataset = sim.create_dataset("bench", ready=True)
    keys = [
        sim.start_training(dataset, performance_threshold=0.85, fate="NOT_COMPLETED")
        for _ in range(options.jobs)
    ]
    clock.base = clock.skew = 0.0
    script = rising_script(options.script_steps)
    if options.final_status is not None:
        script.append({**script[-1], "status": options.final_status})
    scripted = [sim.script_job(script) for _ in range(options.scripted)]
    sink = SlackSink(token=SINK_TOKEN, team_id="T0BENCH")
    sim_runner, sim_url = await start_simulator(sim)
    sink_runner, sink_url = await start_sink(sink)
    conn.send(Servers(sim_url, sink_url, keys, scripted))
    loop = asyncio.get_running_loop()
    try:
        while (message := await loop.run_in_executor(None, _recv, conn)) not in (None, "stop"):
            if message == "cpu":
                conn.send(cpu_seconds())
    finally:
        await sink_runner.cleanup()
        await sim_runner.cleanup()


def _child(conn: Connection, options: ServerOptions) -> None:
    asyncio.run(_child_main(conn, options))


class ServerProcess:
    """`with ServerProcess(options) as servers:` the simulator and the sink in a child."""

    def __init__(self, options: ServerOptions, *, start_timeout: float = 120.0) -> None:
        self._options = options
        self._timeout = start_timeout
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=_child, args=(child_conn, options), name="bench-servers", daemon=True
        )
        self._child_conn = child_conn

    def __enter__(self) -> Servers:
        self._process.start()
        self._child_conn.close()
        if not self._conn.poll(self._timeout):
            self.close()
            raise RuntimeError("the simulator process did not start in time")
        servers: Servers = self._conn.recv()
        return servers

    def cpu_seconds(self) -> float:
        """The child's CPU seconds (user + system) so far."""
        self._conn.send("cpu")
        return float(self._conn.recv())

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self._conn.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------- measurements
def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    """Resident set size of this process now, in MB."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`, None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered) / 100)))
    return ordered[rank - 1]


def spread(values: Sequence[float], *, scale: float = 1.0, digits: int = 4) -> dict[str, Any]:
    """p50, p99 and max of `values` times `scale` (e.g. 1000 for milliseconds)."""

    def at(q: float) -> float | None:
        value = percentile(values, q)
        return None if value is None else round(value * scale, digits)

    return {"p50": at(50), "p99": at(99), "max": at(100), "n": len(values)}


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    return None if a is None or not b else round(a / b, digits)


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "cpu": model,
        "load_1m_at_start": round(os.getloadavg()[0], 2),
    }


def emit(result: dict[str, Any]) -> None:
    """The benchmark's one JSON object on stdout."""
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()


class GcMeter:
    """The garbage collector's work while installed: collections per generation and the
    wall seconds they took (gc.callbacks; cProfile does not see the collector)."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = 0.0
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info["generation"]
        self.counts[generation] += 1
        self.seconds[generation] += took
        self.longest = max(self.longest, took)

    def __enter__(self) -> GcMeter:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def report(self, wall: float) -> dict[str, Any]:
        return {
            "collections_per_generation": self.counts,
            "full_collection_ms_mean": ratio(self.seconds[2] * 1000, self.counts[2], digits=1),
            "longest_ms": round(self.longest * 1000, 1),
            "share_of_wall": ratio(sum(self.seconds), wall),
        }


class Stopwatch:
    """Wall and CPU seconds between `start()` and `stop()` of this process."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self._wall0 = self._cpu0 = 0.0

    def start(self) -> None:
        self._wall0, self._cpu0 = time.monotonic(), cpu_seconds()

    def stop(self) -> None:
        self.wall = time.monotonic() - self._wall0
        self.cpu = cpu_seconds() - self._cpu0


# --------------------------------------------------------------------- the bot side
def bench_settings(servers: Servers, *, database: Path, interval: float) -> Settings:
    """Settings as `mathfi-bot run` would load them, pointed at the child's servers."""
    return Settings(
        mathfi_base_url=servers.sim_url,
        mathfi_username=USERNAME,
        mathfi_password=SecretStr(PASSWORD),
        slack_bot_token=SecretStr(SINK_TOKEN),
        slack_signing_secret=SecretStr("bench-signing-secret"),
        slack_api_url=servers.sink_url + "/api/",
        database_path=database,
        poll_interval=interval,
        http_host="127.0.0.1",
        http_port=0,
        _env_file=None,
    )


def subscribe(store: Store, snapshot: Snapshot, *, channel: str, next_poll_at: float) -> None:
    """Watch `snapshot.job_key` in `channel` exactly as the slash command does."""
    subscribe_snapshot(
        store,
        snapshot,
        team_id="T0BENCH",
        channel_id=channel,
        user_id="U0BENCH",
        min_improvement=0.005,
        mention=None,
        events=EventsFilter.ALL,
        next_poll_at=next_poll_at,
        now=time.time(),
    )


def subscribe_all(
    store: Store, keys: Sequence[str], *, interval: float, rng: random.Random
) -> None:
    """One channel per job. The baseline is an empty RUNNING snapshot (the first poll of
    each job finds its algorithms) and the first polls are spread over one interval, as
    subscriptions made at random moments would be."""
    now = time.time()
    for i, key in enumerate(keys):
        subscribe(
            store,
            Snapshot(job_key=key, status="RUNNING"),
            channel=f"C{i:09d}",
            next_poll_at=now + rng.uniform(0, interval),
        )


class TimedSource:
    """The MathFi client as the poller sees it, timing each fetch and each job's polls.

    `latencies`: seconds of each progress fetch (client queue + HTTP + parse if changed);
    `gaps`: seconds between two consecutive polls of one job. Recorded once `recording`.
    """

    def __init__(self, client: MathFiClient, *, cheap_path: bool = True) -> None:
        self._client = client
        self._cheap_path = cheap_path  # False: every body is parsed (the path before it)
        self._last: dict[str, float] = {}
        self.recording = False
        self.latencies: list[float] = []
        self.gaps: list[float] = []

    async def get_progress_if_changed(
        self, key: str, previous_digest: bytes | None
    ) -> ProgressReply:
        started = time.perf_counter()
        previous = self._last.get(key)
        self._last[key] = started
        try:
            known = previous_digest if self._cheap_path else None
            return await self._client.get_progress_if_changed(key, known)
        finally:
            if self.recording:
                self.latencies.append(time.perf_counter() - started)
                if previous is not None:
                    self.gaps.append(started - previous)

    async def get_training(self, key: str) -> TrainingJob:
        return await self._client.get_training(key)
