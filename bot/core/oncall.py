"""On-call (issue #17): which notifications raise an alert, and the outbox payload of what
follows one. Pure: no I/O, `now` handed in.

An alert is the reply that tells a channel with a `--mention` that its job ended FAILED,
TIMED_OUT or NOT_COMPLETED. Until a person acknowledges it, it is paged again (`repage`);
the acknowledgement is a line in the thread (`acked`) and an edit of the alert message
(`edit`). Each is one outbox row with its own dedupe key, delivered by the sender
(`bot.slack.oncall_delivery`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.core.events import EventKind
from bot.core.models import ALERT_STATUSES
from bot.core.notification import Notification

# The outbox kinds of the rows below (the sender picks its path by kind).
REPAGE_KIND = "oncall_repage"
ACKED_KIND = "oncall_acked"
EDIT_KIND = "oncall_edit"
ONCALL_KINDS = frozenset({REPAGE_KIND, ACKED_KIND, EDIT_KIND})

NoteKind = Literal["repage", "acked", "edit"]
_KINDS: dict[str, str] = {"repage": REPAGE_KIND, "acked": ACKED_KIND, "edit": EDIT_KIND}


def raises_alert(notification: Notification) -> bool:
    """The notification is an on-call alert: a subscription with a mention is told that its
    job ended FAILED, TIMED_OUT or NOT_COMPLETED."""
    return (
        bool(notification.mention)
        and notification.subscription_id is not None
        and any(
            e.kind is EventKind.JOB_STATUS and e.new_status in ALERT_STATUSES
            for e in notification.events
        )
    )


def bad_ending(notification: Notification) -> str:
    """The status an alert tells (FAILED, TIMED_OUT or NOT_COMPLETED)."""
    for event in notification.events:
        if event.kind is EventKind.JOB_STATUS and event.new_status in ALERT_STATUSES:
            return event.new_status
    raise ValueError("not an alert")


class OncallNote(BaseModel):
    """What follows an alert in its thread: a re-page, the acknowledgement line, or the
    edit of the alert message (`alert_outbox_id`: the alert message's outbox row)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    schema_version: Literal[1] = 1
    note: NoteKind
    channel_id: str = Field(min_length=1)
    job_key: str = Field(min_length=1)
    alert_id: int
    alert_outbox_id: int
    raised_at: float
    status: str | None = None  # the bad ending, when known
    mention: str | None = None  # repage: who is paged
    page: int | None = None  # repage: 1, 2, … of `max_pages`
    max_pages: int | None = None
    waited: float | None = None  # seconds since the alert was raised
    actor: str | None = None  # acked / edit: who acknowledged (a Slack user id)
    acked_at: float | None = None

    @property
    def kind(self) -> str:
        return _KINDS[self.note]

    @property
    def dedupe_key(self) -> str:
        """One row per page and one of each acknowledgement row, per alert."""
        suffix = f"page{self.page}" if self.note == "repage" else self.note
        return f"oncall:{self.alert_id}:{suffix}"

    def to_json(self) -> str:
        return json.dumps(
            self.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":")
        )


def read_note(payload: str) -> OncallNote:
    """The note an on-call outbox row holds; ValueError if it holds none."""
    try:
        return OncallNote.model_validate_json(payload)
    except ValidationError as err:
        raise ValueError(f"outbox payload is not an on-call note: {err}") from err


def repage(
    *,
    alert_id: int,
    alert_outbox_id: int,
    channel_id: str,
    job_key: str,
    mention: str,
    status: str | None,
    raised_at: float,
    page: int,
    max_pages: int,
    now: float,
) -> OncallNote:
    """Page `page` (1-based) of an unacknowledged alert, `now - raised_at` after it."""
    return OncallNote(
        note="repage",
        channel_id=channel_id,
        job_key=job_key,
        alert_id=alert_id,
        alert_outbox_id=alert_outbox_id,
        raised_at=raised_at,
        status=status,
        mention=mention,
        page=page,
        max_pages=max_pages,
        waited=max(now - raised_at, 0.0),
    )


def acknowledged(
    *,
    alert_id: int,
    alert_outbox_id: int,
    channel_id: str,
    job_key: str,
    status: str | None,
    raised_at: float,
    actor: str,
    acked_at: float,
) -> tuple[OncallNote, OncallNote]:
    """The two rows of an acknowledgement: the line in the thread, the alert's edit."""
    common: dict[str, Any] = {
        "channel_id": channel_id,
        "job_key": job_key,
        "alert_id": alert_id,
        "alert_outbox_id": alert_outbox_id,
        "raised_at": raised_at,
        "status": status,
        "actor": actor,
        "acked_at": acked_at,
        "waited": max(acked_at - raised_at, 0.0),
    }
    return OncallNote(note="acked", **common), OncallNote(note="edit", **common)
