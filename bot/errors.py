"""One exception tree per outside system and per layer, as the code really raises it.

BotError
├── ConfigError                 a setting is missing or invalid; names the variable
│                               (bot/config.py, bot/app/bolt.py, bot/__main__.py)
├── MathFiError                 talking to MathFi failed (only bot/mathfi/ raises these);
│   │                           `public_reason` is a short, safe line for a channel
│   ├── MathFiUnavailable       connection failed, timeout, 5xx or 429, after the retries;
│   │                           `status` and `trouble` say which ("timeout", "HTTP 503")
│   ├── MathFiOutcomeUnknown    a POST/PATCH that may have reached MathFi got no clear
│   │                           answer (timeout, dropped connection, 5xx): never retried
│   ├── MathFiAuthError         login refused (bad credentials) or 401 after a fresh login
│   ├── MathFiRedirect          any 3xx: never followed; names the status, not the Location
│   ├── MathFiRequestError      another 4xx (bad input); carries the status code
│   │   └── TrainingJobNotFound 404 for a training job; carries the key
│   └── MathFiParseError        body too large, not JSON, nested too deep, or not the
│                               model (too many algorithms...); names the field
└── SlackDeliveryError          a Slack Web API call failed (bot/slack/api.py); `kind` (a
                                `SlackFailure`) says how the outbox treats it: rate limited,
                                outcome unknown, timed out, thread gone, permanent, refused

StoreUnavailable                (store/records.py) SQLite refused a read or a write. Its own
                                root, outside BotError: store/ imports nothing of bot/ (an
                                import-linter contract), so it cannot derive from BotError.

Every cause is chained (`raise ... from err`), except where the cause's text may echo a
secret (pydantic echoes the input, which may hold a token): there `from None`.
`public_reason` never holds a host name, port or address: it is built from a fixed
vocabulary and the status code only; the message (for the log) keeps the details.
"""

from __future__ import annotations

from enum import StrEnum


class BotError(Exception):
    """Base of every error the service raises on purpose."""


class ConfigError(BotError):
    """A setting is missing or invalid; the message names the variable."""


class MathFiError(BotError):
    """Talking to MathFi failed."""

    @property
    def public_reason(self) -> str:
        """What kind of trouble, safe to post in a channel (no host, port or address)."""
        return "MathFi error"


class Trouble(StrEnum):
    """How a request failed without an HTTP answer; the value is the public wording."""

    TIMEOUT = "timeout"
    REFUSED = "connection refused"
    LOST = "connection lost"
    CONNECTION = "connection failed"


class MathFiUnavailable(MathFiError):
    """MathFi could not be reached or kept failing (connection, timeout, 5xx, 429)."""

    def __init__(
        self, message: str, *, status: int | None = None, trouble: Trouble = Trouble.CONNECTION
    ) -> None:
        super().__init__(message)
        self.status = status
        self.trouble = trouble

    @property
    def public_reason(self) -> str:
        return f"HTTP {self.status:d}" if self.status is not None else self.trouble.value


class MathFiOutcomeUnknown(MathFiError):
    """A request that changes something may have reached MathFi, but no answer says how it
    ended: it is not retried (a retry could start a second training); check MathFi."""

    def __init__(
        self, message: str, *, status: int | None = None, trouble: Trouble = Trouble.LOST
    ) -> None:
        super().__init__(message)
        self.status = status
        self.trouble = trouble

    @property
    def public_reason(self) -> str:
        return "outcome unknown"


class MathFiAuthError(MathFiError):
    """MathFi refused our credentials or token."""

    @property
    def public_reason(self) -> str:
        return "login refused"


class MathFiRedirect(MathFiError):
    """MathFi answered with a 3xx: redirects are never followed (nor their body read)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status

    @property
    def public_reason(self) -> str:
        return "redirect refused"


class MathFiRequestError(MathFiError):
    """MathFi answered with a 4xx other than 401/429."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status

    @property
    def public_reason(self) -> str:
        return f"HTTP {self.status:d}"


class TrainingJobNotFound(MathFiRequestError):
    """MathFi does not know this training job key (404)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"MathFi does not know training job {key}", status=404)
        self.key = key

    @property
    def public_reason(self) -> str:
        return "not found"


class MathFiParseError(MathFiError):
    """MathFi's body is too large, not JSON or not the model; `field` names the culprit."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    @property
    def public_reason(self) -> str:
        return "bad answer"


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
