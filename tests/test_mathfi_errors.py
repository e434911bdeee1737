"""MathFi errors say what kind of trouble in words safe for a channel; MathFi's settings
refuse a plain-http URL to a host that is not this machine."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot.config import Settings, is_loopback, load_settings
from bot.errors import (
    ConfigError,
    MathFiAuthError,
    MathFiError,
    MathFiOutcomeUnknown,
    MathFiParseError,
    MathFiRedirect,
    MathFiRequestError,
    MathFiUnavailable,
    TrainingJobNotFound,
    Trouble,
)

HOSTILE = "mathfi.internal.corp:8443 10.1.2.3 [fd00::1]:443 http://evil.example/"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (MathFiUnavailable(HOSTILE, trouble=Trouble.TIMEOUT), "timeout"),
        (MathFiUnavailable(HOSTILE, trouble=Trouble.REFUSED), "connection refused"),
        (MathFiUnavailable(HOSTILE, trouble=Trouble.LOST), "connection lost"),
        (MathFiUnavailable(HOSTILE), "connection failed"),
        (MathFiUnavailable(HOSTILE, status=503), "HTTP 503"),
        (MathFiUnavailable(HOSTILE, status=429), "HTTP 429"),
        (MathFiOutcomeUnknown(HOSTILE, status=502), "outcome unknown"),
        (MathFiAuthError(HOSTILE), "login refused"),
        (MathFiRedirect(HOSTILE, status=302), "redirect refused"),
        (MathFiRequestError(HOSTILE, status=400), "HTTP 400"),
        (TrainingJobNotFound("mathfi.internal.corp"), "not found"),
        (MathFiParseError(HOSTILE, field="jobs"), "bad answer"),
        (MathFiError(HOSTILE), "MathFi error"),
    ],
)
def test_public_reason_names_the_trouble_and_nothing_of_the_network(
    error: MathFiError, reason: str
) -> None:
    assert error.public_reason == reason
    assert re.fullmatch(r"[A-Za-z ]+( \d{3})?", error.public_reason)
    assert "mathfi.internal" in str(error) or HOSTILE in str(error)  # details stay for the log


_REQUIRED = {
    "mathfi_username": "u",
    "mathfi_password": "p",
    "slack_bot_token": "xoxb-1",
    "slack_signing_secret": "s",
    "_env_file": None,
}


def _settings(**values: Any) -> Settings:
    return load_settings(**_REQUIRED, **values)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.mathfi.ai",
        "https://10.0.0.1:8443/",
        "http://127.0.0.1:8080",
        "http://127.9.9.9",
        "http://localhost:1",
        "http://LOCALHOST",
        "http://[::1]:9000",
    ],
)
def test_https_or_loopback_base_urls_are_accepted(url: str) -> None:
    assert _settings(mathfi_base_url=url).mathfi_base_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://api.mathfi.ai",
        "http://10.0.0.1",
        "http://localhost.evil.example",
        "http://[fd00::1]",
    ],
)
def test_plain_http_elsewhere_is_one_line_naming_the_variable(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings(mathfi_base_url=url)
    message = str(caught.value)
    assert message.startswith("MATHFI_BASE_URL is invalid:") and "\n" not in message
    assert "MATHFI_ALLOW_HTTP" in message
    assert _settings(mathfi_base_url=url, mathfi_allow_http=True).mathfi_base_url == url


def test_allow_http_is_off_by_default_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings.model_fields["mathfi_allow_http"].default is False
    monkeypatch.setenv("MATHFI_BASE_URL", "http://mathfi.lan")
    with pytest.raises(ConfigError, match="MATHFI_BASE_URL"):
        _settings()
    monkeypatch.setenv("MATHFI_ALLOW_HTTP", "true")
    assert _settings().mathfi_base_url == "http://mathfi.lan"


@pytest.mark.parametrize("url", ["ftp://api.mathfi.ai", "https://", "api.mathfi.ai"])
def test_a_base_url_without_scheme_or_host_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^MATHFI_BASE_URL is invalid"):
        _settings(mathfi_base_url=url)


def test_is_loopback() -> None:
    assert is_loopback("http://127.0.0.1:1") and is_loopback("http://[::1]/")
    assert not is_loopback("http://128.0.0.1") and not is_loopback("http://localhost.example")


@pytest.mark.parametrize(
    ("value", "size"),
    [(None, 4_000_000), ("4MB", 4_000_000), ("4MiB", 4_194_304), ("512KB", 512_000),
     ("1048576", 1_048_576), (2_000_000, 2_000_000)],
)  # fmt: skip
def test_max_body_accepts_units_and_plain_bytes(value: str | int | None, size: int) -> None:
    settings = _settings() if value is None else _settings(mathfi_max_body=value)
    assert settings.mathfi_max_body == size


@pytest.mark.parametrize("value", ["4 parsecs", "-1", "12"])
def test_a_bad_max_body_is_one_line_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^MATHFI_MAX_BODY is invalid"):
        _settings(mathfi_max_body=value)
