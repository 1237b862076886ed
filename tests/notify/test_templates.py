"""Every event type has a text and an HTML template that render (strict: a missing value is an error) for each of
its shapes, with a one-line subject, escaped HTML and the settings link that explains why the mail came."""

from __future__ import annotations

from typing import Any

import pytest

from webapp.notify import mail
from webapp.notify.events import EVENT_TYPES

CASES: list[tuple[str, dict[str, Any]]] = [
    ("balance.low", {"wallet": "user", "balance_micro": 990_000, "threshold_micro": 1_000_000}),
    ("balance.low", {"wallet": "team", "balance_micro": 0, "threshold_micro": 1_000_000}),
    ("spend_cap.warning", {"scope": "user", "cap_micro": 10_000_000, "spent_micro": 8_000_000, "month": "2026-11"}),
    ("spend_cap.warning", {"scope": "api_key", "api_key_name": "ci <bot>", "api_key_prefix": "abcdEFGH1234",
                           "api_key_id": "k", "cap_micro": 1, "spent_micro": 1, "month": "2026-11"}),
    ("spend_cap.reached", {"scope": "team_member", "team_id": "t", "cap_micro": 5, "spent_micro": 5,
                           "month": "2026-11"}),
    ("provider_key.failing", {"key_source": "admin", "key_id": "k", "last4": "abcd", "status": 401,
                              "provider": "openai", "provider_name": "OpenAI", "day": "2026-11-29"}),
    ("provider_key.failing", {"key_source": "byok", "key_id": "k", "last4": "wxyz", "status": 403,
                              "provider": "groq", "provider_name": "Groq", "day": "2026-11-29"}),
    ("provider_key.failing", {"key_source": "team", "key_id": "k", "last4": "0000", "status": 401,
                              "provider": "mistral", "provider_name": "Mistral", "day": "2026-11-29"}),
    ("api_key.created", {"api_key_id": "k", "name": "deploy", "prefix": "abcdEFGH1234"}),
    ("api_key.revoked", {"api_key_id": "k", "name": "deploy", "prefix": "abcdEFGH1234"}),
    ("password.changed", {}),
    ("team.invitation.created", {"invitation_id": "i", "role": "admin", "expires_at": "2026-12-06T12:00:00+00:00",
                                 "created_by": "u", "team_name": "T"}),
    ("credits.granted", {"wallet": "user", "amount_micro": 1_500_000, "balance_micro": 2_000_000, "reason": ""}),
    ("credits.granted", {"wallet": "team", "amount_micro": 1, "balance_micro": 1, "reason": "top-up"}),
]


def test_every_event_type_has_a_case() -> None:
    assert {t for t, _ in CASES} == set(EVENT_TYPES)


@pytest.mark.parametrize(("event_type", "data"), CASES)
def test_templates_render(event_type: str, data: dict[str, Any]) -> None:
    rendered = mail.render(event_type, {"data": data, "name": "Ann", "email": "ann@example.test",
                                        "team_name": "Team <&>", "public_url": "https://sb.example",
                                        "settings_url": "https://sb.example/settings#notifications",
                                        "at": "2026-11-29 12:00 UTC", "label": EVENT_TYPES[event_type]})
    assert rendered.subject and "\n" not in rendered.subject and len(rendered.subject) < 200
    assert "Hello Ann," in rendered.text and "https://sb.example/settings#notifications" in rendered.text
    assert "Email notifications" in rendered.text and "Email notifications" in rendered.html
    assert "<&>" not in rendered.html and "<bot>" not in rendered.html  # escaped in HTML


def test_credits_are_shown_without_float_noise() -> None:
    assert [mail.credits(v) for v in (0, 1, 1_500_000, 12_345_678_900_000, "x")] == [
        "0", "0.000001", "1.5", "12,345,678.9", "?"]
    assert [mail.credits_label(v) for v in (1_000_000, 2_500_000)] == ["1 credit", "2.5 credits"]
