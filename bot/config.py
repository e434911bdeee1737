"""Settings: one frozen object read from the environment and `.env`, loaded once in __main__.

(Over 300 lines, kept whole: it is the one table of every variable, each with its default,
bounds and description, which tests/test_docs.py checks against .env.example and the README.)
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ByteSize,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.core.duration import duration_seconds
from bot.errors import ConfigError


def _duration(value: object) -> object:
    """`7d`, `12h`, `1h30m` (the forms `mute` takes) -> seconds; a number is left to int."""
    if not isinstance(value, str):
        return value
    try:
        return duration_seconds(value)
    except ValueError:
        raise ValueError("must be a duration such as 7d, 12h or 1h30m") from None


def _at_least_an_hour(seconds: int) -> int:
    # A sent row is what stops a poll recorded twice from being queued twice: it must
    # outlive any retry of that poll.
    if seconds < 3600:
        raise ValueError("must be at least 1h")
    return seconds


# Seconds, written as a duration.
Duration = Annotated[int, BeforeValidator(_duration), AfterValidator(_at_least_an_hour)]


class Settings(BaseSettings):
    """Every variable of DESIGN.md's table, plus the tuning knobs below it."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        case_sensitive=False,
        # `inf` and `nan` parse as floats; no setting here means anything by them (an
        # infinite POLL_INTERVAL polled a job twice, then never again).
        allow_inf_nan=False,
    )

    # A tuning knob, declared first because the check of MATHFI_BASE_URL reads it.
    mathfi_allow_http: bool = Field(
        False, description="Allow a plain http:// MATHFI_BASE_URL on a host that is not loopback"
    )

    # --- DESIGN.md interface contract ---
    mathfi_base_url: str = Field("https://api.mathfi.ai", description="MathFi API root")
    mathfi_username: str = Field(description="MathFi account e-mail (login field `username`)")
    mathfi_password: SecretStr = Field(description="MathFi account password")
    slack_bot_token: SecretStr = Field(description="Slack bot token (xoxb-...)")
    slack_signing_secret: SecretStr = Field(description="Slack app signing secret")
    slack_app_token: SecretStr | None = Field(
        None, description="Slack app-level token (xapp-...); set it to use Socket Mode"
    )
    slack_api_url: str = Field(
        "https://slack.com/api/", description="Slack Web API root (must end in /api/)"
    )
    database_path: Path = Field(Path("./data/mathfi-bot.db"), description="SQLite file")
    poll_interval: float = Field(
        30.0, gt=0, description="Seconds between polls of a RUNNING job (PENDING: twice this)"
    )
    http_host: str = Field("0.0.0.0", description="Listen address")
    http_port: int = Field(3000, ge=0, le=65535, description="Listen port")
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Serve /metrics on its own listener at this port (and no longer on "
        "HTTP_PORT); unset: /metrics is on the main listener",
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Listen address of the METRICS_PORT listener"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Log level"
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="`text`, or `json` for one JSON object a line"
    )

    # --- tuning knobs (sensible defaults; documented in .env.example) ---
    slack_command: str = Field("/mathfi", description="Name of the slash command")
    allow_broadcast_mentions: bool = Field(
        False,
        description="Accept `--mention @here`, `@channel`, `@everyone` (default: refused, so a "
        "member cannot make the bot ping the whole channel)",
    )
    slack_timeout: int = Field(
        10, ge=1, description="Seconds before a Slack Web API call times out (whole seconds)"
    )
    slack_post_rate: float = Field(
        1.0, gt=0, description="Posts a second per channel (Slack: about 1 `chat.postMessage`)"
    )
    slack_update_rate: float = Field(
        50.0,
        gt=0,
        description="`chat.update` calls a minute for the whole workspace (Slack Tier 3: 50)",
    )
    slack_history_rate: float = Field(
        50.0,
        gt=0,
        description="`conversations.history` / `.replies` calls a minute for the whole "
        "workspace (Slack Tier 3: 50)",
    )
    alert_max_wait: float = Field(
        60.0, gt=0, description="/healthz says degraded when an alert has waited this long"
    )
    mathfi_timeout: float = Field(
        10.0, gt=0, description="Seconds before a MathFi request times out"
    )
    mathfi_max_concurrency: int = Field(
        50, ge=1, description="Most MathFi requests in flight at once"
    )
    mathfi_max_rps: float = Field(
        0.0, ge=0, description="Most MathFi requests a second (0 = no cap)"
    )
    mathfi_token_margin: float = Field(
        300.0, ge=0, description="Log in again this many seconds before the token expires"
    )
    mathfi_login_cooldown: float = Field(
        30.0,
        ge=0,
        description="After MathFi refused the login, wait this long before trying again "
        "(doubles each time, up to 10 minutes)",
    )
    mathfi_max_retries: int = Field(
        4, ge=0, description="Retries of a failed MathFi request (connection, 5xx, 429)"
    )
    mathfi_max_body: Annotated[ByteSize, Field(ge=1000)] = Field(
        "4MB",
        validate_default=True,
        description="Largest MathFi answer read, in bytes or with a unit (`4MB`, `512KB`, `4MiB`)",
    )
    poll_concurrency: int = Field(50, ge=1, description="Most job polls in flight at once")
    subscription_limit: int = Field(200, ge=1, description="Most subscriptions per channel")
    max_subscriptions: int = Field(
        5000, ge=1, description="Most subscriptions in all channels together"
    )
    standby: bool = Field(
        False,
        description="When another mathfi-bot holds DATABASE_PATH: wait as a standby and take "
        "over when it stops (default: refuse to start)",
    )
    stale_after: float = Field(
        120.0, gt=0, description="/healthz answers 503 when a loop has not ticked for this long"
    )
    unreachable_after: float = Field(
        300.0,
        gt=0,
        description="A job MathFi keeps failing for (3 failed polls at least) is reported "
        "unreachable in its channels after this many seconds",
    )
    uvloop: bool = Field(
        True,
        description="Run the service on uvloop where it is installed (Linux, CPython); false, or "
        "uvloop missing: the standard asyncio loop",
    )
    # --- forecast: MathFi's stop rules (REFERENCE.md 5.5) and the warning pace ---
    mathfi_stall_window: float = Field(
        300.0,
        gt=0,
        description="MathFi stops an algorithm that improved by less than "
        "MATHFI_STALL_DELTA over this many seconds",
    )
    mathfi_stall_delta: float = Field(
        0.02, gt=0, le=1, description="Least improvement over the stall window"
    )
    mathfi_time_budget: float = Field(
        3600.0, gt=0, description="Seconds each algorithm may run before TIMED_OUT"
    )
    warning_cooldown: float = Field(
        600.0, ge=0, description="At most one forecast warning per job per this many seconds"
    )
    # --- retention (issue 16): what the database forgets, so that it stops growing ---
    outbox_retention: Duration = Field(
        "7d",
        validate_default=True,
        description="Sent and dead notifications are deleted this long after they were sent "
        "or given up (a duration: `7d`, `12h`, `1h30m`; at least 1h)",
    )
    job_retention: Duration = Field(
        "30d",
        validate_default=True,
        description="A job nobody has watched (no subscription, no change) for this long "
        "loses its snapshot, history and cards (a duration; at least 1h)",
    )
    # --- acting from Slack (start, cancel, retrain) ---
    actions: str = Field(
        "everyone",
        description="Who may start, cancel, retrain: `everyone` (full members, not guests), "
        "`off`, or a comma list of U… user and S… user-group IDs",
    )

    # --- on-call (issue 17): an unacknowledged alert is paged again ---
    oncall_repage: float = Field(
        900.0,
        ge=0,
        description="Seconds before an unacknowledged FAILED/TIMED_OUT/NOT_COMPLETED alert "
        "mentions its handle again in the thread (0: never)",
    )
    oncall_repage_max: int = Field(3, ge=0, description="Most re-pages of one unacknowledged alert")

    @field_validator("actions")
    @classmethod
    def _actions_shape(cls, value: str) -> str:
        return str(parse_actions(value))

    @property
    def actions_policy(self) -> ActionsPolicy:
        return parse_actions(self.actions)

    @field_validator("slack_api_url")
    @classmethod
    def _api_url_shape(cls, value: str) -> str:
        if not value.rstrip("/").endswith("/api"):
            raise ValueError("must end in /api/")
        return value if value.endswith("/") else value + "/"

    @field_validator("mathfi_base_url")
    @classmethod
    def _https_unless_loopback(cls, value: str, info: ValidationInfo) -> str:
        """https, or http on a loopback host, or http anywhere with MATHFI_ALLOW_HTTP."""
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        if not urlsplit(value).hostname:
            raise ValueError("has no host")
        plain = value.startswith("http://")
        if plain and not is_loopback(value) and not info.data.get("mathfi_allow_http", False):
            raise ValueError(
                "must be https:// unless the host is loopback "
                "(set MATHFI_ALLOW_HTTP=true to allow plain http)"
            )
        return value.rstrip("/")

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("slack_command")
    @classmethod
    def _command_shape(cls, value: str) -> str:
        return value if value.startswith("/") else "/" + value


@dataclass(frozen=True)
class ActionsPolicy:
    """Who may act from Slack: `everyone` (full members), `off`, or the `users` and the
    members of the user `groups` listed (mode `list`)."""

    mode: Literal["everyone", "off", "list"]
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    def __str__(self) -> str:
        if self.mode != "list":
            return self.mode
        return ",".join(sorted(self.users) + sorted(self.groups))


_USER_ID = re.compile(r"[UW][A-Z0-9]{1,30}")
_GROUP_ID = re.compile(r"S[A-Z0-9]{1,30}")


def parse_actions(value: str) -> ActionsPolicy:
    """`everyone`, `off`, or `U123,S456,…` (spaces allowed); ValueError in one line."""
    text = value.strip()
    if text.lower() in ("everyone", "off"):
        return ActionsPolicy(mode="everyone" if text.lower() == "everyone" else "off")
    users: set[str] = set()
    groups: set[str] = set()
    for item in (part.strip() for part in text.split(",")):
        if _USER_ID.fullmatch(item):
            users.add(item)
        elif _GROUP_ID.fullmatch(item):
            groups.add(item)
        else:
            shown = repr(item[:40]) if item else "an empty entry"
            raise ValueError(
                f"{shown} is not a user ID (U…) or a user-group ID (S…); use `everyone`, "
                "`off`, or a comma list of such IDs"
            )
    return ActionsPolicy(mode="list", users=frozenset(users), groups=frozenset(groups))


def is_loopback(url: str) -> bool:
    """Whether the URL's host is this machine: localhost, 127.0.0.0/8 or ::1."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; a missing or invalid value is one ConfigError naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as err:
        first = err.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "settings"
        if first["type"] == "missing":
            raise ConfigError(f"{name} is not set (see .env.example)") from None
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{name} is invalid: {message}") from None
