"""The retention and auth request-limit settings: defaults, overrides, and malformed values refused at start."""

from __future__ import annotations

import pytest

from tests.unit.test_config import good_env
from webapp.config import ConfigError, load_settings


def test_defaults() -> None:
    s = load_settings(good_env())
    assert s.notify_retention_days == 30
    assert (s.auth_signup_rate_limit, s.auth_signup_rate_window_seconds) == (30, 300)
    assert (s.auth_refresh_rate_limit, s.auth_refresh_rate_window_seconds) == (150, 300)


def test_overrides_and_zero_turns_off() -> None:
    s = load_settings(good_env(NOTIFY_RETENTION_DAYS="0", AUTH_SIGNUP_RATE_LIMIT="0", AUTH_REFRESH_RATE_LIMIT="7",
                               AUTH_REFRESH_RATE_WINDOW_SECONDS="60"))
    assert s.notify_retention_days == 0 and s.auth_signup_rate_limit == 0
    assert (s.auth_refresh_rate_limit, s.auth_refresh_rate_window_seconds) == (7, 60)


@pytest.mark.parametrize(("name", "value"), [
    ("NOTIFY_RETENTION_DAYS", "-1"), ("NOTIFY_RETENTION_DAYS", "thirty"),
    ("AUTH_SIGNUP_RATE_LIMIT", "-5"), ("AUTH_SIGNUP_RATE_WINDOW_SECONDS", "0"),
    ("AUTH_REFRESH_RATE_LIMIT", "1.5"), ("AUTH_REFRESH_RATE_WINDOW_SECONDS", "0"),
])
def test_malformed_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(good_env(**{name: value}))
