"""Command replies: `list` in pages (every subscription reachable) and mute durations.

Issue 19 items 4 and 6: `list` with 130 subscriptions ended "… and 61 more" with no way to
see those; mute replies were one second short ("1h59m59s" for 2h).
"""

from __future__ import annotations

import re

import pytest

from bot.slack.command_text import ListSubs, parse_command
from bot.slack.replies import muted, subscription_list
from store import Subscription, SubscriptionView
from tests.test_render import assert_valid, everything

NOW = 1_800_000_000.25
LONG_REASON = "channel_not_found " * 12


def view(
    index: int, *, muted_until: float | None = None, reason: str | None = None
) -> SubscriptionView:
    key = f"00000000-0000-4000-8000-{index:012d}"
    sub = Subscription(
        id=index,
        team_id="T1",
        channel_id="C1",
        job_key=key,
        created_by="U1",
        created_at=NOW - 1000 + index,
        min_improvement=0.005,
        mention="<!here>" if index % 3 == 0 else None,
        events="all",
        muted_until=muted_until,
        active=True,
        disabled_reason=reason,
        last_best=None,
    )
    return SubscriptionView(
        subscription=sub,
        status="RUNNING",
        best_performance=0.8123,
        best_algorithm=f"BSEV{index:02d}" * 5,
        unreachable=index % 7 == 0,
    )


def keys_on(text: str) -> list[str]:
    return re.findall(r"00000000-0000-4000-8000-(\d{12})", text)


def all_pages(views: list[SubscriptionView]) -> list[str]:
    """Follow the `list N` each page names until a page names none; every page's text."""
    pages: list[str] = []
    page = 1
    while True:
        message = subscription_list(views, now=NOW, command="/mathfi", page=page)
        assert_valid(message)
        body = everything(message)
        pages.append(body)
        assert len(pages) < 50, "the pages never end"
        last = message.blocks[-1]
        footer = last["elements"][0]["text"] if last["type"] == "context" else ""
        follow = re.search(r"`/mathfi (list \d+)`", footer)
        if follow is None or "End of the list" in footer:
            return pages
        command = parse_command(follow.group(1))
        assert isinstance(command, ListSubs)
        assert command.page == page + 1
        page = command.page


@pytest.mark.parametrize("count", [1, 30, 130, 200])
def test_every_subscription_is_on_exactly_one_page(count: int) -> None:
    views = [
        view(i, reason=LONG_REASON if i % 5 == 0 else None, muted_until=NOW + 3600)
        for i in range(count)
    ]
    pages = all_pages(views)
    seen = [int(k) for body in pages for k in dict.fromkeys(keys_on(body))]
    assert seen == list(range(count))


def test_a_long_list_says_which_page_and_where_the_rest_is() -> None:
    views = [view(i) for i in range(130)]
    first = subscription_list(views, now=NOW, command="/mathfi")
    head = first.blocks[0]["text"]["text"]
    assert head.startswith("This channel watches 130 training job(s); page 1 of ")
    footer = first.blocks[-1]["elements"][0]["text"]
    assert re.fullmatch(r"… and \d+ more: `/mathfi list 2`", footer), footer


def test_a_page_past_the_end_says_how_many_there_are() -> None:
    views = [view(i) for i in range(3)]
    reply = subscription_list(views, now=NOW, command="/mathfi", page=4)
    assert "There is no page 4" in reply.text and "1 page" in reply.text


def test_a_short_list_is_one_page_without_page_numbers() -> None:
    reply = subscription_list([view(1), view(2)], now=NOW, command="/mathfi")
    assert reply.blocks[0]["text"]["text"] == "This channel watches 2 training job(s):"
    assert len(keys_on(reply.text)) == 2 and "more" not in everything(reply)


@pytest.mark.parametrize(
    ("asked", "replied_at", "shown"),
    [
        (7200, NOW + 0.0004, "2h"),  # `mute … 2h`, the reply built a moment later
        (3600, NOW + 0.0004, "1h"),  # the Mute 1 h button
        (93784, NOW + 0.0004, "1d2h3m4s"),
        (7200, NOW + 1.2, "1h59m59s"),  # a second later, the remaining time is shorter
    ],
)
def test_mute_reply_and_list_show_the_duration_asked_for(
    asked: int, replied_at: float, shown: str
) -> None:
    until = NOW + asked
    assert f"muted for {shown}." in muted("k", until=until, now=replied_at).text
    listing = subscription_list([view(1, muted_until=until)], now=replied_at, command="/m")
    assert f"muted for {shown}\n" in listing.text


def test_a_mute_about_to_end_shows_one_second() -> None:
    listing = subscription_list([view(1, muted_until=NOW + 0.3)], now=NOW, command="/m")
    assert "muted for 1s" in listing.text
