"""Settings: one frozen object read from the environment and `.env`, loaded once in __main__."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import ByteSize, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError


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

    @field_validator("slack_command")
    @classmethod
    def _command_shape(cls, value: str) -> str:
        return value if value.startswith("/") else "/" + value


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
