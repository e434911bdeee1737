"""Pure model of a MathFi training job: curves, the race rules and the statuses.

No I/O and no clock: a run is asked for its state at a simulated time (seconds since the
job was created) and computes the ticks it has not computed yet, one RNG draw per running
algorithm per tick, so the work per poll is amortised O(1) and the result depends only on
the seed, never on how often the job is polled.

Lifecycle (REFERENCE.md §5.5, legacy rules): PENDING for `pending_seconds`, then RUNNING.
Tick n (n >= 0) is sampled at running time `n * tick_seconds`; rules are checked from tick 1
in this order: planned failure -> FAILED; any running algorithm at or above the threshold ->
COMPLETED (the best of those is the champion, the others NOT_COMPLETED); an algorithm whose
best value improved by less than `stall_delta` over the last `stall_window` -> that algorithm
NOT_COMPLETED (all of them -> job NOT_COMPLETED); running time >= `time_limit` -> TIMED_OUT.
A forced `fate` suspends the rules that would contradict it and shapes the curves so that it
happens within a few simulated minutes (TIMED_OUT uses min(time_limit, 180 s), FAILED
strikes within 120 s, NOT_COMPLETED stalls after about `stall_window` plus a minute).
`failure_rate` is the chance, drawn from the job's RNG at start, that a natural job is
doomed: it is then planned exactly like fate FAILED.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from simulator.curves import FAMILIES, Curve, draw_curve

ALGORITHMS = ("BSEV01", "BSEV02", "BSIX01", "BFIF01")
TERMINAL_STATUSES = frozenset({"COMPLETED", "TIMED_OUT", "NOT_COMPLETED", "CANCELLED", "FAILED"})
FATES = frozenset({"COMPLETED", "NOT_COMPLETED", "TIMED_OUT", "FAILED"})
RECENT = 5
_FORCED_TIMEOUT = 180.0
_FORCED_FAILURE_WITHIN = 120.0


def new_key(rng: random.Random) -> str:
    """A UUIDv4 drawn from `rng`, so keys are reproducible for a given seed."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass(frozen=True)
class Rules:
    pending_seconds: float = 5.0
    stall_window: float = 300.0
    stall_delta: float = 0.02
    time_limit: float = 3600.0
    tick_seconds: float = 10.0
    time_scale: float = 1.0  # curves play 1 / time_scale times faster (see curves.py)

    @classmethod
    def compressed(cls, factor: float, **overrides: float) -> Rules:
        """MathFi's rules and curves played `factor` times faster (a lifecycle in seconds)."""
        base = cls()
        values = {
            "pending_seconds": base.pending_seconds / factor,
            "stall_window": base.stall_window / factor,
            "stall_delta": base.stall_delta,
            "time_limit": base.time_limit / factor,
            "tick_seconds": base.tick_seconds / factor,
            "time_scale": 1.0 / factor,
        }
        return cls(**(values | overrides))

    @property
    def window_ticks(self) -> int:
        return max(1, round(self.stall_window / self.tick_seconds))

    def ticks_for(self, seconds: float) -> int:
        return max(1, math.ceil(seconds / self.tick_seconds))


@dataclass(frozen=True)
class Plan:
    curves: tuple[Curve, ...]
    fail_tick: int | None = None
    limit_ticks: int | None = None
    stall: bool = True
    families: tuple[str, ...] = ()  # one per algorithm for natural jobs, empty when forced


def _capped(rng: random.Random, threshold: float, *, tau: tuple[float, float]) -> Curve:
    """A curve that levels off below the threshold and never reaches it."""
    height = threshold * rng.uniform(0.8, 0.97)
    start = min(rng.uniform(0.45, 0.55), 0.7 * height)
    cap = max(0.0, threshold - 0.001)
    return Curve(start, height, rng.uniform(*tau), cap=cap)


def _winner(rng: random.Random, threshold: float) -> Curve:
    """Crosses the threshold 40 to 150 simulated seconds into the run."""
    height = min(0.9999, threshold + rng.uniform(0.03, 0.1))
    start = min(rng.uniform(0.45, 0.55), threshold - 0.05)
    ratio = (height - start) / max(height - threshold, 1e-6)
    tau = rng.uniform(40.0, 150.0) / math.log(ratio) if ratio > 1 else 30.0
    return Curve(start, height, tau)


def plan_job(
    rng: random.Random,
    *,
    threshold: float,
    rules: Rules,
    fate: str | None,
    failure_rate: float,
    families: Sequence[str] = FAMILIES,
) -> Plan:
    """Draw a job's curves and forced events from its own RNG.

    A natural job draws each algorithm's curve family from `families` (curves.py).
    """
    doomed = rng.random() < failure_rate
    if fate is None and doomed:
        fate = "FAILED"
    if fate is None:
        chosen = tuple(rng.choice(tuple(families)) for _ in ALGORITHMS)
        pairs = zip(ALGORITHMS, chosen, strict=True)
        curves = tuple(draw_curve(rng, name, family) for name, family in pairs)
        limit = rules.ticks_for(rules.time_limit)
        return Plan(curves, limit_ticks=limit, families=chosen)
    if fate == "COMPLETED":
        winner = rng.randrange(len(ALGORITHMS))
        curves = tuple(
            _winner(rng, threshold) if i == winner else _capped(rng, threshold, tau=(20.0, 60.0))
            for i in range(len(ALGORITHMS))
        )
        return Plan(curves, stall=False)
    if fate == "TIMED_OUT":
        curves = tuple(_capped(rng, threshold, tau=(300.0, 900.0)) for _ in ALGORITHMS)
        limit = rules.ticks_for(min(rules.time_limit, _FORCED_TIMEOUT))
        return Plan(curves, limit_ticks=limit, stall=False)
    curves = tuple(_capped(rng, threshold, tau=(10.0, 40.0)) for _ in ALGORITHMS)
    if fate == "FAILED":
        fail_tick = rng.randint(1, rules.ticks_for(_FORCED_FAILURE_WITHIN))
        return Plan(curves, fail_tick=fail_tick, stall=False)
    if fate == "NOT_COMPLETED":
        return Plan(curves)
    raise ValueError(f"unknown fate {fate!r}; expected one of {sorted(FATES)}")


class _Track:
    """One competing algorithm: its last values and the running best over the stall window."""

    __slots__ = ("best", "curve", "key", "name", "recent", "status", "window")

    def __init__(self, name: str, key: str, curve: Curve, window_ticks: int) -> None:
        self.name, self.key, self.curve = name, key, curve
        self.status = "PENDING"
        self.recent: deque[float] = deque(maxlen=RECENT)
        self.best = -1.0
        self.window: deque[float] = deque(maxlen=window_ticks + 1)

    def sample(self, seconds: float, rng: random.Random) -> float:
        value = self.curve.sample(seconds, rng)
        self.recent.append(value)
        self.best = max(self.best, value)
        self.window.append(self.best)
        return value

    def stalled(self, delta: float) -> bool:
        full = len(self.window) == self.window.maxlen
        return full and self.window[-1] - self.window[0] < delta

    def payload(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"trainingJobKey": self.key, "algorithm": self.name}
        entry["status"] = self.status
        if self.recent:
            entry["latestPerformance"] = self.recent[-1]
        entry["recentPerformances"] = list(self.recent)
        return entry


class TrainingRun:
    """A simulated training job whose state is computed lazily from the simulated time."""

    def __init__(
        self,
        key: str,
        *,
        dataset_key: str,
        scaling_factor: int,
        threshold: float,
        rules: Rules,
        plan: Plan,
        rng: random.Random,
    ) -> None:
        self.key, self.dataset_key, self.scaling_factor = key, dataset_key, scaling_factor
        self.threshold, self._rules, self._plan, self._rng = threshold, rules, plan, rng
        pairs = zip(ALGORITHMS, plan.curves, strict=True)
        self._tracks = [_Track(name, new_key(rng), c, rules.window_ticks) for name, c in pairs]
        self._model_key = new_key(rng)
        self._gaps = (rng.uniform(0.005, 0.03), rng.uniform(0.0, 0.02))
        self._tick = -1
        self.outcome: str | None = None
        self._champion: _Track | None = None

    def status_at(self, seconds: float) -> str:
        """The job's status `seconds` of simulated time after its creation."""
        if self.outcome is not None:
            return self.outcome
        running = seconds - self._rules.pending_seconds
        if running < 0:
            return "PENDING"
        self._advance_to(math.floor(running / self._rules.tick_seconds))
        return self.outcome or "RUNNING"

    def progress(self, seconds: float) -> dict[str, Any]:
        """The body of GET /api/v1/training/{key}/progress."""
        status = self.status_at(seconds)
        jobs = [track.payload() for track in self._tracks]
        return {"status": status, "targetPerformance": self.threshold, "jobs": jobs}

    def summary(self, seconds: float) -> dict[str, Any]:
        """The body of GET /api/v1/training/{key}."""
        status = self.status_at(seconds)
        best = max((t.best for t in self._tracks), default=-1.0)
        body: dict[str, Any] = {
            "trainingJobKey": self.key,
            "datasetKey": self.dataset_key,
            "status": status,
            "targetPerformance": self.threshold,
            "scalingFactor": self.scaling_factor,
            "achievedPerformance": best if best >= 0 else None,
            "modelKey": None,
        }
        if self._champion is not None:
            achieved = self._champion.recent[-1]
            body["modelKey"] = self._model_key
            body["trainingPerformance"] = round(min(1.0, achieved + self._gaps[0]), 4)
            body["testPerformance"] = round(max(0.0, achieved - self._gaps[1]), 4)
        return body

    def cancel(self, seconds: float) -> bool:
        """Cancel if PENDING or RUNNING at `seconds`; False if the job had already ended."""
        if self.status_at(seconds) in TERMINAL_STATUSES:
            return False
        self._finish("CANCELLED")
        return True

    def _advance_to(self, tick: int) -> None:
        while self._tick < tick and self.outcome is None:
            self._tick += 1
            self._step(self._tick)

    def _step(self, tick: int) -> None:
        if tick == 0:
            for track in self._tracks:
                track.status = "RUNNING"
        running = [t for t in self._tracks if t.status == "RUNNING"]
        for track in running:
            track.sample(tick * self._rules.tick_seconds / self._rules.time_scale, self._rng)
        if tick == 0:
            return
        if tick == self._plan.fail_tick:
            self._finish("FAILED")
            return
        reached = [t for t in running if t.recent[-1] >= self.threshold]
        if reached:
            self._champion = max(reached, key=lambda t: t.recent[-1])
            self._champion.status = "COMPLETED"
            for track in self._tracks:
                if track is not self._champion:
                    track.status = "NOT_COMPLETED"
            self.outcome = "COMPLETED"
            return
        if self._plan.stall:
            for track in running:
                if track.stalled(self._rules.stall_delta):
                    track.status = "NOT_COMPLETED"
            if all(t.status != "RUNNING" for t in self._tracks):
                self.outcome = "NOT_COMPLETED"
                return
        if self._plan.limit_ticks is not None and tick >= self._plan.limit_ticks:
            self._finish("TIMED_OUT")

    def _finish(self, status: str) -> None:
        self.outcome = status
        for track in self._tracks:
            if track.status not in TERMINAL_STATUSES:
                track.status = status


class ScriptedJob:
    """A job that replays given progress payloads verbatim, one step per `advance`."""

    def __init__(
        self,
        key: str,
        *,
        dataset_key: str,
        payloads: Sequence[Any],
        training: Mapping[str, Any],
    ) -> None:
        if not payloads:
            raise ValueError("a scripted job needs at least one payload")
        self.key, self.dataset_key = key, dataset_key
        self._payloads, self._training = list(payloads), dict(training)
        self.index = 0

    def advance(self, steps: int = 1) -> int:
        self.index = max(0, min(self.index + steps, len(self._payloads) - 1))
        return self.index

    def progress(self) -> Any:
        return self._payloads[self.index]

    def _field(self, name: str) -> Any:
        payload = self.progress()
        return payload.get(name) if isinstance(payload, Mapping) else None

    def status(self) -> str:
        status = self._field("status")
        return status if isinstance(status, str) else "RUNNING"

    def summary(self) -> dict[str, Any]:
        """Sensible defaults, derived from the current payload, with `training` merged over."""
        target = self._field("targetPerformance")
        body: dict[str, Any] = {
            "trainingJobKey": self.key,
            "datasetKey": self.dataset_key,
            "status": self.status(),
            "targetPerformance": target if isinstance(target, int | float) else 0.8,
            "scalingFactor": 19,
            "achievedPerformance": None,
            "modelKey": None,
        }
        return body | self._training
