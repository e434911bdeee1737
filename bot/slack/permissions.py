"""Who may act from Slack (start, cancel, retrain a training): the `ACTIONS` setting.

- `everyone`: the workspace's full members. `users.info` says who is a guest
  (`is_restricted`, `is_ultra_restricted`), a bot, a deactivated account or a stranger
  from another organisation (`is_stranger`, or `user_not_found`): refused.
- `off`: nobody; the commands still answer, with the reason.
- a list of `U…` users and `S…` user groups: the users listed, and the members of the groups
  (`usergroups.users.list`, cached `cache_seconds` on the injected clock). A group Slack does
  not know is skipped (logged); the others still count.

When Slack cannot say (unreachable, rate limited, a missing scope), the answer is a refusal
that says so: nothing is done on a guess. Answers from Slack are cached `cache_seconds`
(a double click asks Slack once); failures are not cached.
Scopes: `users:read` (users.info) and `usergroups:read` (usergroups.users.list).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import ActionsPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")
CACHE_SECONDS = 300.0
SCOPE_HINTS = {"users.info": "users:read", "usergroups.users.list": "usergroups:read"}


class Verdict(StrEnum):
    """Why a person may or may not act; the value is the label for logs and metrics."""

    ALLOWED = "allowed"
    OFF = "off"
    GUEST = "guest"
    NOT_A_MEMBER = "not_a_member"  # a bot, a deactivated account, someone from elsewhere
    NOT_LISTED = "not_listed"
    UNCHECKED = "unchecked"  # Slack could not say


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str = ""  # what a refusal tells the person (plain text); empty when allowed

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOWED


ALLOWED = Decision(Verdict.ALLOWED)


@dataclass(frozen=True)
class _Person:
    guest: bool
    member: bool  # a person of this workspace: not a bot, not deactivated, not a stranger


class SlackUnsure(Exception):
    """Slack did not answer a question about a person or a group (see `reason`)."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"{method}: {error}")
        self.method, self.error = method, error


class PermissionCheck:
    def __init__(
        self,
        policy: ActionsPolicy,
        client: AsyncWebClient,
        *,
        clock: Callable[[], float] = time.monotonic,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self._policy, self._client, self._clock = policy, client, clock
        self._cache_seconds = cache_seconds
        self._people: dict[str, tuple[float, _Person]] = {}
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}

    async def check(self, user_id: str) -> Decision:
        """May `user_id` start, cancel or retrain a training?"""
        policy = self._policy
        if policy.mode == "off":
            return Decision(
                Verdict.OFF,
                "Starting and cancelling trainings from Slack is turned off for this bot "
                "(ACTIONS=off). Use the MathFi dashboard, or ask the bot's operator.",
            )
        try:
            if policy.mode == "everyone":
                return await self._member_decision(user_id)
            return await self._list_decision(user_id)
        except SlackUnsure as err:
            log.warning("cannot check whether %s may act: %s", user_id, err)
            return Decision(Verdict.UNCHECKED, _unsure_reason(err))

    async def _member_decision(self, user_id: str) -> Decision:
        person = await self._person(user_id)
        if not person.member:
            return Decision(
                Verdict.NOT_A_MEMBER,
                "Only members of this workspace can start or cancel trainings from Slack.",
            )
        if person.guest:
            return Decision(
                Verdict.GUEST,
                "Guests cannot start or cancel trainings from Slack; ask a full member of "
                "the workspace.",
            )
        return ALLOWED

    async def _list_decision(self, user_id: str) -> Decision:
        if user_id in self._policy.users:
            return ALLOWED
        unsure: SlackUnsure | None = None
        for group in sorted(self._policy.groups):
            try:
                if user_id in await self._members(group):
                    return ALLOWED
            except SlackUnsure as err:
                if err.error == "no_such_subteam":
                    log.warning("ACTIONS names user group %s, which Slack does not know", group)
                    continue
                unsure = err
        if unsure is not None:
            raise unsure
        return Decision(
            Verdict.NOT_LISTED,
            "Only the people this bot's ACTIONS setting names can start or cancel trainings "
            "from Slack; ask the bot's operator to add you.",
        )

    # -- Slack, cached -----------------------------------------------------------------

    async def _person(self, user_id: str) -> _Person:
        cached = self._fresh(self._people.get(user_id))
        if cached is not None:
            return cached
        try:
            answer = await self._call("users.info", user=user_id)
        except SlackUnsure as err:
            if err.error != "user_not_found":
                raise
            answer = {}
        user = answer.get("user") or {}
        deleted = bool(user.get("deleted")) or not user
        stranger = bool(user.get("is_stranger")) or bool(user.get("is_bot"))
        person = _Person(
            guest=bool(user.get("is_restricted")) or bool(user.get("is_ultra_restricted")),
            member=not (deleted or stranger) and user_id != "USLACKBOT",
        )
        self._people[user_id] = (self._clock(), person)
        return person

    async def _members(self, group: str) -> frozenset[str]:
        cached = self._fresh(self._groups.get(group))
        if cached is not None:
            return cached
        answer = await self._call("usergroups.users.list", usergroup=group)
        members = frozenset(str(user) for user in answer.get("users") or ())
        self._groups[group] = (self._clock(), members)
        return members

    def _fresh(self, entry: tuple[float, T] | None) -> T | None:
        if entry is None or self._clock() - entry[0] >= self._cache_seconds:
            return None
        return entry[1]

    async def _call(self, method: str, **params: Any) -> dict[str, Any]:
        try:
            # slack_sdk applies its timeout only to sessions it creates (see bot/slack/api.py)
            async with asyncio.timeout(self._client.timeout):
                response = await getattr(self._client, method.replace(".", "_"))(**params)
        except SlackApiError as err:
            status = err.response.status_code
            raise SlackUnsure(method, str(err.response.get("error") or f"http_{status}")) from err
        except (aiohttp.ClientError, TimeoutError) as err:
            raise SlackUnsure(method, f"connection: {type(err).__name__}") from err
        return dict(response.data) if isinstance(response.data, dict) else {}


def _unsure_reason(err: SlackUnsure) -> str:
    if err.error == "missing_scope":
        scope = SCOPE_HINTS.get(err.method, "a")
        return (
            f"The bot cannot check who may act: its Slack app lacks the {scope} scope. "
            "Nothing was done; ask the bot's operator to add it and reinstall the app."
        )
    return "Slack could not tell the bot who you are just now, so nothing was done. Try again."
