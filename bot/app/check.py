"""`mathfi-bot check`: validate the settings and try every outside system once.

Prints a checklist with ✓ / ✗ and, for each ✗, what to do. Exit code 1 when anything fails.
Each Slack call gives up after SLACK_TIMEOUT (slack_sdk ignores its own timeout on a
session it did not create, and this session's default is 5 minutes).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.app.bolt import app_token_verdict
from bot.config import Settings, load_settings
from bot.errors import ConfigError, MathFiAuthError, MathFiError
from bot.mathfi.client import MathFiClient
from store import Store, StoreUnavailable

UNREACHABLE_FIX = "Check SLACK_API_URL and the network (proxy, firewall)."


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


async def check_mathfi(settings: Settings, session: aiohttp.ClientSession) -> Check:
    name = f"MathFi login at {settings.mathfi_base_url}"
    client = MathFiClient.from_settings(settings, session=session)
    try:
        await client.login()
    except MathFiAuthError:
        return Check(
            name,
            False,
            f"the login of {settings.mathfi_username} was refused",
            "Check MATHFI_USERNAME (the account e-mail) and MATHFI_PASSWORD.",
        )
    except MathFiError as err:
        return Check(
            name, False, str(err), "Check MATHFI_BASE_URL and that this machine can reach it."
        )
    finally:
        await client.close()
    return Check(name, True, f"logged in as {settings.mathfi_username}")


async def check_slack(settings: Settings, session: aiohttp.ClientSession) -> Check:
    name = f"Slack auth.test at {settings.slack_api_url}"
    client = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        session=session,
        timeout=settings.slack_timeout,
        retry_handlers=[],  # once, as every check
    )
    try:
        async with asyncio.timeout(settings.slack_timeout):
            answer = await client.auth_test()
    except SlackApiError as err:
        error = err.response.get("error")
        if error is None:  # not a Slack Web API answer at all
            return Check(
                name,
                False,
                f"SLACK_API_URL answered HTTP {err.response.status_code}, not like the Slack API",
                "Check SLACK_API_URL (normally https://slack.com/api/).",
            )
        return Check(
            name,
            False,
            f"Slack said {error}",
            "Copy the Bot User OAuth Token (xoxb-…) from the app's OAuth & "
            "Permissions page into SLACK_BOT_TOKEN; reinstall the app if it was "
            "revoked.",
        )
    except TimeoutError:
        return Check(
            name,
            False,
            f"Slack did not answer within {settings.slack_timeout} s (SLACK_TIMEOUT)",
            UNREACHABLE_FIX,
        )
    except aiohttp.ClientError as err:
        return Check(name, False, f"cannot reach Slack ({type(err).__name__})", UNREACHABLE_FIX)
    return Check(
        name,
        True,
        f"bot {answer.get('user')} in workspace {answer.get('team')} ({answer.get('team_id')})",
    )


def check_database(settings: Settings) -> Check:
    name = f"Database {settings.database_path}"
    try:
        # a running instance may hold the write lock for a moment: wait for it (no event loop here)
        store = Store(settings.database_path, busy_timeout_ms=5000)
        try:
            ok = store.ping()
        finally:
            store.close()
    except (StoreUnavailable, OSError) as err:
        return Check(
            name,
            False,
            str(err).splitlines()[0],
            "Make sure DATABASE_PATH's folder exists and is writable by this user, "
            "and that the disk is not full.",
        )
    if not ok:
        return Check(
            name,
            False,
            "opened, but a test write failed",
            "Make sure the file and its folder are writable.",
        )
    return Check(name, True, "opened for writing, migrations applied")


async def check_socket_mode(settings: Settings, session: aiohttp.ClientSession) -> Check | None:
    if settings.slack_app_token is None:
        return None
    name = "Socket Mode token"
    slack = AsyncWebClient(
        base_url=settings.slack_api_url, session=session, timeout=settings.slack_timeout
    )
    verdict = await app_token_verdict(settings.slack_app_token.get_secret_value(), slack)
    if verdict.unchecked is not None:
        return Check(name, False, f"could not check SLACK_APP_TOKEN: {verdict.unchecked}",
                     UNREACHABLE_FIX)  # fmt: skip
    if verdict.problem is None:
        return Check(name, True, "Slack accepts SLACK_APP_TOKEN")
    return Check(
        name,
        False,
        f"SLACK_APP_TOKEN is {verdict.problem}",
        "Create an app-level token with the connections:write scope (Basic "
        "Information → App-Level Tokens), or unset SLACK_APP_TOKEN to use HTTP.",
    )


async def collect(settings_loader: Callable[[], Settings] = load_settings) -> list[Check]:
    try:
        settings = settings_loader()
    except ConfigError as err:
        return [
            Check(
                "Settings",
                False,
                str(err),
                "Set the variable in the environment or in .env (see .env.example).",
            )
        ]
    checks = [Check("Settings", True, "every required variable is set and valid")]
    async with aiohttp.ClientSession() as session:
        socket = await check_socket_mode(settings, session)
        if socket is not None:
            checks.append(socket)
        checks.append(await check_mathfi(settings, session))
        checks.append(await check_slack(settings, session))
    checks.append(check_database(settings))
    return checks


def print_checks(checks: list[Check], out: TextIO) -> None:
    for check in checks:
        mark = "✓" if check.ok else "✗"
        print(f"{mark} {check.name}: {check.detail}", file=out)
        if not check.ok and check.fix:
            print(f"    → {check.fix}", file=out)
    failed = sum(not c.ok for c in checks)
    print("All checks passed." if not failed else f"{failed} check(s) failed.", file=out)


async def run_check(out: TextIO | None = None) -> int:
    checks = await collect()
    print_checks(checks, out or sys.stdout)
    return 0 if all(c.ok for c in checks) else 1
