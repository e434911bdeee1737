"""What acting from Slack needs besides the command context: the action runner, the MathFi
calls, the permission check, and the confirmations shown and not yet clicked.

A confirmation's button carries only a token (at most 200 characters, see
`bot.slack.actions_render`); the parameters it names stay here, so a forged click cannot
change them: a token this process did not mint finds nothing. The token is derived from
the request that asked (Slack's `trigger_id`, the person, the channel, what was asked), so
Slack delivering the same command twice shows the same confirmation, and its two buttons
act once. Confirmations live `ttl` seconds (they are not kept across a restart: a click
after one is told to ask again, and nothing is done).

The clicks in progress are kept too (`ActionTools.clicks`): when the service stops, they
get a few seconds to finish (`settle`), then the MathFi calls still waited on are cut short
and each of those actions is recorded and told as unknown, all before the store closes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.core.models import Dataset, DatasetList, TrainingJob, TrainingProgress
from bot.slack.actions import ActionKind, ActionRunner, PermissionChecker, StartParameters

log = logging.getLogger("bot.actions")

CONFIRMATION_TTL = 900.0  # 15 min: an ephemeral confirmation older than this is stale
MAX_PENDING = 10_000
DATASETS_PER_PAGE = 10
LAST_WORDS = 1.5  # s: a click cut short by a stop records and tells its unknown outcome


class ActionsMathFi(Protocol):
    """The MathFi reads the action commands make before they ask for a confirmation."""

    async def get_progress(self, key: str) -> TrainingProgress: ...
    async def get_training(self, key: str) -> TrainingJob: ...
    async def get_dataset(self, key: str) -> Dataset: ...
    async def list_datasets(self, *, offset: int = 0, limit: int = 10) -> DatasetList: ...


@dataclass(frozen=True)
class Proposal:
    """What a confirmation's button does, for whom: a start (or retrain) or a cancel."""

    kind: ActionKind
    team_id: str
    channel_id: str
    user_id: str
    start: StartParameters | None = None
    job_key: str | None = None

    def describe(self) -> str:
        if self.start is not None:
            return f"{self.kind}:{self.start.model_dump_json()}"
        return f"{self.kind}:{self.job_key}"


class Confirmations:
    """The confirmations shown and not yet stale, by token (in memory, bounded)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        ttl: float = CONFIRMATION_TTL,
        capacity: int = MAX_PENDING,
    ) -> None:
        self._clock, self._ttl, self._capacity = clock, ttl, capacity
        self._secret = secrets.token_bytes(32)
        self._pending: OrderedDict[str, tuple[float, Proposal]] = OrderedDict()

    def propose(self, proposal: Proposal, *, trigger_id: str) -> str:
        """The token for `proposal`'s button; the same request (a redelivery) gets the
        same token, a request without a `trigger_id` a fresh one."""
        nonce = trigger_id or secrets.token_hex(16)
        seed = "\x1f".join((nonce, proposal.user_id, proposal.channel_id, proposal.describe()))
        digest = hmac.new(self._secret, seed.encode(), hashlib.sha256).digest()
        token = "c1." + base64.urlsafe_b64encode(digest[:18]).decode()
        self._forget_stale()
        self._pending.pop(token, None)
        self._pending[token] = (self._clock() + self._ttl, proposal)
        while len(self._pending) > self._capacity:
            self._pending.popitem(last=False)
        return token

    def get(self, token: str) -> Proposal | None:
        """The proposal `token` names, while it is fresh; kept, so a second click on the
        same button finds it again (and the action runner tells it was done)."""
        self._forget_stale()
        entry = self._pending.get(token)
        return entry[1] if entry is not None else None

    def _forget_stale(self) -> None:
        now = self._clock()
        while self._pending:
            token, (expires, _) = next(iter(self._pending.items()))
            if expires > now:
                break
            del self._pending[token]

    def __len__(self) -> int:
        return len(self._pending)


@dataclass
class ActionTools:
    runner: ActionRunner
    mathfi: ActionsMathFi
    permissions: PermissionChecker
    confirmations: Confirmations = field(default_factory=Confirmations)
    datasets_per_page: int = DATASETS_PER_PAGE
    clicks: set[asyncio.Task[Any]] = field(default_factory=set)  # in progress

    def track(self) -> None:
        """Called by a click's listener: its task is in progress until it ends."""
        task = asyncio.current_task()
        if task is not None:
            self.clicks.add(task)
            task.add_done_callback(self.clicks.discard)

    async def settle(self, *, within: float, last_words: float = LAST_WORDS) -> None:
        """The service stops (no click comes in any more): the clicks in progress get
        `within` seconds to finish; then the MathFi calls still waited on are cut short
        (their actions end `unknown`, on the record and told to the clicker) and the clicks
        get `last_words` seconds more. One still running then is cancelled (its action, if
        begun, ends `unknown` too). The store must stay open until this returns."""
        if self.clicks:
            await asyncio.wait(set(self.clicks), timeout=within)
        if not self.clicks:
            return
        cut = self.runner.cut_short()
        log.warning(
            "stopping: %d click(s) in progress; %d MathFi call(s) cut short, told 'outcome "
            "unknown'", len(self.clicks), cut,
        )  # fmt: skip
        await asyncio.wait(set(self.clicks), timeout=last_words)
        stuck = set(self.clicks)
        for task in stuck:
            task.cancel()
        if stuck:
            await asyncio.wait(stuck, timeout=last_words)
