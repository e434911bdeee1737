"""Offline benchmark of the pure forecaster over seeded simulated jobs (no servers, no clock).

Each job is the simulator's own model (simulator.training) stepped tick by tick in
simulated time; every `--poll` seconds the bot's view is rebuilt as the poller would keep
it (a history point per algorithm whose latest value changed, the newest 48 kept) and
handed to bot.core.forecast.forecast_job and the warning gate. Thresholds are drawn
around the job's best plateau so that fates mix. Output: JSON lines, one per job
(`"record": "job"`) then one summary per curve family and one for all
(`"record": "summary"`). `python -m bench.forecast --jobs 300` runs in seconds.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.core.forecast import ForecastRules, JobForecast, Verdict, forecast_job
from bot.core.forecast_warnings import WarningKind, WarningState, next_warning
from bot.core.models import Snapshot, TrainingProgress
from simulator.curves import FAMILIES
from simulator.training import ALGORITHMS, Rules, TrainingRun, plan_job

HISTORY_KEEP = 48  # store.db.HISTORY_KEEP
CHECKPOINTS = (0.25, 0.5, 0.75)
MISSES = ("NOT_COMPLETED", "TIMED_OUT")


@dataclass(frozen=True)
class Point:
    algorithm: str
    at: float
    value: float


@dataclass
class JobResult:
    index: int
    family: str
    families: tuple[str, ...]
    threshold: float
    outcome: str = "RUNNING"
    end: float = 0.0
    running_from: float = 0.0
    etas: list[tuple[float, float | None]] = field(default_factory=list)
    ever_at_risk: bool = False
    warnings: list[dict[str, Any]] = field(default_factory=list)
    stalls: dict[str, float] = field(default_factory=dict)  # algorithm -> stopped at
    leading_stalls: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {
            "record": "job",
            "job": self.index,
            "family": self.family,
            "families": list(self.families),
            "threshold": self.threshold,
            "outcome": self.outcome,
            "run_s": self.end - self.running_from,
            "ever_at_risk": self.ever_at_risk,
            "warnings": self.warnings,
            "stalls": self.stalls,
            "leading_stalls": self.leading_stalls,
            "ape": {str(c): self.ape(c) for c in CHECKPOINTS},
        }

    def ape(self, fraction: float) -> float | None:
        """|predicted - actual| / actual remaining time at `fraction` of the run; None when
        the job did not complete or no ETA was given at that poll."""
        if self.outcome != "COMPLETED":
            return None
        when = self.running_from + fraction * (self.end - self.running_from)
        seen = [(t, eta) for t, eta in self.etas if t <= when]
        if not seen or seen[-1][1] is None:
            return None
        t, eta = seen[-1]
        actual = self.end - t
        return abs(eta - actual) / actual if actual > 0 else None


def simulate(index: int, *, seed: int, poll: float, cooldown: float) -> JobResult:
    rng = random.Random(f"bench-forecast:{seed}:{index}")
    rules = Rules()
    plan = plan_job(rng, threshold=0.8, rules=rules, fate=None, failure_rate=0.03)
    pick = random.Random(f"threshold:{seed}:{index}")
    threshold = round(min(0.99, max(c.height for c in plan.curves) + pick.uniform(-0.1, 0.04)), 2)
    if not plan.families:  # doomed (failure_rate): its capped curves were drawn for 0.8
        threshold = 0.8
    run = TrainingRun(
        f"job-{index}",
        dataset_key="d",
        scaling_factor=19,
        threshold=threshold,
        rules=rules,
        plan=plan,
        rng=rng,
    )
    result = JobResult(index, "", plan.families, threshold)
    frules = ForecastRules(rules.stall_window, rules.stall_delta, rules.time_limit)
    history: dict[str, list[Point]] = {name: [] for name in ALGORITHMS}
    last: dict[str, float | None] = dict.fromkeys(ALGORITHMS)
    statuses: dict[str, str] = dict.fromkeys(ALGORITHMS, "PENDING")
    best: dict[str, float] = dict.fromkeys(ALGORITHMS, -1.0)
    verdict: Verdict | None = None
    previous: JobForecast | None = None
    state = WarningState()
    started: float | None = None
    t = 0.0
    while True:
        payload = run.progress(t)
        _track_stops(result, payload, statuses, best, t)
        if payload["status"] == "RUNNING" and started is None:
            started = result.running_from = t
        if payload["status"] not in ("PENDING", "RUNNING"):
            result.outcome, result.end = payload["status"], t
            break
        if t % poll == 0 and started is not None:
            for job in payload["jobs"]:
                value = job.get("latestPerformance")
                if value is not None and value != last[job["algorithm"]]:
                    kept = history[job["algorithm"]]
                    kept.append(Point(job["algorithm"], t, value))
                    del kept[:-HISTORY_KEEP]
                    last[job["algorithm"]] = value
            snapshot = Snapshot.from_api(f"job-{index}", TrainingProgress.model_validate(payload))
            points = [p for name in ALGORITHMS for p in history[name]]
            forecast = forecast_job(
                points, snapshot, now=t, rules=frules, previous=previous, started_at=started
            )
            previous = forecast
            verdict = _keep(forecast, verdict)
            result.ever_at_risk |= forecast.verdict is Verdict.AT_RISK
            result.etas.append((t, forecast.eta if verdict is Verdict.ON_TRACK else None))
            warning, state = next_warning(forecast, state, now=t, cooldown=cooldown)
            if warning is not None:
                entry = {"kind": str(warning.kind), "at": t, "algorithm": warning.algorithm}
                if warning.stall is not None:
                    entry["stalling"] = warning.stall.algorithm
                result.warnings.append(entry)
        t += rules.tick_seconds
    result.family = _decisive_family(plan.families, best)
    return result


def _keep(forecast: JobForecast, previous: Verdict | None) -> Verdict | None:
    if forecast.verdict in (Verdict.ON_TRACK, Verdict.AT_RISK):
        return forecast.verdict
    return previous


def _track_stops(
    result: JobResult,
    payload: dict[str, Any],
    statuses: dict[str, str],
    best: dict[str, float],
    t: float,
) -> None:
    """Record each algorithm stopped by the stall rule (NOT_COMPLETED while the job runs or
    ends NOT_COMPLETED), and whether it was the leading running algorithm then."""
    leader = max((n for n in ALGORITHMS if statuses[n] == "RUNNING"), key=best.get, default=None)
    for job in payload["jobs"]:
        name, status = job["algorithm"], job["status"]
        was = statuses[name]
        stalled = was == "RUNNING" and status == "NOT_COMPLETED"
        if stalled and payload["status"] in ("RUNNING", "NOT_COMPLETED"):
            result.stalls[name] = t
            if name == leader:
                result.leading_stalls.append(name)
        statuses[name] = status
        value = job.get("latestPerformance")
        if value is not None:
            best[name] = max(best[name], value)


def _decisive_family(families: tuple[str, ...], best: dict[str, float]) -> str:
    if not families:
        return "failed"  # planned to fail: no curve family decided it
    top = max(range(len(ALGORITHMS)), key=lambda i: best[ALGORITHMS[i]])
    return families[top]


def summarise(name: str, jobs: Sequence[JobResult], cooldown: float) -> dict[str, Any]:
    completed = [j for j in jobs if j.outcome == "COMPLETED"]
    missed = [j for j in jobs if j.outcome in MISSES]
    mdape: dict[str, float | None] = {}
    coverage: dict[str, float | None] = {}
    for c in CHECKPOINTS:
        apes = [a for a in (j.ape(c) for j in completed) if a is not None]
        mdape[str(c)] = _r(statistics.median(apes) * 100) if apes else None
        coverage[str(c)] = _r(len(apes) / len(completed)) if completed else None
    leads = []
    for job in missed:
        first = next((w["at"] for w in job.warnings if w["kind"] == WarningKind.AT_RISK), None)
        if first is not None and first < job.end:
            leads.append(job.end - first)
    stall_warnings = [(j, w) for j in jobs for w in j.warnings if w["kind"] == WarningKind.STALL]
    right = [(j, w) for j, w in stall_warnings if w["algorithm"] in j.stalls]
    # A stall is announced by a stall warning, or by an at_risk warning that names it.
    told = [(j, w.get("stalling", w["algorithm"]), w["at"]) for j in jobs for w in j.warnings]
    told = [(j, a, at) for j, a, at in told if a in j.stalls and at < j.stalls[a]]
    stall_leads = [j.stalls[a] - at for j, a, at in told]
    leading = [(j, a) for j in jobs for a in j.leading_stalls]
    warned = {(j.index, a) for j, a, _ in told}
    counts = [len(j.warnings) for j in jobs]
    gaps = [
        b["at"] - a["at"] for j in jobs for a, b in zip(j.warnings, j.warnings[1:], strict=False)
    ]
    return {
        "record": "summary",
        "family": name,
        "jobs": len(jobs),
        "outcomes": dict(sorted(Counter(j.outcome for j in jobs).items())),
        "eta_mdape_pct": mdape,
        "eta_coverage": coverage,
        "at_risk_recall": _r(len(leads) / len(missed)) if missed else None,
        "at_risk_lead_median_s": _r(statistics.median(leads)) if leads else None,
        "false_alarm_rate": _r(sum(j.ever_at_risk for j in completed) / len(completed))
        if completed
        else None,
        "stall_precision": _r(len(right) / len(stall_warnings)) if stall_warnings else None,
        "stall_recall": _r(sum((j.index, a) in warned for j, a in leading) / len(leading))
        if leading
        else None,
        "stall_lead_median_s": _r(statistics.median(stall_leads)) if stall_leads else None,
        "warnings_per_job": {"mean": _r(statistics.fmean(counts)), "max": max(counts)},
        "cooldown_honoured": all(g >= cooldown for g in gaps),
    }


def _r(value: float) -> float:
    return round(value, 3)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--poll", type=float, default=30.0, help="simulated s, multiple of 10")
    parser.add_argument("--cooldown", type=float, default=600.0)
    parser.add_argument("--summary-only", action="store_true")
    args = parser.parse_args(argv)
    jobs = [
        simulate(i, seed=args.seed, poll=args.poll, cooldown=args.cooldown)
        for i in range(args.jobs)
    ]
    out = sys.stdout
    if not args.summary_only:
        for job in jobs:
            out.write(json.dumps(job.row()) + "\n")
    for family in (*FAMILIES, "failed"):
        chosen = [j for j in jobs if j.family == family]
        if chosen:
            out.write(json.dumps(summarise(family, chosen, args.cooldown)) + "\n")
    out.write(json.dumps(summarise("all", jobs, args.cooldown)) + "\n")


if __name__ == "__main__":
    main()
