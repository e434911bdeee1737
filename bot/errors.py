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


class SlackDeliveryError(BotError):
    """A Slack Web API call failed; `error` is Slack's error code when there is one."""

    def __init__(self, message: str, *, error: str | None = None) -> None:
        super().__init__(message)
        self.error = error


class PermanentSlackError(SlackDeliveryError):
    """A Slack error that retrying cannot fix (the channel is gone, the bot was removed...)."""


class StoreError(BotError):
    """The database refused a read or a write (locked, read-only, disk full)."""
