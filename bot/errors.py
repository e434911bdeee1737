"""One exception tree for the whole service.

BotError
├── ConfigError                 settings missing or invalid
├── MathFiError                 anything that went wrong talking to MathFi
│   ├── MathFiUnavailable       connection refused/reset, timeout, 5xx, 429 after retries
│   ├── MathFiAuthError         login refused (bad credentials) or 401 after a fresh login
│   ├── MathFiRequestError      another 4xx (bad input); carries the status code
│   │   └── TrainingJobNotFound 404 for a training job; carries the key
│   └── MathFiParseError        body is not JSON or does not validate; names the field
├── SlackDeliveryError          a Slack Web API call failed
│   └── PermanentSlackError     not worth retrying (channel_not_found, is_archived, ...)
└── StoreError                  the database refused a read or write
"""

from __future__ import annotations

from enum import StrEnum


class BotError(Exception):
    """Base of every error the service raises on purpose."""


class ConfigError(BotError):
    """A setting is missing or invalid; the message names the variable."""


class MathFiError(BotError):
    """Talking to MathFi failed."""


class MathFiUnavailable(MathFiError):
    """MathFi could not be reached or kept failing (connection, timeout, 5xx, 429)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class MathFiAuthError(MathFiError):
    """MathFi refused our credentials or token."""


class MathFiRequestError(MathFiError):
    """MathFi answered with a 4xx other than 401/429."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class TrainingJobNotFound(MathFiRequestError):
    """MathFi does not know this training job key (404)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"MathFi does not know training job {key}", status=404)
        self.key = key


class MathFiParseError(MathFiError):
    """MathFi's body is not JSON or does not match the model; `field` names the culprit."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SlackFailure(StrEnum):
    """How a Slack Web API call failed, as the outbox must treat it."""

    RATE_LIMITED = "rate_limited"  # 429: try again after `retry_after`
    OUTCOME_UNKNOWN = "outcome_unknown"  # 5xx, Slack's own trouble, connection: may be posted
    TIMED_OUT = "timed_out"  # no answer in time: may be posted, and may still land
    THREAD_GONE = "thread_gone"  # the card was deleted: post a new one at once
    PERMANENT = "permanent"  # the channel or the token is gone: stop posting there
    REFUSED = "refused"  # Slack refused this request (e.g. invalid_blocks)


class SlackDeliveryError(BotError):
    """A Slack Web API call failed; `error` is Slack's error code (or what went wrong)."""

    def __init__(self, error: str, *, kind: SlackFailure, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.kind = kind
        self.retry_after = retry_after

    @property
    def posted_unknown(self) -> bool:
        """The message may have reached Slack: look it up before posting it again."""
        return self.kind in (SlackFailure.OUTCOME_UNKNOWN, SlackFailure.TIMED_OUT)

    @property
    def transient(self) -> bool:
        """Trouble that passes: retried without limit (a refusal is retried a few times)."""
        return self.posted_unknown or self.kind in (
            SlackFailure.RATE_LIMITED,
            SlackFailure.THREAD_GONE,
        )


class StoreError(BotError):
    """The database refused a read or a write (locked, read-only, disk full)."""
