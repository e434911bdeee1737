"""`bot.slack.audit_render`: who changed a channel's subscription, word for word, and the
card of a job the channel stopped watching."""

from __future__ import annotations

import math

import pytest

from bot.core.events import ChangeAction, Event, EventKind, OptionChange
from bot.core.models import Snapshot
from bot.slack.audit_render import (
    change_text,
    render_subscription_change,
    render_unwatched_card,
    watched_by,
    who,
)
from bot.slack.card import render_status

AT = 1_700_000_000.0  # 2023-11-14 22:13 UTC
DATE = "<!date^1700000000^{date_short_pretty} {time}|2023-11-14 22:13 UTC>"


def change(action: ChangeAction | None, **fields: object) -> Event:
    return Event.model_validate(
        {"kind": EventKind.SUBSCRIPTION_CHANGED, "job_key": "job-1", "actor": "U0ALICE"}
        | {"action": action}
        | fields
    )


@pytest.mark.parametrize(
    ("user", "shown"),
    [
        ("U0ALICE", "<@U0ALICE>"),
        ("W0ENTERPRISE", "<@W0ENTERPRISE>"),
        ("U0alice", "`U0alice`"),  # not a user id's shape: inert
        ("<!channel>", "`&lt;!channel&gt;`"),
        (None, "`somebody`"),
        ("", "`somebody`"),
        ("x" * 50, "`" + "x" * 39 + "…`"),  # cut at 40
    ],
)
def test_who_mentions_only_a_user_id(user: str | None, shown: str) -> None:
    assert who(user) == shown


@pytest.mark.parametrize(
    ("action", "fields", "line"),
    [
        (
            ChangeAction.SUBSCRIBED,
            {
                "changes": (
                    OptionChange(name="events", old=None, new="failures"),
                    OptionChange(name="mention", old="@a", new=None),
                )
            },
            "👀 <@U0ALICE> started watching this job in this channel "
            "(events `failures`, mention none)",
        ),
        (
            ChangeAction.SUBSCRIBED,
            {},
            "👀 <@U0ALICE> started watching this job in this channel",
        ),
        (
            ChangeAction.SUBSCRIBED,
            {"changes": ()},
            "👀 <@U0ALICE> started watching this job in this channel",
        ),
        (
            ChangeAction.OPTIONS,
            {
                "changes": (
                    OptionChange(name="events", old="all", new="failures"),
                    OptionChange(name="mention", old=None, new="<!here>"),
                )
            },
            "🔧 <@U0ALICE> changed this job's options: events `all` → `failures`, "
            "mention none → `&lt;!here&gt;`",
        ),
        (ChangeAction.OPTIONS, {}, "🔧 <@U0ALICE> changed this job's options: "),
        (
            ChangeAction.UNSUBSCRIBED,
            {},
            "🔕 <@U0ALICE> stopped watching this job in this channel",
        ),
        (
            ChangeAction.UNSUBSCRIBED_ALL,
            {"count": 1},
            "🔕 <@U0ALICE> stopped watching 1 job in this channel",
        ),
        (
            ChangeAction.UNSUBSCRIBED_ALL,
            {"count": 3},
            "🔕 <@U0ALICE> stopped watching 3 jobs in this channel",
        ),
        (
            ChangeAction.UNSUBSCRIBED_ALL,
            {},
            "🔕 <@U0ALICE> stopped watching 0 jobs in this channel",
        ),
        (
            ChangeAction.MUTED,
            {"duration": 5400.0},
            "🔧 <@U0ALICE> muted this job for 1h30m: only terminal statuses are posted",
        ),
        (
            ChangeAction.MUTED,
            {},
            "🔧 <@U0ALICE> muted this job: only terminal statuses are posted",
        ),
        (ChangeAction.UNMUTED, {}, "🔔 <@U0ALICE> unmuted this job"),
    ],
)
def test_each_change_in_one_line(
    action: ChangeAction, fields: dict[str, object], line: str
) -> None:
    event = change(action, **fields)
    assert change_text(event) == line
    message = render_subscription_change(event)
    assert message.text == line
    assert message.blocks == [{"type": "context", "elements": [{"type": "mrkdwn", "text": line}]}]


@pytest.mark.parametrize(
    ("channel", "place"), [("D0ALICE", "this DM"), ("C0TEST", "this channel"), ("", "this channel")]
)
def test_the_lines_name_the_dm_or_the_channel_they_are_posted_in(channel: str, place: str) -> None:
    lines = {
        ChangeAction.SUBSCRIBED: f"👀 <@U0ALICE> started watching this job in {place}",
        ChangeAction.UNSUBSCRIBED: f"🔕 <@U0ALICE> stopped watching this job in {place}",
        ChangeAction.UNSUBSCRIBED_ALL: f"🔕 <@U0ALICE> stopped watching 2 jobs in {place}",
    }
    for action, line in lines.items():
        event = change(action, count=2)
        assert change_text(event, channel_id=channel) == line
        assert render_subscription_change(event, channel_id=channel).text == line
    snapshot = Snapshot(job_key="job-1", status="RUNNING")
    assert watched_by("U0BOB", since=AT, channel_id=channel) == (
        f"👀 watched in {place} by <@U0BOB> since {DATE}"
    )
    card = render_unwatched_card(snapshot, since=AT, by="U0BOB", now=AT, channel_id=channel)
    assert card.text.startswith(f"🔕 No longer watched in {place} since {DATE} by <@U0BOB>: ")


def test_a_long_option_value_is_cut_at_100() -> None:
    event = change(
        ChangeAction.SUBSCRIBED, changes=(OptionChange(name="mention", old=None, new="m" * 150),)
    )
    assert change_text(event).endswith("(mention `" + "m" * 99 + "…`)")


def test_only_subscription_changes_are_told() -> None:
    with pytest.raises(ValueError, match=r"^not a subscription change: new_best$"):
        change_text(Event(kind=EventKind.NEW_BEST, job_key="job-1"))
    with pytest.raises(ValueError, match=r"^unknown subscription change: None$"):
        change_text(change(None))


def test_watched_by_says_who_and_since_when() -> None:
    assert watched_by("U0BOB", since=AT) == f"👀 watched in this channel by <@U0BOB> since {DATE}"
    # a time that is no date: no "since"
    assert watched_by("U0BOB", since=math.inf) == "👀 watched in this channel by <@U0BOB>"


def test_the_unwatched_card_says_since_when_and_by_whom_without_buttons() -> None:
    snapshot = Snapshot(job_key="job-1", status="RUNNING", target_performance=0.9)
    status = render_status(snapshot, now=AT + 60)
    card = render_unwatched_card(snapshot, since=AT, by="U0BOB", now=AT + 60)
    note = (
        f"🔕 No longer watched in this channel since {DATE} by <@U0BOB>: this card is not "
        "updated any more. Subscribe again to watch the job."
    )
    assert card.text == f"{note} {status.text}"
    assert card.blocks == [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": note}]},
        *status.blocks,
    ]
    assert not any(block["type"] == "actions" for block in card.blocks)


def test_the_unwatched_card_of_no_date_says_now_and_somebody() -> None:
    snapshot = Snapshot(job_key="job-1", status="COMPLETED")
    card = render_unwatched_card(snapshot, since=math.inf, by=None, now=AT)
    assert card.text.startswith(
        "🔕 No longer watched in this channel since now by `somebody`: this card is not "
        "updated any more. Subscribe again to watch the job. "
    )
