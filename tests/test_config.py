"""Settings validation: every refusal is one line naming the variable (issue 19, items 7, 8)."""

from __future__ import annotations

import pytest

from bot.config import Settings, load_settings
from bot.errors import ConfigError

REQUIRED = {
    "mathfi_username": "ops@mathfi.ai",
    "mathfi_password": "pw",
    "slack_bot_token": "xoxb-1",
    "slack_signing_secret": "s",
    "_env_file": None,
}
FLOAT_SETTINGS = sorted(
    name for name, field in Settings.model_fields.items() if field.annotation is float
)


def refusal(**values: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(**REQUIRED, **values)
    return str(caught.value)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400", "0", "-1"])
def test_poll_interval_must_be_a_finite_positive_number(value: str) -> None:
    message = refusal(poll_interval=value)
    assert message.startswith("POLL_INTERVAL is invalid: ")
    assert "\n" not in message


@pytest.mark.parametrize("name", FLOAT_SETTINGS)
@pytest.mark.parametrize("value", ["inf", "nan"])
def test_no_float_setting_takes_infinity_or_nan(name: str, value: str) -> None:
    assert refusal(**{name: value}).startswith(f"{name.upper()} is invalid: ")


def test_the_float_settings_are_the_ones_expected() -> None:
    """A new float setting is covered by the test above; this names today's."""
    assert {"poll_interval", "mathfi_timeout", "stale_after"} <= set(FLOAT_SETTINGS)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"slack_api_url": "https://slack.com/"}, "SLACK_API_URL is invalid: must end in /api/"),
        (
            {"mathfi_base_url": "api.mathfi.ai"},
            "MATHFI_BASE_URL is invalid: must start with http:// or https://",
        ),
    ],
)
def test_a_validator_refusal_reads_without_pydantic_prefix(
    values: dict[str, str], expected: str
) -> None:
    assert refusal(**values) == expected


def test_finite_values_are_kept() -> None:
    settings = load_settings(**REQUIRED, poll_interval="0.5", stale_after="60")
    assert (settings.poll_interval, settings.stale_after) == (0.5, 60.0)


# -- retention (issue 16): durations as the commands write them ---------------------------


def test_retention_defaults_are_a_week_and_a_month() -> None:
    settings = load_settings(**REQUIRED)
    assert (settings.outbox_retention, settings.job_retention) == (7 * 86400, 30 * 86400)


@pytest.mark.parametrize(
    ("text", "seconds"), [("1h", 3600), ("1h30m", 5400), ("2 d", 172800), ("90d", 7776000)]
)
def test_retention_takes_the_duration_forms(text: str, seconds: int) -> None:
    settings = load_settings(**REQUIRED, outbox_retention=text, job_retention=text)
    assert settings.outbox_retention == settings.job_retention == seconds


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("7", "must be a duration such as 7d, 12h or 1h30m"),
        ("week", "must be a duration such as 7d, 12h or 1h30m"),
        ("-1d", "must be a duration such as 7d, 12h or 1h30m"),
        ("59m", "must be at least 1h"),
        ("0d", "must be at least 1h"),
    ],
)
def test_retention_refuses_what_is_not_a_duration_of_an_hour_or_more(
    text: str, reason: str
) -> None:
    assert refusal(job_retention=text) == f"JOB_RETENTION is invalid: {reason}"
    assert refusal(outbox_retention=text) == f"OUTBOX_RETENTION is invalid: {reason}"
