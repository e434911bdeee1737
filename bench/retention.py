"""Database size over weeks of a busy deployment, time accelerated (issue 16, point 3).

The synchronous `Store` on a temporary file with a fake clock, stepped a simulated hour at
a time: `--jobs-per-day` new jobs arrive (spread over the day), each watched by one or two
of `--channels` channels; a job runs 2 to 8 hours and is written `--polls-per-job` times
(a changed poll: new snapshot, a history point per algorithm, a notification to every
watcher one poll in `--notify-every`, the final status to all); the sender delivers every
row (sending, then sent, one transaction each, as the service does) and cleans the dirty
cards; each subscription ends 12 h to 3 days after its job ended. Every simulated hour the
pruning runs as the service's retention round runs it: `prune_outbox` batches until none
is left, `compact_jobs` batches (jobs finished for the outbox retention, and the ended
watchers of those nobody watches folded; `--no-compact`: the round before it existed),
`prune_jobs` batches, then `vacuum` steps; its wall and CPU time are measured (it runs on
the store's thread in the service).

Output: one JSON line per simulated day (`"record": "day"`: the file's size, the WAL's,
the database's pages and free pages, the rows of each table, what was pruned that day, the
round's slowest and mean wall and CPU time that day), then one verdict line (`"record":
"verdict"`): `level` is true when the file grew by less than 5 % of its size over the
last 10 days. `python -m bench.retention` (30 days, 1,000 jobs a day) runs in about two
minutes; `--days 2 --jobs-per-day 20` in a second.

(Over 300 lines, kept whole: one simulated deployment, its retention round and its report.)
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.core.duration import duration_seconds
from store import HistoryPoint, NewOutboxRow, Store
from store.db import PollRecord

HOUR = 3600.0
DAY = 24 * HOUR
ALGORITHMS = ("BSEV01", "BSEV02", "BSIX01", "BFIF01")
LEVEL_WINDOW = 10  # days
LEVEL_GROWTH = 0.05  # of the size


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Job:
    key: str
    channels: list[str]
    started: float
    ends: float
    polls_left: int
    parameters: tuple[str, ...]
    version: int = 0
    best: float = 0.5


@dataclass
class Totals:
    outbox_pruned: int = 0
    jobs_compacted: int = 0
    jobs_pruned: int = 0
    pages_vacuumed: int = 0
    notifications: int = 0
    polls: int = 0


def snapshot_json(job: Job, status: str) -> str:
    """A job as MathFi describes it: ~2 KB of JSON, four algorithms with their figures
    (the parameters drawn once per job: only the figures change from poll to poll)."""
    algorithms = ",".join(
        f'{{"algorithm":"{name}","bestPerformance":{job.best - 0.01 * n:.6f},'
        f'"elapsedSeconds":{job.version * 37.5},"iterations":{job.version * 10 + n},'
        f'"parameters":{job.parameters[n]},"status":"{status}"}}'
        for n, name in enumerate(ALGORITHMS)
    )
    return f'{{"algorithms":[{algorithms}],"status":"{status}","trainingJobKey":"{job.key}"}}'


def payload(channel: str, job: Job, snapshot: str, kind: str) -> str:
    """An outbox row as the bot writes it: the notification with the snapshot it saw."""
    return (
        f'{{"channel_id":"{channel}","job_key":"{job.key}","headline":"{kind}",'
        f'"events":[{{"kind":"{kind}","performance":{job.best}}}],"snapshot":{snapshot}}}'
    )


class Deployment:
    def __init__(self, store: Store, clock: Clock, args: argparse.Namespace) -> None:
        self.store, self.clock, self.args = store, clock, args
        self.rng = random.Random(args.seed)
        self.running: list[Job] = []
        self.endings: list[tuple[float, str, str]] = []  # (at, channel, job): unsubscribe
        self.arrivals = 0.0
        self.count = 0
        self.totals = Totals()
        self.rounds: list[tuple[float, float]] = []  # (wall, CPU) seconds of each hour's round

    def hour(self) -> None:
        """One simulated hour: arrivals, polls in four rounds, deliveries, unsubscribes."""
        self.arrivals += self.args.jobs_per_day / 24
        while self.arrivals >= 1:
            self.arrivals -= 1
            self.start_job()
        for _ in range(4):
            self.clock.now += HOUR / 4
            self.poll_round()
            self.deliver()
        self.edit_cards()
        self.unsubscribe_due()

    def start_job(self) -> None:
        self.count += 1
        rng, now = self.rng, self.clock.now
        key = f"{self.args.seed:04d}{self.count:08d}-0000-4000-8000-{rng.getrandbits(48):012x}"
        channels = rng.sample(range(self.args.channels), rng.choice((1, 2)))
        job = Job(
            key=key,
            channels=[f"C{n:05d}" for n in channels],
            started=now,
            ends=now + rng.uniform(2, 8) * HOUR,
            polls_left=self.args.polls_per_job,
            parameters=tuple(
                json.dumps({f"p{i}": round(rng.random(), 6) for i in range(12)}) for _ in ALGORITHMS
            ),
        )
        snapshot = snapshot_json(job, "RUNNING")
        for channel in job.channels:
            self.store.subscribe(
                team_id="T1", channel_id=channel, job_key=key, user_id="U1",
                snapshot_json=snapshot, snapshot_hash=f"{key}:0", status="RUNNING",
                best_performance=job.best, best_algorithm=ALGORITHMS[0], terminal=False,
                next_poll_at=now + 30, watch_row=NewOutboxRow(
                    f"{key}:watch:{channel}", channel, key, "watch_started",
                    payload(channel, job, snapshot, "watch_started"),
                ),
            )  # fmt: skip
        self.running.append(job)

    def poll_round(self) -> None:
        """Each running job's changed polls due this quarter hour, written in one batch."""
        now, polls, still = self.clock.now, [], []
        for job in self.running:
            rounds_left = max(1.0, (job.ends - now) / (HOUR / 4) + 1)
            due = job.polls_left if now >= job.ends else round(job.polls_left / rounds_left)
            polls.extend(self.changed_poll(job) for _ in range(due))
            if job.polls_left > 0:
                still.append(job)
            else:
                self.ended(job)
        self.running = still
        for start in range(0, len(polls), 200):  # the poller's group commit
            self.store.record_polls(polls[start : start + 200])
        self.totals.polls += len(polls)

    def ended(self, job: Job) -> None:
        """Each watcher unsubscribes 12 h to 3 days after the job ended."""
        for channel in job.channels:
            later = self.rng.uniform(0.5, 3) * DAY
            self.endings.append((self.clock.now + later, channel, job.key))

    def changed_poll(self, job: Job) -> PollRecord:
        job.version += 1
        job.polls_left -= 1
        job.best = round(job.best + self.rng.uniform(0, 0.01), 6)
        final = job.polls_left == 0
        status = "COMPLETED" if final else "RUNNING"
        snapshot = snapshot_json(job, status)
        notify = final or job.version % self.args.notify_every == 0
        kind = "status_changed" if final else "new_best"
        outbox = [
            NewOutboxRow(
                f"{job.key}:v{job.version}:{channel}", channel, job.key, kind,
                payload(channel, job, snapshot, kind),
            )
            for channel in job.channels
        ] if notify else []  # fmt: skip
        self.totals.notifications += len(outbox)
        return PollRecord(
            job_key=job.key,
            snapshot_json=snapshot,
            snapshot_hash=f"{job.key}:{job.version}",
            status=status,
            best_performance=job.best,
            best_algorithm=ALGORITHMS[0],
            terminal=final,
            next_poll_at=self.clock.now + 30,
            history=[HistoryPoint(name, self.clock.now, job.best) for name in ALGORITHMS],
            outbox=outbox,
            last_best={},
            improved=True,
        )

    def deliver(self) -> None:
        """The sender: every due row sent (one transaction to claim, one to finish); the
        first row of a subscription posts its card."""
        store, ts = self.store, f"{self.clock.now:.6f}"
        while rows := store.due_outbox(limit=500):
            for row in rows:
                store.mark_sending(row.id)
                if row.kind == "watch_started":
                    store.save_card(channel_id=row.channel_id, job_key=row.job_key, ts=ts)
                store.mark_sent(row.id, ts=ts)

    def edit_cards(self) -> None:
        """The live cards: each dirty one edited (here once an hour)."""
        store = self.store
        while cards := store.dirty_cards(limit=500):
            for card in cards:
                store.mark_card_clean(
                    channel_id=card.channel_id, job_key=card.job_key, card_version=card.card_version
                )

    def unsubscribe_due(self) -> None:
        now = self.clock.now
        due = [item for item in self.endings if item[0] <= now]
        self.endings = [item for item in self.endings if item[0] > now]
        for _, channel, key in due:
            self.store.unsubscribe(channel_id=channel, job_key=key)

    def prune(self) -> None:
        """What the service's retention round does, every hour: batches until none is
        left (timed: wall and CPU)."""
        wall, cpu = time.perf_counter(), time.process_time()
        self.prune_batches()
        self.rounds.append((time.perf_counter() - wall, time.process_time() - cpu))

    def prune_batches(self) -> None:
        store, args, totals = self.store, self.args, self.totals
        while True:
            batch = store.prune_outbox(retention=args.outbox_retention)
            totals.outbox_pruned += batch.count
            if not batch.more:
                break
        while args.compact:
            batch = store.compact_jobs(after=args.outbox_retention)
            totals.jobs_compacted += batch.count
            if not batch.more:
                break
        while True:
            batch = store.prune_jobs(retention=args.job_retention)
            totals.jobs_pruned += batch.count
            if not batch.more:
                break
        while True:
            batch = store.vacuum()
            totals.pages_vacuumed += batch.count
            if not batch.more:
                break


def day_record(day: int, deployment: Deployment, path: Path, started: float) -> dict[str, Any]:
    store = deployment.store
    size = store.database_size()
    wal = path.with_name(path.name + "-wal")
    counts = {
        table: store.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in (
            "jobs", "subscriptions", "performance_history", "outbox", "cards", "job_archive"
        )
    }  # fmt: skip
    totals = deployment.totals
    rounds, deployment.rounds = deployment.rounds, []
    return {
        "record": "day",
        "day": day,
        "file_bytes": path.stat().st_size,
        "wal_bytes": wal.stat().st_size if wal.exists() else 0,
        "database_bytes": size.bytes,
        "free_bytes": size.free_bytes,
        "rows": counts,
        "running_jobs": len(deployment.running),
        "polls": totals.polls,
        "notifications": totals.notifications,
        "outbox_pruned": totals.outbox_pruned,
        "jobs_compacted": totals.jobs_compacted,
        "jobs_pruned": totals.jobs_pruned,
        "pages_vacuumed": totals.pages_vacuumed,
        "round_wall_ms": _max_mean([wall for wall, _ in rounds]),
        "round_cpu_ms": _max_mean([cpu for _, cpu in rounds]),
        "elapsed_s": round(time.perf_counter() - started, 2),
    }


def _max_mean(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {"max": 0.0, "mean": 0.0}
    mean = sum(seconds) / len(seconds)
    return {"max": round(max(seconds) * 1e3, 1), "mean": round(mean * 1e3, 1)}


def verdict(days: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    sizes = [day["file_bytes"] for day in days]
    window = min(LEVEL_WINDOW, len(sizes) - 1)
    growth = (sizes[-1] - sizes[-1 - window]) / sizes[-1] if window > 0 else None
    return {
        "record": "verdict",
        "days": len(days),
        "jobs_per_day": args.jobs_per_day,
        "outbox_retention_s": args.outbox_retention,
        "job_retention_s": args.job_retention,
        "compact": args.compact,
        "final_file_mb": round(sizes[-1] / 1e6, 1),
        "max_file_mb": round(max(sizes) / 1e6, 1),
        "growth_over_window": None if growth is None else round(growth, 4),
        "window_days": window,
        "level": growth is not None and window == LEVEL_WINDOW and growth < LEVEL_GROWTH,
        "round_wall_ms_max": max(day["round_wall_ms"]["max"] for day in days),
        "round_cpu_ms_max": max(day["round_cpu_ms"]["max"] for day in days),
    }


def run(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    path = folder / "bench.db"
    clock = Clock(1_700_000_000.0)
    store = Store(path, clock=clock)
    deployment = Deployment(store, clock, args)
    started = time.perf_counter()
    days: list[dict[str, Any]] = []
    try:
        for day in range(1, args.days + 1):
            for _ in range(24):
                deployment.hour()
                deployment.prune()
            days.append(day_record(day, deployment, path, started))
            print(json.dumps(days[-1]), flush=True)
    finally:
        store.close()
    return days


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--jobs-per-day", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=50)
    parser.add_argument("--polls-per-job", type=int, default=24)
    parser.add_argument("--notify-every", type=int, default=4)
    parser.add_argument("--outbox-retention", type=duration_seconds, default="7d")
    parser.add_argument("--job-retention", type=duration_seconds, default="30d")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-compact", dest="compact", action="store_false",
        help="leave finished jobs whole until the job retention (the round before issue 16's "
        "compaction)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="bench-retention-") as folder:
        days = run(args, Path(folder))
    print(json.dumps(verdict(days, args)), flush=True)


if __name__ == "__main__":
    main()
