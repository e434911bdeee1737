"""What every command and button handler shares: the context they run in, the usage
lines for the configured command name, and how a MathFi snapshot is fetched."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from bot.core.forecast import ForecastRules
from bot.core.models import Snapshot, TrainingJob, TrainingProgress, is_terminal
from bot.metrics import Metrics
from bot.slack.command_text import DEFAULT_COMMAND, USAGE, CommandError
from bot.slack.commands.acting import ActionTools
from bot.slack.permissions import Decision
from bot.slack.render import Message, render_error
from store import AsyncStore


class PermissionChecker(Protocol):
    """Who may act (`bot.slack.permissions.PermissionCheck`): the on-call Acknowledge."""

    async def check(self, user_id: str) -> Decision: ...


class MathFiReader(Protocol):
    """What the commands need of the MathFi client."""

    async def get_progress(self, key: str) -> TrainingProgress: ...
    async def get_training(self, key: str) -> TrainingJob: ...


class PersonalSlack(Protocol):
    """What personal subscriptions need of Slack (`bot.slack.home.HomePublisher`)."""

    async def dm_channel(self, user_id: str) -> str: ...
    async def home_opened(self, user_id: str, team_id: str | None) -> None: ...
    async def publish_home(self, user_id: str) -> bool: ...


@dataclass
class CommandContext:
    store: AsyncStore
    mathfi: MathFiReader
    metrics: Metrics
    watch: Callable[[str], Awaitable[None]]  # the poller's `watch`
    command: str = "/mathfi"
    subscription_limit: int = 200  # per channel
    max_subscriptions: int = 5000  # in the whole store
    allow_broadcast_mentions: bool = False  # `--mention @here/@channel/@everyone`
    poll_interval: float = 30.0
    # the poller's forecast rules (MathFi's stop rules): for `status`
    forecast: ForecastRules = field(default_factory=ForecastRules)
    # the ACTIONS rule, for the on-call Acknowledge button (None: nobody may acknowledge)
    permissions: PermissionChecker | None = None
    clock: Callable[[], float] = time.time
    acting: ActionTools | None = None  # train, cancel, retrain, datasets (commands/actions.py)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    personal: PersonalSlack | None = None  # DMs and the App Home (commands/personal.py)


def usage(ctx: CommandContext, name: str) -> str:
    return for_command(ctx, USAGE[name])


def for_command(ctx: CommandContext, usage: str) -> str:
    """A usage line (written for `/mathfi`) for the command name this app answers to."""
    return ctx.command + usage.removeprefix(DEFAULT_COMMAND)


def command_error(ctx: CommandContext, err: CommandError) -> Message:
    """The reply to a text that is not a command: the parser's explanation and a usage line.

    The parser's message is already mrkdwn-escaped and `render_error` escapes its text, so
    one level is undone first (`&amp;` last), else `<` would show as `&lt;`.
    """
    text = err.message.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return render_error(text, usage=for_command(ctx, err.usage or USAGE["help"]))


async def fetch_snapshot(ctx: CommandContext, key: str) -> Snapshot:
    progress = await ctx.mathfi.get_progress(key)
    job = await ctx.mathfi.get_training(key) if is_terminal(progress.status) else None
    return Snapshot.from_api(key, progress, job)
