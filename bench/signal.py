"""Signal budget: how much the bot says per job lifecycle (issue #14, "quiet by design").

The demo's fates (a COMPLETED, a NOT_COMPLETED and a FAILED job, forced on the simulator
as `mathfi-bot demo` does) plus a scripted job of `--algorithms` algorithms that FAILS run
through the real service (poller + outbox + sender), each watched in a channel of its own
through the signed slash command, with the demo's `--min-improvement 0.01 --mention`.
The simulator and the Slack sink run in this process, as in the demo: this benchmark counts
messages, it does not time anything, so it needs no separate server process.

Per job, once the job is final and everything queued is sent: messages posted (card +
thread replies), channel-level messages (cards + broadcast replies), card edits, the
longest message in lines and characters of the text Slack shows (every version of the
card, each reply; `shown_lines`), and the issue's budgets:
  - at most one channel-level message per lifecycle, two when the job ends badly;
  - no channel-level message longer than 15 lines;
  - thread replies <= 1 + new bests announced + job status changes + 2.
Output: JSON lines, one per job (`"record": "job"`) then one summary.

    python -m bench.signal                   # about a minute at the default speed
    python -m bench.signal --speed 600 --algorithms 6 --interval 0.2
    python -m bench.signal --broadcast failures   # the quiet setting of issue #14
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import SINK_TOKEN, Servers, bench_settings, emit, machine
from bot.app.service import Service
from bot.core.events import EventKind
from bot.core.models import ALERT_STATUSES
from bot.core.notification import read_notification
from bot.engine.poller import PollerConfig
from bot.slack.sender import SenderConfig
from demo.run import ONCALL, signed_command
from simulator.mathfi import Simulator
from simulator.mathfi import start_in_background as start_simulator
from simulator.slack import SinkMessage, SlackSink
from simulator.slack import start_in_background as start_sink
from store import Store

FATES = ("COMPLETED", "NOT_COMPLETED", "FAILED")
SECRET = "bench-signing-secret"  # bench_settings' signing secret
MAX_CHANNEL_LINES = 15

# Slack shows `<!date^…|fallback>`, `<@U1|name>`, `<url|label>` as their label and the
# three escaped characters as themselves.
_LABELLED = re.compile(r"<[^<>|]*\|([^<>]*)>")
_BARE = re.compile(r"<([!@#])([^<>|]*)>")


# --------------------------------------------------------------------- what Slack shows
def shown_lines(text: str, blocks: Sequence[dict[str, Any]]) -> list[str]:
    """The lines Slack shows for a message: each block's text (section fields side by
    side, two to a row; a context block's elements on one line; buttons as `[label]`),
    or the fallback text when there are no blocks. Dividers show no text."""
    if not blocks:
        return _unmarked(text).split("\n")
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind in ("header", "section"):
            body = (block.get("text") or {}).get("text")
            if body:
                lines += _unmarked(body).split("\n")
            fields = [_unmarked(f.get("text", "")).split("\n") for f in block.get("fields", [])]
            empty: list[str] = []
            for left, right in zip_longest(fields[::2], fields[1::2], fillvalue=empty):
                for a, b in zip_longest(left, right, fillvalue=""):
                    lines.append(f"{a:<30}{b}".rstrip())
        elif kind == "context":
            parts = [_unmarked(e.get("text", "")) for e in block.get("elements", [])]
            lines += "  ".join(p for p in parts if p).split("\n")
        elif kind == "actions":
            labels = [(e.get("text") or {}).get("text", "") for e in block.get("elements", [])]
            lines.append("  ".join(f"[{label}]" for label in labels))
    return lines


def _unmarked(text: str) -> str:
    text = _LABELLED.sub(r"\1", text)
    text = _BARE.sub(lambda m: ("@" if m[1] != "#" else "#") + m[2].split("^")[-1], text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


# --------------------------------------------------------------------- the jobs
def failing_script(algorithms: int, *, rises: int = 3) -> list[dict[str, Any]]:
    """A big job's life: PENDING, RUNNING (all start), `rises` polls of new bests, a
    quarter of the algorithms stalled (NOT_COMPLETED), then the job FAILS with the rest."""
    names = [f"ALG{i:03d}" for i in range(algorithms)]

    def payload(status: str, statuses: list[str], step: int) -> dict[str, Any]:
        jobs = []
        for i, (name, algo_status) in enumerate(zip(names, statuses, strict=True)):
            entry: dict[str, Any] = {"algorithm": name, "status": algo_status}
            if step > 0:
                value = round(0.5 + 0.02 * step + 0.2 * i / max(algorithms, 1), 4)
                entry |= {"latestPerformance": value, "recentPerformances": [value]}
            jobs.append(entry)
        return {"status": status, "targetPerformance": 0.85, "jobs": jobs}

    stalled = algorithms // 4
    steps = [payload("PENDING", ["PENDING"] * algorithms, 0)]
    steps += [payload("RUNNING", ["RUNNING"] * algorithms, s) for s in range(1, rises + 1)]
    mixed = ["NOT_COMPLETED"] * stalled + ["RUNNING"] * (algorithms - stalled)
    steps.append(payload("RUNNING", mixed, rises))
    final = ["NOT_COMPLETED"] * stalled + ["FAILED"] * (algorithms - stalled)
    steps.append(payload("FAILED", final, rises))
    return steps


@dataclass
class Lifecycle:
    """What one job's channel saw."""

    job: str
    fate: str
    algorithms: int
    channel: str
    # (lines, chars) of the longest version of the card, thread reply, broadcast reply
    longest_card: tuple[int, int] = (0, 0)
    longest_reply: tuple[int, int] = (0, 0)
    longest_broadcast: tuple[int, int] = (0, 0)
    final_status: str = ""
    new_bests: int = 0
    status_changes: int = 0
    messages: list[SinkMessage] = field(default_factory=list)

    def seen(self, message: SinkMessage) -> None:
        lines = shown_lines(message.text, message.blocks)
        size = (len(lines), len("\n".join(lines)))
        if message.thread_ts is None:
            self.longest_card = max(self.longest_card, size)
            return
        self.longest_reply = max(self.longest_reply, size)
        if message.reply_broadcast:
            self.longest_broadcast = max(self.longest_broadcast, size)

    def record(self) -> dict[str, Any]:
        cards = [m for m in self.messages if m.thread_ts is None]
        replies = [m for m in self.messages if m.thread_ts is not None]
        broadcasts = sum(m.reply_broadcast for m in replies)
        channel_level = len(cards) + broadcasts
        allowed_channel = 2 if self.final_status in ALERT_STATUSES else 1
        reply_budget = 1 + self.new_bests + self.status_changes + 2
        longest = max(self.longest_card, self.longest_reply)
        channel_lines = max(self.longest_card[0], self.longest_broadcast[0])
        return {
            "record": "job",
            "fate": self.fate,
            "algorithms": self.algorithms,
            "final_status": self.final_status,
            "posted": len(self.messages),
            "cards": len(cards),
            "thread_replies": len(replies),
            "channel_level": channel_level,
            "broadcasts": broadcasts,
            "card_edits": sum(m.edits for m in cards),
            "longest_lines": longest[0],
            "longest_chars": longest[1],
            "longest_channel_lines": channel_lines,
            "card_lines": self.longest_card[0],
            "card_chars": self.longest_card[1],
            "reply_lines": self.longest_reply[0],
            "reply_chars": self.longest_reply[1],
            "broadcast_lines": self.longest_broadcast[0],
            "broadcast_chars": self.longest_broadcast[1],
            "new_bests_announced": self.new_bests,
            "job_status_changes": self.status_changes,
            "reply_budget": reply_budget,
            "met": {
                "channel_level": channel_level <= allowed_channel,
                "channel_lines": channel_lines <= MAX_CHANNEL_LINES,
                "thread_replies": len(replies) <= reply_budget,
            },
        }


# --------------------------------------------------------------------- the run
def settled(store: Store, keys: Sequence[str]) -> bool:
    """Every job final, nothing left to send, no card waiting for its edit."""
    jobs = [store.get_job(key) for key in keys]
    if not all(job is not None and job.terminal for job in jobs):
        return False
    counts = store.outbox_counts()
    return not counts.get("pending") and not counts.get("sending") and not store.dirty_cards()


def version(store: Store, key: str) -> int:
    """The job's version in the store once everything queued is sent (-1 before): it moves
    when a poll sees a change. The script takes its next step only then, so each step is
    told in a reply of its own, as it is when a job moves at MathFi's pace: on a loaded
    machine the sender would otherwise find two steps queued and merge them into one."""
    counts = store.outbox_counts()
    if counts.get("pending") or counts.get("sending"):
        return -1
    job = store.get_job(key)
    return -1 if job is None else job.version


def tally(store: Store, lifecycles: Sequence[Lifecycle]) -> None:
    """Final statuses, and the new bests and job status changes each channel was told."""
    by_channel = {life.channel: life for life in lifecycles}
    for life in lifecycles:
        job = store.get_job(life.job)
        life.final_status = job.status if job is not None else "?"
    for row in store.rows_in_state("sent"):
        told_channel = by_channel.get(row.channel_id)
        if told_channel is None:
            continue
        told = read_notification(
            row.payload,
            channel_id=row.channel_id,
            job_key=row.job_key,
            kind=row.kind,
            dedupe_key=row.dedupe_key,
        )
        told_channel.new_bests += sum(e.kind is EventKind.NEW_BEST for e in told.events)
        told_channel.status_changes += sum(e.kind is EventKind.JOB_STATUS for e in told.events)


async def run(args: argparse.Namespace, tmp: Path) -> list[Lifecycle]:
    sim = Simulator(speed=args.speed, seed=args.seed)
    sink = SlackSink(token=SINK_TOKEN, team_id="T0SIGNAL")
    sim_runner, sim_url = await start_simulator(sim)
    sink_runner, sink_url = await start_sink(sink)
    runners: list[web.AppRunner] = [sim_runner, sink_runner]
    settings = bench_settings(
        Servers(sim_url, sink_url), database=tmp / "bot.db", interval=args.interval
    )
    service = Service(
        settings,
        poller_config=PollerConfig(interval=args.interval, concurrency=10, resync_every=1),
        sender_config=SenderConfig(pace=args.pace),
    )
    await service.start()
    try:
        app = web.AppRunner(service.web_app(), access_log=None)
        await app.setup()
        await web.TCPSite(app, "127.0.0.1", 0).start()
        runners.insert(0, app)
        url = f"http://127.0.0.1:{app.addresses[0][1]}/slack/events"
        dataset = sim.create_dataset("signal", ready=True)
        lifecycles = [
            Lifecycle(
                sim.start_training(dataset, performance_threshold=0.85, fate=fate), fate, 4, ""
            )
            for fate in args.fates
        ]
        script = failing_script(args.algorithms)
        big = Lifecycle(sim.script_job(script), "FAILED (scripted)", args.algorithms, "")
        lifecycles.append(big)
        for i, life in enumerate(lifecycles):
            life.channel = f"C0SIGNAL{i:02d}"
        channels = {life.channel: life for life in lifecycles}

        def seen(_kind: str, message: SinkMessage) -> None:
            if message.channel in channels:
                channels[message.channel].seen(message)

        sink.subscribe(seen)
        async with aiohttp.ClientSession() as session:
            for life in lifecycles:
                text = f"subscribe {life.job} --min-improvement 0.01 --mention {ONCALL}"
                if args.broadcast:
                    text += f" --broadcast {args.broadcast}"
                fields = {
                    "command": "/mathfi",
                    "text": text,
                    "team_id": sink.team_id,
                    "channel_id": life.channel,
                    "user_id": "U0ALICE",
                    "response_url": sink.new_response_url(),
                    "trigger_id": "1.2.3",
                }
                answer = await signed_command(session, url, secret=SECRET, fields=fields)
                if answer["status"] != 200:
                    raise RuntimeError(f"subscribe answered {answer}")
        deadline = time.monotonic() + args.max_seconds
        steps_left = len(script) - 1
        known = -1  # the store has not got the job yet
        while not await service.store.run(lambda s: settled(s, [life.job for life in lifecycles])):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the jobs did not settle within {args.max_seconds} s")
            now_seen = await service.store.run(lambda s: version(s, big.job))
            if steps_left and now_seen > known:  # the last step was seen: take the next
                sim.advance(big.job)
                steps_left -= 1
                known = now_seen
            await asyncio.sleep(0.05)
        await service.store.run(lambda s: tally(s, lifecycles))
        for life in lifecycles:
            life.messages = list(sink.channels.get(life.channel, []))
        return lifecycles
    finally:
        await service.stop(grace=5)
        for runner in runners:
            await runner.cleanup()


def summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "record": "summary",
        "jobs": len(records),
        "posted": sum(r["posted"] for r in records),
        "channel_level": sum(r["channel_level"] for r in records),
        "card_edits": sum(r["card_edits"] for r in records),
        "longest_channel_lines": max(r["longest_channel_lines"] for r in records),
        "longest_broadcast_lines": max(r["broadcast_lines"] for r in records),
        "longest_lines": max(r["longest_lines"] for r in records),
        "longest_chars": max(r["longest_chars"] for r in records),
        "met": all(all(r["met"].values()) for r in records),
    }


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=60.0, help="simulated time x (60)")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (7, the demo's)")
    parser.add_argument("--interval", type=float, default=0.5, help="POLL_INTERVAL (0.5)")
    parser.add_argument("--pace", type=float, default=0.25, help="s between posts (0.25)")
    parser.add_argument("--algorithms", type=int, default=120, help="the big job's (120)")
    parser.add_argument(
        "--fates", type=lambda s: s.split(","), default=list(FATES), help="forced fates"
    )
    parser.add_argument(
        "--broadcast",
        choices=("final", "failures", "none"),
        default=None,
        help="the subscriptions' --broadcast (default: not given, i.e. final)",
    )
    parser.add_argument("--max-seconds", type=float, default=300.0, help="give up after (300)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    started = machine()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-signal-") as tmp:
        lifecycles = asyncio.run(run(args, Path(tmp)))
    records = [life.record() for life in lifecycles]
    for record in records:
        emit(record)
    emit({**summary(records), "benchmark": "signal", "machine": started, "args": vars(args)})


if __name__ == "__main__":
    main()
