"""/v1/responses with the caller's own key (BYOK) on a preset that speaks the Responses API: state stays with the
provider under that key — `previous_response_id` and `store` pass through, and `responses.retrieve` / `.delete`
reach the provider with it. Member mode keeps and reaches none."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import psycopg
import pytest

from tests.e2e.conftest import CANARY, Gateway, balance
from tests.support.upstreams import REPLY


@pytest.fixture()
def byok_client(settings: Any, gw: Gateway, member: Any, database_urls: tuple[str, str]) -> Iterator[openai.OpenAI]:
    """Switchboard allowing loopback BYOK base URLs (the e2e upstreams live there), e2e-oa2 speaking the Responses
    API, and an SDK client sending the member's own key for it."""
    from tests.support.live import serve
    from webapp import create_app

    app = create_app(settings.with_overrides(byok_allow_private_urls=True))
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        conn.execute("update public.llm_providers set responses_api = true where slug = 'e2e-oa2'")
        try:
            with serve(app) as url:
                with openai.OpenAI(base_url=url + "/v1", api_key=member.token, max_retries=0, timeout=30,
                                   default_headers={"X-BYOK-API-Key": CANARY["byok"], "X-BYOK-Provider": "e2e-oa2",
                                                    "X-BYOK-Base-URL": gw.byok.base_url}) as client:
                    yield client
                app.extensions["switchboard"].logs.flush()
        finally:
            app.extensions["switchboard"].db.close()
            conn.execute("update public.llm_providers set responses_api = false where slug = 'e2e-oa2'")


def test_byok_passthrough_carries_provider_state_and_spends_nothing(byok_client: openai.OpenAI, gw: Gateway,
                                                                    member: Any, db: Any) -> None:
    before = balance(db, member.id)
    raw = byok_client.responses.with_raw_response.create(model="echo-1", input="go on",
                                                         previous_response_id="resp_fake", store=True)
    assert raw.parse().output_text == REPLY
    assert raw.headers["x-switchboard-mode"] == "byok" and raw.headers["x-switchboard-credits"] == "0.000000"
    sent = gw.byok.requests[-1]
    assert sent.path == "/v1/responses" and sent.body["previous_response_id"] == "resp_fake"
    assert sent.body["store"] is True and sent.headers["authorization"] == f"Bearer {CANARY['byok']}"
    assert balance(db, member.id) == before


def test_stored_response_is_read_and_deleted_with_the_callers_key(byok_client: openai.OpenAI, gw: Gateway) -> None:
    stored = byok_client.responses.retrieve("resp_fake")
    assert stored.id == "resp_fake" and stored.output_text == REPLY
    assert gw.byok.requests[-1].method == "GET" and gw.byok.requests[-1].path == "/v1/responses/resp_fake"
    byok_client.responses.delete("resp_fake")
    assert gw.byok.requests[-1].method == "DELETE"
    with pytest.raises(openai.NotFoundError) as err:
        byok_client.responses.retrieve("resp_other")
    assert err.value.body["code"] == "response_not_found"


def test_member_mode_has_no_stored_responses(gw: Gateway, member: Any) -> None:
    client = gw.client(member.token)
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.retrieve("resp_fake")
    assert err.value.body["code"] == "response_not_found" and "X-BYOK-API-Key" in err.value.message
    assert [r for r in (*gw.oa1.requests, *gw.oa2.requests) if r.path.startswith("/v1/responses/")] == []
