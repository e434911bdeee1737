"""`bot.slack.api`: how a Slack failure is classified, which messages a lookup adopts, the
hint a disabled channel is given.

The server is a real local aiohttp app that answers each call with the next scripted answer
(status, JSON body, headers) and records what it was sent, so every HTTP status and error
code the classification reads can be produced, which the Slack sink's faults cannot all do.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import SlackDeliveryError, SlackFailure
from bot.metrics import Metrics
from bot.slack.api import (
    CARD_EVENT,
    NOTE_EVENT,
    PERMANENT_ERRORS,
    SERVER_TROUBLE,
    SlackCaller,
    SlackIdentity,
    disable_reason,
    metadata,
)
from store import OutboxRow

ME = SlackIdentity(user_id="U0BOT", bot_id="B0BOT")


@dataclass
class Answer:
    body: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Scripted:
    """The next answers, in order (the last one repeats), and the calls received."""

    answers: list[Answer] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            params |= await request.json()
        else:
            params |= dict(await request.post())
        self.calls.append((request.match_info["method"], params))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer.delay:
            await asyncio.sleep(answer.delay)
        return web.json_response(answer.body, status=answer.status, headers=answer.headers)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Scripted, str]]:
    scripted = Scripted([Answer({"ok": True})])
    app = web.Application()
    app.router.add_route("*", "/api/{method}", scripted.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield scripted, f"http://127.0.0.1:{port}/api/"
    await runner.cleanup()


def caller(url: str, *, timeout: int = 5, identity: SlackIdentity | None = ME) -> SlackCaller:
    client = AsyncWebClient(token="xoxb-t", base_url=url, timeout=timeout)
    return SlackCaller(client, metrics=Metrics(), identity=identity)


def sample(slack: SlackCaller, name: str, **labels: str) -> float | None:
    return slack._metrics.registry.get_sample_value(name, labels)


async def failure(
    slack: SlackCaller, method: str = "chat.postMessage", **params: Any
) -> SlackDeliveryError:
    with pytest.raises(SlackDeliveryError) as caught:
        await slack.call(method, channel="C1", text="hi", **params)
    return caught.value


# ------------------------------------------------------------------- classification
async def test_a_429_is_rate_limited_with_slacks_retry_after(
    server: tuple[Scripted, str],
) -> None:
    scripted, url = server
    scripted.answers = [Answer({"ok": False, "error": "ratelimited"}, 429, {"Retry-After": "7"})]
    slack = caller(url)
    err = await failure(slack)
    assert (err.error, err.kind, err.retry_after) == ("ratelimited", SlackFailure.RATE_LIMITED, 7.0)
    assert str(err) == "ratelimited"
    assert sample(slack, "mathfi_slack_ratelimited_total", method="chat.postMessage") == 1.0
    assert sample(slack, "mathfi_slack_errors_total", error="ratelimited") == 1.0


@pytest.mark.parametrize("header", [{}, {"Retry-After": ""}])
async def test_a_429_without_retry_after_waits_one_second(
    server: tuple[Scripted, str], header: dict[str, str]
) -> None:
    scripted, url = server
    scripted.answers = [Answer({"ok": False, "error": "ratelimited"}, 429, header)]
    err = await failure(caller(url))
    assert err.kind is SlackFailure.RATE_LIMITED
    assert err.retry_after == 1.0


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_5xx_may_have_been_posted(server: tuple[Scripted, str], status: int) -> None:
    scripted, url = server
    scripted.answers = [Answer({"ok": False, "error": "invalid_blocks"}, status)]
    slack = caller(url)
    err = await failure(slack)
    assert (err.error, err.kind, err.retry_after) == (
        "invalid_blocks",
        SlackFailure.OUTCOME_UNKNOWN,
        None,
    )
    assert sample(slack, "mathfi_slack_ratelimited_total", method="chat.postMessage") == 0.0


async def test_a_5xx_without_an_error_code_is_named_by_its_status(
    server: tuple[Scripted, str],
) -> None:
    scripted, url = server
    scripted.answers = [Answer({"ok": False}, 503)]
    slack = caller(url)
    err = await failure(slack)
    assert (err.error, err.kind) == ("http_503", SlackFailure.OUTCOME_UNKNOWN)
    assert sample(slack, "mathfi_slack_errors_total", error="http_503") == 1.0


async def test_a_4xx_refusal_is_not_server_trouble(server: tuple[Scripted, str]) -> None:
    scripted, url = server
    scripted.answers = [Answer({"ok": False, "error": "invalid_arguments"}, 499)]
    err = await failure(caller(url))
    assert (err.error, err.kind) == ("invalid_arguments", SlackFailure.REFUSED)


@pytest.mark.parametrize("error", sorted(SERVER_TROUBLE))
async def test_slacks_own_trouble_with_200_may_have_been_posted(
    server: tuple[Scripted, str], error: str
) -> None:
    scripted, url = server
    scripted.answers = [Answer({"ok": False, "error": error})]
    err = await failure(caller(url))
    assert (err.error, err.kind) == (error, SlackFailure.OUTCOME_UNKNOWN)


def test_the_server_trouble_and_permanent_codes_are_slacks() -> None:
    assert {
        "fatal_error",
        "internal_error",
        "service_unavailable",
        "request_timeout",
    } == SERVER_TROUBLE
    assert {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "account_inactive",
        "invalid_auth",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "team_access_not_granted",
        "ekm_access_denied",
        "restricted_action",
    } == PERMANENT_ERRORS


@pytest.mark.parametrize("error", sorted(PERMANENT_ERRORS))
async def test_a_gone_channel_or_token_is_permanent(
    server: tuple[Scripted, str], error: str
) -> None:
    scripted, url = server
    scripted.answers = [Answer({"ok": False, "error": error})]
    slack = caller(url)
    err = await failure(slack)
    assert (err.error, err.kind, err.retry_after) == (error, SlackFailure.PERMANENT, None)
    assert sample(slack, "mathfi_slack_errors_total", error=error) == 1.0


@pytest.mark.parametrize("error", ["invalid_blocks", "msg_too_long", "thread_not_found"])
async def test_any_other_error_is_a_refusal(server: tuple[Scripted, str], error: str) -> None:
    scripted, url = server
    scripted.answers = [Answer({"ok": False, "error": error})]
    err = await failure(caller(url))
    assert (err.error, err.kind, err.retry_after) == (error, SlackFailure.REFUSED, None)


async def test_no_answer_in_time_is_timed_out(server: tuple[Scripted, str]) -> None:
    scripted, url = server
    scripted.answers = [Answer({"ok": True, "ts": "1.0"}, delay=1.5)]
    slack = caller(url, timeout=1)
    assert slack.timeout == 1.0
    err = await failure(slack)
    assert (err.error, err.kind) == ("connection: TimeoutError", SlackFailure.TIMED_OUT)
    assert sample(slack, "mathfi_slack_errors_total", error="connection") == 1.0


async def test_a_refused_connection_may_have_been_posted() -> None:
    with socket.socket() as sock:  # a port nobody listens on while the test runs
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        slack = caller(f"http://127.0.0.1:{port}/api/")
        err = await failure(slack)
    assert err.error.startswith("connection: ClientConnect")
    assert err.kind is SlackFailure.OUTCOME_UNKNOWN
    assert sample(slack, "mathfi_slack_errors_total", error="connection") == 1.0


async def test_a_success_returns_the_answer_and_drops_none_params(
    server: tuple[Scripted, str],
) -> None:
    scripted, url = server
    scripted.answers = [Answer({"ok": True, "ts": "12.5"})]
    slack = caller(url)
    answer = await slack.call("chat.postMessage", channel="C1", text="hi", thread_ts=None)
    assert answer == {"ok": True, "ts": "12.5"}
    assert scripted.calls == [("chat.postMessage", {"channel": "C1", "text": "hi"})]
    assert sample(slack, "mathfi_slack_send_latency_seconds_count", method="chat.postMessage") == 1
    latency = sample(slack, "mathfi_slack_send_latency_seconds_sum", method="chat.postMessage")
    assert latency is not None and 0 < latency < 5  # the call's own duration
    assert sample(slack, "mathfi_slack_errors_total", error="connection") is None


async def test_every_call_is_timed_failures_included(server: tuple[Scripted, str]) -> None:
    scripted, url = server
    scripted.answers = [Answer({"ok": False, "error": "invalid_blocks"})]
    slack = caller(url)
    await failure(slack, "chat.update", ts="1.0")
    assert sample(slack, "mathfi_slack_send_latency_seconds_count", method="chat.update") == 1


# ------------------------------------------------------------------------ identity
def test_identity_from_auth_test() -> None:
    answer = {"ok": True, "user_id": "U0BOT", "bot_id": "B0BOT"}
    assert SlackIdentity.from_auth_test(answer) == ME
    assert SlackIdentity.from_auth_test({"user_id": "", "bot_id": None}) == SlackIdentity(
        None, None
    )


async def test_identity_is_asked_of_auth_test_once(server: tuple[Scripted, str]) -> None:
    scripted, url = server
    scripted.answers = [Answer({"ok": True, "user_id": "U9", "bot_id": "B9"})]
    slack = caller(url, identity=None)
    assert await slack.identity() == SlackIdentity("U9", "B9")
    assert await slack.identity() == SlackIdentity("U9", "B9")
    assert [method for method, _ in scripted.calls] == ["auth.test"]


@pytest.mark.parametrize(
    ("me", "message", "ours"),
    [
        (ME, {"user": "U0BOT", "bot_id": "B0BOT"}, True),
        (ME, {"user": "U0BOT", "bot_id": "B0OTHER"}, False),
        (ME, {"user": "U0OTHER", "bot_id": "B0BOT"}, False),
        (ME, {"user": "U0BOT"}, False),
        (SlackIdentity("U0BOT", None), {"user": "U0BOT", "bot_id": "B0ANY"}, True),
        (SlackIdentity(None, "B0BOT"), {"user": "U0ANY", "bot_id": "B0BOT"}, True),
        (SlackIdentity(None, "B0BOT"), {"user": "U0ANY", "bot_id": "B0NOT"}, False),
        (SlackIdentity(None, None), {"user": None, "bot_id": None}, False),
    ],
)
def test_posted_by_this_bot_when_every_known_id_matches(
    me: SlackIdentity, message: dict[str, Any], ours: bool
) -> None:
    assert me.posted(message) is ours


# ------------------------------------------------------------------------- lookups
def row(row_id: int = 7, job_key: str = "job-1") -> OutboxRow:
    return OutboxRow(
        row_id, "d", "C1", job_key, "new_best", "{}", "pending", 1, 0.0, None, None, 0.0, 0.0,
        None, None,
    )  # fmt: skip


def message(ts: str, event_type: str, *, outbox_id: int = 7, job_key: str = "job-1",
            user: str = "U0BOT", bot_id: str = "B0BOT") -> dict[str, Any]:  # fmt: skip
    payload = {"outbox_id": outbox_id, "job_key": job_key, "kind": "new_best"}
    return {
        "ts": ts,
        "user": user,
        "bot_id": bot_id,
        "metadata": {"event_type": event_type, "event_payload": payload},
    }


async def look(slack: SlackCaller, event_type: str) -> str | None:
    return await slack.find_message(row(), event_type, "conversations.history", channel="C1")


def page(*messages: dict[str, Any], cursor: str | None = None) -> Answer:
    meta = {"next_cursor": cursor} if cursor is not None else {}
    return Answer({"ok": True, "messages": list(messages), "response_metadata": meta})


async def test_find_message_pages_until_it_finds_the_rows_own_message(
    server: tuple[Scripted, str],
) -> None:
    scripted, url = server
    scripted.answers = [
        page(
            {"ts": "1.0", "user": "U0BOT", "bot_id": "B0BOT"},  # no metadata
            message("2.0", "other_event"),
            message("3.0", NOTE_EVENT, outbox_id=8),
            cursor="next-1",
        ),
        page(message("4.0", CARD_EVENT), message("5.0", NOTE_EVENT)),
    ]
    slack = caller(url)
    ts = await look(slack, NOTE_EVENT)
    assert ts == "5.0"
    first, second = (params for _, params in scripted.calls)
    assert first == {"channel": "C1", "include_all_metadata": "1", "limit": "200"}
    assert second == first | {"cursor": "next-1"}


async def test_a_card_is_found_by_its_job_a_note_only_by_its_row(
    server: tuple[Scripted, str],
) -> None:
    scripted, url = server
    scripted.answers = [
        page(
            message("1.0", NOTE_EVENT, outbox_id=3),  # the same job, another row's reply
            message("2.0", CARD_EVENT, outbox_id=3, job_key="job-2"),  # another job's card
            message("3.0", CARD_EVENT, outbox_id=3),  # this job's card, posted for row 3
        )
    ]
    slack = caller(url)
    assert await look(slack, CARD_EVENT) == "3.0"
    assert await look(slack, NOTE_EVENT) is None


async def test_other_messages_on_a_page_are_skipped_not_the_end_of_the_page(
    server: tuple[Scripted, str],
) -> None:
    scripted, url = server
    scripted.answers = [
        page(
            {"ts": "1.0", "user": "U0SOMEONE", "text": "hello"},
            message("2.0", NOTE_EVENT, user="U0MALLORY"),
            message("3.0", NOTE_EVENT),
        )
    ]
    assert await look(caller(url), NOTE_EVENT) == "3.0"


async def test_an_answer_without_messages_has_nothing_of_ours(
    server: tuple[Scripted, str],
) -> None:
    scripted, url = server
    scripted.answers = [Answer({"ok": True})]
    assert await look(caller(url), NOTE_EVENT) is None


async def test_no_cursor_or_an_empty_one_ends_the_lookup(server: tuple[Scripted, str]) -> None:
    scripted, url = server
    scripted.answers = [page(cursor=""), page(message("1.0", NOTE_EVENT))]
    slack = caller(url)
    assert await look(slack, NOTE_EVENT) is None
    assert len(scripted.calls) == 1


async def test_a_lookup_reads_at_most_twenty_pages(server: tuple[Scripted, str]) -> None:
    scripted, url = server
    scripted.answers = [page(cursor="more")]
    slack = caller(url)
    assert await look(slack, NOTE_EVENT) is None
    assert len(scripted.calls) == 20


async def test_copies_are_the_rows_own_messages_per_type_oldest_first(
    server: tuple[Scripted, str],
) -> None:
    scripted, url = server
    scripted.answers = [
        page(
            message("10.5", NOTE_EVENT),
            message("9.75", NOTE_EVENT),
            message("11.0", CARD_EVENT),
            message("12.0", CARD_EVENT, outbox_id=3),  # the job's card, another row
            message("13.0", NOTE_EVENT, user="U0MALLORY", bot_id="B0MALLORY"),
        )
    ]
    slack = caller(url)
    copies = await slack.copies(row(), "conversations.replies", channel="C1", ts="1.0")
    assert copies == {NOTE_EVENT: ["9.75", "10.5"], CARD_EVENT: ["11.0"]}


async def test_a_look_alike_is_ignored_with_one_warning_per_message(
    server: tuple[Scripted, str], caplog: pytest.LogCaptureFixture
) -> None:
    scripted, url = server
    fake = message("4.0", NOTE_EVENT, user="U0MALLORY", bot_id="B0MALLORY")
    scripted.answers = [page(fake, message("5.0", NOTE_EVENT, user="U0EVE", bot_id="B0EVE"))]
    slack = caller(url)
    with caplog.at_level(logging.WARNING, logger="bot.slack.api"):
        for _ in range(2):
            assert await look(slack, NOTE_EVENT) is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "bot.slack.api"]
    assert warnings == [
        "ignored a message in C1 (ts 4.0) that names outbox row 7 but was posted by user "
        "U0MALLORY, bot B0MALLORY, not by this bot",
        "ignored a message in C1 (ts 5.0) that names outbox row 7 but was posted by user "
        "U0EVE, bot B0EVE, not by this bot",
    ]


async def test_delete_removes_the_message(server: tuple[Scripted, str]) -> None:
    scripted, url = server
    await caller(url).delete("C1", "4.0")
    assert scripted.calls == [("chat.delete", {"channel": "C1", "ts": "4.0"})]


# ---------------------------------------------------------------- metadata, hints
def test_metadata_names_the_row_its_job_and_kind() -> None:
    assert metadata(NOTE_EVENT, row(9, "job-9")) == {
        "event_type": "mathfi_notification",
        "event_payload": {"outbox_id": 9, "job_key": "job-9", "kind": "new_best"},
    }
    assert CARD_EVENT == "mathfi_card"


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        ("not_in_channel", "the bot is not in this channel: invite it with /invite @MathFi"),
        (
            "channel_not_found",
            "Slack cannot find this channel (deleted, or private without the bot)",
        ),
        ("is_archived", "the channel is archived: unarchive it and subscribe again"),
        ("invalid_auth", "the bot token was refused: an admin must reinstall the app"),
        ("token_revoked", "the bot token was revoked: an admin must reinstall the app"),
        ("account_inactive", "the bot account is inactive: an admin must reinstall the app"),
        ("missing_scope", "Slack refused to post here (missing_scope)"),
    ],
)
def test_disable_reason_tells_what_to_do(error: str, hint: str) -> None:
    assert disable_reason(error) == hint
