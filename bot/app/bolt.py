"""The service's Slack side: who the bot is (auth.test), and the bolt `AsyncApp` that slash
commands and buttons come through, with its same-team guard and its answer to a bug in a
listener; plus Socket Mode's handler and its token probe (which `mathfi-bot check` shares;
both give up after SLACK_TIMEOUT).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.core.forecast import ForecastRules
from bot.errors import ConfigError
from bot.mathfi.client import MathFiClient
from bot.metrics import Metrics
from bot.slack import commands
from bot.slack.actions import ActionRunner
from bot.slack.api import SlackIdentity
from bot.slack.commands import Confirmations
from bot.slack.home import HomePublisher
from bot.slack.permissions import PermissionCheck
from store import AsyncStore

# The service's log lines keep the logger name they had before this module was cut out.
log = logging.getLogger("bot.app.service")

# auth.test errors that mean the bot token itself is wrong: the start is refused.
REFUSED_TOKEN = frozenset({"invalid_auth", "not_authed", "token_revoked", "account_inactive"})


class SlackFront:
    """The bot's own ids from auth.test (asked again on the first command when Slack did
    not answer at start), and the guard that refuses commands from another team."""

    def __init__(self, slack: AsyncWebClient) -> None:
        self.slack = slack
        self.team_id: str | None = None
        self.identity: SlackIdentity | None = None  # the bot's own ids, from auth.test

    async def identify(self) -> None:
        """auth.test: which team the bot belongs to (commands from others are refused), and
        its own user and bot ids (reconciliation adopts only messages they posted)."""
        try:
            # slack_sdk applies its `timeout` only to sessions it creates itself: enforce
            # SLACK_TIMEOUT here, or a silent Slack holds the start for the session's 30 s.
            async with asyncio.timeout(self.slack.timeout):
                answer = await self.slack.auth_test()
        except SlackApiError as err:
            error = err.response.get("error") if err.response.status_code < 500 else None
            if error in REFUSED_TOKEN:
                raise ConfigError(
                    f"SLACK_BOT_TOKEN was refused by Slack ({error}); run `mathfi-bot check`"
                ) from None
            log.warning(
                "Slack auth.test failed (%s); will try again on the first command",
                err.response.get("error"),
            )
            return
        except (aiohttp.ClientError, TimeoutError) as err:
            log.warning("Slack unreachable at start (%s); will try again later", err)
            return
        self.team_id = str(answer.get("team_id") or "") or None
        self.identity = SlackIdentity.from_auth_test(answer)
        log.info(
            "Slack: bot %s in team %s (%s)", answer.get("user"), answer.get("team"), self.team_id
        )

    async def same_team_only(
        self,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse:
        if self.team_id is None:
            await self.identify()
        team = req.context.team_id
        if self.team_id and team and team != self.team_id:
            log.warning(
                "refused a request from Slack team %s (this bot serves %s)", team, self.team_id
            )
            body = {
                "response_type": "ephemeral",
                "text": "This MathFi bot serves another Slack workspace.",
            }
            return BoltResponse(
                status=200, body=json.dumps(body), headers={"content-type": "application/json"}
            )
        return await next()


def build_bolt(
    front: SlackFront,
    settings: Settings,
    *,
    store: AsyncStore,
    mathfi: MathFiClient,
    metrics: Metrics,
    forecast: ForecastRules,
    watch: Callable[[str], Awaitable[None]],
    home: HomePublisher,
    acting: commands.ActionTools,
    clock: Callable[[], float],
) -> AsyncApp:
    """The bolt app with every command and button registered on the service's parts."""
    s = settings
    with _hidden_slack_environment():
        app = AsyncApp(
            client=front.slack,
            signing_secret=s.slack_signing_secret.get_secret_value(),
            process_before_response=False,
            logger=logging.getLogger("slack_bolt"),
        )
    app.middleware(front.same_team_only)
    app.error(on_bolt_error)
    commands.register(
        app,
        commands.CommandContext(
            store=store,
            mathfi=mathfi,
            metrics=metrics,
            command=s.slack_command,
            subscription_limit=s.subscription_limit,
            max_subscriptions=s.max_subscriptions,
            allow_broadcast_mentions=s.allow_broadcast_mentions,
            poll_interval=s.poll_interval,
            forecast=forecast,
            watch=watch,
            permissions=acting.permissions,
            clock=clock,
            acting=acting,
            personal=home,
        ),
    )
    return app


def action_tools(
    settings: Settings,
    slack: AsyncWebClient,
    *,
    store: AsyncStore,
    mathfi: MathFiClient,
    clock: Callable[[], float],
) -> commands.ActionTools:
    """Acting from Slack: who may act (ACTIONS; one check, and one cache of Slack's answers,
    for every button that acts), the runner, the confirmations shown, the clicks running."""
    permissions = PermissionCheck(settings.actions_policy, slack)
    return commands.ActionTools(
        runner=ActionRunner(store, mathfi, permissions),
        mathfi=mathfi,
        permissions=permissions,
        confirmations=Confirmations(clock=clock),
    )


async def on_bolt_error(error: Exception, body: dict[str, Any]) -> BoltResponse:
    """A listener's bug: logged with a reference, and the person gets that reference."""
    ref = f"{int(time.time()) % 100000:05d}"
    log.error(
        "unhandled error in a Slack listener (reference %s): %s",
        ref,
        type(error).__name__,
        exc_info=error,
    )
    return BoltResponse(
        status=200,
        body=json.dumps(
            {
                "response_type": "ephemeral",
                "text": f"Something went wrong on our side (reference {ref}).",
            }
        ),
        headers={"content-type": "application/json"},
    )


async def socket_mode_handler(
    app: AsyncApp, app_token: str, slack: AsyncWebClient
) -> AsyncSocketModeHandler:
    """Socket Mode's handler, once one `apps.connections.open` has not refused the token:
    a refused token is a configuration error (the SDK would retry it forever). When Slack
    cannot be asked (SLACK_TIMEOUT without an answer included), the start goes on."""
    verdict = await app_token_verdict(app_token, slack)
    if verdict.problem is not None:
        raise ConfigError(f"SLACK_APP_TOKEN: {verdict.problem}; run `mathfi-bot check`")
    if verdict.unchecked is not None:
        log.warning("SLACK_APP_TOKEN not checked: %s; connecting anyway", verdict.unchecked)
    return AsyncSocketModeHandler(app, app_token=app_token, web_client=slack)


@dataclass(frozen=True)
class AppTokenVerdict:
    """Slack's word on SLACK_APP_TOKEN: accepted when neither field is set."""

    problem: str | None = None  # Slack refused it (or it is no app-level token): what is wrong
    unchecked: str | None = None  # Slack could not be asked: why (its trouble, not ours)


async def app_token_verdict(app_token: str, slack: AsyncWebClient) -> AppTokenVerdict:
    """One `apps.connections.open` with the app-level token, given up after `slack.timeout`
    seconds (SLACK_TIMEOUT: slack_sdk ignores its own on a session it did not create)."""
    if not app_token.startswith("xapp-"):
        return AppTokenVerdict(problem="not an app-level token (xapp-…)")
    within = slack.timeout
    probe = AsyncWebClient(  # once: no retry of a refused connection inside SLACK_TIMEOUT
        base_url=slack.base_url, session=slack.session, timeout=within, retry_handlers=[]
    )
    try:
        async with asyncio.timeout(within):
            await probe.apps_connections_open(app_token=app_token)
    except SlackApiError as err:
        status = err.response.status_code
        if status >= 500 or status == 429:  # Slack's trouble: the SDK keeps trying
            return AppTokenVerdict(unchecked=f"Slack answered HTTP {status}")
        return AppTokenVerdict(problem=f"Slack refused it ({err.response.get('error')})")
    except TimeoutError:
        return AppTokenVerdict(unchecked=f"Slack did not answer within {within} s (SLACK_TIMEOUT)")
    except aiohttp.ClientError as err:
        return AppTokenVerdict(unchecked=f"cannot reach Slack ({type(err).__name__})")
    return AppTokenVerdict()


@contextlib.contextmanager
def _hidden_slack_environment() -> Iterator[None]:
    """bolt falls back on SLACK_BOT_TOKEN, SLACK_CLIENT_ID, ... from the environment (and
    turns OAuth on when it finds a client id). Everything it needs is passed explicitly, so
    it must not see those while the app is built."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("SLACK_")}
    for name in saved:
        del os.environ[name]
    try:
        yield
    finally:
        os.environ.update(saved)
