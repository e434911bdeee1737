"""Who may act (bot/slack/permissions.py) against the local Slack sink's users.info and
usergroups.users.list; and the ACTIONS setting (bot/config.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import ActionsPolicy, load_settings, parse_actions
from bot.errors import ConfigError
from bot.slack.permissions import PermissionCheck, Verdict
from simulator.slack import SlackSink
from simulator.slack_directory import SinkUser, UserKind
from simulator.slack_faults import SlackFault
from tests.conftest import make_settings
from tests.directory_sink import calls, client_of, serve_directory


class ManualClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    slack: SlackSink
    client: AsyncWebClient
    clock: ManualClock

    def check(self, setting: str) -> PermissionCheck:
        return PermissionCheck(parse_actions(setting), self.client, clock=self.clock)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    users: dict[str, UserKind] = {
        "UMEMBER": "member", "UGUEST": "guest", "USINGLE": "single_channel_guest",
        "UBOT": "bot", "UGONE": "deleted",
    }  # fmt: skip
    groups = {"SONCALL": ["UGUEST", "UOPS"], "SEMPTY": []}
    async with serve_directory(users, groups) as sink:
        yield World(sink, client_of(sink), ManualClock())


@pytest.mark.parametrize(
    ("user", "verdict", "words"),
    [
        ("UMEMBER", Verdict.ALLOWED, ""),
        ("UGUEST", Verdict.GUEST, "Guests cannot"),
        ("USINGLE", Verdict.GUEST, "Guests cannot"),
        ("UBOT", Verdict.NOT_A_MEMBER, "Only members of this workspace"),
        ("UGONE", Verdict.NOT_A_MEMBER, "Only members of this workspace"),
        ("UNOBODY", Verdict.NOT_A_MEMBER, "Only members of this workspace"),
    ],
)
async def test_everyone_means_full_members(
    world: World, user: str, verdict: Verdict, words: str
) -> None:
    decision = await world.check("everyone").check(user)
    assert decision.verdict is verdict
    assert decision.allowed is (verdict is Verdict.ALLOWED)
    assert decision.reason.startswith(words)


async def test_a_person_is_asked_about_once_per_cache_period(world: World) -> None:
    check = world.check("everyone")
    for _ in range(3):
        assert (await check.check("UGUEST")).verdict is Verdict.GUEST
    assert calls(world.slack, "users.info") == 1
    world.slack.add_user(SinkUser("UGUEST", "member"))  # promoted to full member
    world.clock.now += 299
    assert not (await check.check("UGUEST")).allowed
    world.clock.now += 1
    assert (await check.check("UGUEST")).allowed
    assert calls(world.slack, "users.info") == 2


async def test_off_refuses_everyone_without_asking_slack(world: World) -> None:
    decision = await world.check("off").check("UMEMBER")
    assert decision.verdict is Verdict.OFF and "ACTIONS=off" in decision.reason
    assert calls(world.slack) == 0


async def test_a_list_allows_its_users_and_the_members_of_its_groups(world: World) -> None:
    check = world.check("UALICE, SONCALL, SEMPTY")
    assert (await check.check("UALICE")).allowed
    assert calls(world.slack) == 0  # a listed user needs no question
    assert (await check.check("UOPS")).allowed
    assert (await check.check("UGUEST")).allowed  # the operator listed the group: it counts
    refused = await check.check("UMEMBER")
    assert refused.verdict is Verdict.NOT_LISTED and "ACTIONS setting" in refused.reason
    assert calls(world.slack, "usergroups.users.list") == 2  # each group once, then cached
    assert calls(world.slack, "users.info") == 0


async def test_group_members_are_cached_a_few_minutes_on_the_clock(world: World) -> None:
    check = world.check("SONCALL")
    assert (await check.check("UOPS")).allowed
    world.slack.add_usergroup("SONCALL", ["UNEW"])
    world.clock.now += 200
    assert not (await check.check("UNEW")).allowed
    world.clock.now += 100
    assert (await check.check("UNEW")).allowed and not (await check.check("UOPS")).allowed
    assert calls(world.slack, "usergroups.users.list") == 2


async def test_an_unknown_group_is_skipped_and_the_others_still_count(world: World) -> None:
    check = world.check("SGONE,SONCALL")
    assert (await check.check("UOPS")).allowed
    assert (await check.check("UMEMBER")).verdict is Verdict.NOT_LISTED


@pytest.mark.parametrize(
    ("setting", "error", "words"),
    [
        ("everyone", "missing_scope", "lacks the users:read scope"),
        ("SONCALL", "missing_scope", "lacks the usergroups:read scope"),
        ("everyone", "ratelimited", "Slack could not tell the bot who you are"),
        ("SONCALL", "internal_error", "Slack could not tell the bot who you are"),
    ],
)
async def test_when_slack_cannot_say_the_answer_is_a_refusal_that_says_so(
    world: World, setting: str, error: str, words: str
) -> None:
    world.slack.add_fault(SlackFault("error", error=error))
    check = world.check(setting)
    decision = await check.check("UOPS")
    assert decision.verdict is Verdict.UNCHECKED and words in decision.reason
    assert "nothing was done" in decision.reason.lower()
    world.slack.clear_faults()  # a failure is not cached: the next click asks again
    assert (await check.check("UOPS")).allowed is (setting == "SONCALL")


async def test_an_unreachable_slack_refuses(world: World) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url="http://127.0.0.1:1/api/", timeout=2)
    check = PermissionCheck(parse_actions("everyone"), client, clock=world.clock)
    decision = await check.check("UMEMBER")
    assert decision.verdict is Verdict.UNCHECKED and not decision.allowed


# --- the ACTIONS setting ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "canonical", "policy"),
    [
        ("everyone", "everyone", ActionsPolicy("everyone")),
        (" Everyone ", "everyone", ActionsPolicy("everyone")),
        ("OFF", "off", ActionsPolicy("off")),
        (
            "U0ALICE, S0ONCALL ,W0GRID",
            "U0ALICE,W0GRID,S0ONCALL",
            ActionsPolicy("list", frozenset({"U0ALICE", "W0GRID"}), frozenset({"S0ONCALL"})),
        ),
        ("U1", "U1", ActionsPolicy("list", frozenset({"U1"}))),
    ],
)
def test_actions_setting_parses(value: str, canonical: str, policy: ActionsPolicy) -> None:
    settings = make_settings(actions=value)
    assert settings.actions == canonical
    assert settings.actions_policy == policy
    assert make_settings().actions_policy == ActionsPolicy("everyone")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("", "an empty entry"),
        ("U1,,S2", "an empty entry"),
        ("everyone,U1", "'everyone'"),
        ("u0alice", "'u0alice'"),
        ("C0CHANNEL", "'C0CHANNEL'"),
        ("<@U0ALICE>", "'<@U0ALICE>'"),
        ("nobody", "'nobody'"),
    ],
)
def test_a_bad_actions_value_is_one_line_naming_the_variable(value: str, shown: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            mathfi_username="u", mathfi_password="p", slack_bot_token="x",
            slack_signing_secret="s", actions=value, _env_file=None,
        )  # fmt: skip
    message = str(caught.value)
    assert message.startswith(f"ACTIONS is invalid: {shown} is not a user ID (U…)")
    assert "\n" not in message
