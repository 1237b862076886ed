"""The /v1 edges real clients hit, against the app on a loopback port with real loopback upstreams:
GET /v1/models/{id} (ids contain `/`) with the official Python and Node SDKs, URLs joined with an extra slash,
/v1/models following a keyless local engine going down and up (and the admin panel saying so), and usage that
Switchboard estimated flagged in the standard `usage` object."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import psycopg
import pytest
import requests

from tests.support.admin import insert_provider, web_sign_in
from tests.support.live import serve
from tests.support.upstreams import FakeUpstream, start_openai_upstream
from webapp import create_app
from webapp.config import Settings
from webapp.crypto import KeyRing, admin_aad
from webapp.repos import credits as credits_repo

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-edges-admin-3f9c1d2e7a"
PROBE_TTL = 0.4  # ENGINE_PROBE_SECONDS for this app: long enough to see caching, short enough to wait out


@dataclass
class Edges:
    url: str
    app: Any
    keyed: str  # slug of a provider with an admin key (never probed)
    local: str  # slug of a keyless loopback engine (probed)
    upstream: FakeUpstream
    engine: FakeUpstream
    token: str

    def client(self, base: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=base or self.url + "/v1", api_key=self.token, max_retries=0, timeout=30)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def edges(settings: Settings, database_urls: tuple[str, str], make_user: Any, db: Any) -> Iterator[Edges]:
    upstream = start_openai_upstream(api_key=KEY)
    engine = start_openai_upstream()  # an LM Studio stand-in: no key
    tag = uuid.uuid4().hex[:6]
    keyed, local = f"edge-{tag}", f"edge-local-{tag}"
    keyring = KeyRing(settings.encryption_keys)
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        pid = insert_provider(conn, keyed, upstream.base_url, models=(f"echo-{tag}", f"org/nested-{tag}"))
        ciphertext, kid = keyring.encrypt(KEY, admin_aad(pid))
        conn.execute("""insert into public.llm_admin_keys (provider_id, ciphertext, key_id, last4, label)
                        values (%s, %s, %s, %s, 'edges')""", [pid, ciphertext, kid, KEY[-4:]])
        lid = insert_provider(conn, local, engine.base_url, models=(f"local-{tag}",))
        conn.execute("update public.llm_providers set free_for_byok = false where id = %s", [lid])
    user = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, user.id, 100_000_000, "edges grant", None)
    app = create_app(settings.with_overrides(engine_probe_seconds=PROBE_TTL))
    try:
        with serve(app) as url:
            yield Edges(url, app, keyed, local, upstream, engine, user.token)
    finally:
        app.extensions["switchboard"].logs.flush()
        app.extensions["switchboard"].db.close()
        with psycopg.connect(database_urls[0], autocommit=True) as conn:
            conn.execute("update public.llm_providers set enabled = false where slug in (%s, %s)", [keyed, local])
        upstream.stop()
        engine.stop()


def tag_of(edges: Edges) -> str:
    return edges.keyed.removeprefix("edge-")


def listed(edges: Edges) -> set[str]:
    resp = requests.get(edges.url + "/v1/models", headers=edges.auth, timeout=10)
    assert resp.status_code == 200, resp.text
    return {m["id"] for m in resp.json()["data"]}


def assert_openai_error(resp: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json"), resp.headers["Content-Type"]
    err = resp.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"} and err["code"] == code
    return err


# -- GET /v1/models/{id} ---------------------------------------------------------------------------------------

def test_models_retrieve_with_the_python_sdk(edges: Edges) -> None:
    tag, client = tag_of(edges), edges.client()
    got = client.models.retrieve(f"{edges.keyed}/echo-{tag}")
    assert (got.id, got.object, got.owned_by) == (f"{edges.keyed}/echo-{tag}", "model", edges.keyed)
    nested = client.models.retrieve(f"{edges.keyed}/org/nested-{tag}")  # two slashes in the id
    assert nested.id == f"{edges.keyed}/org/nested-{tag}"
    bare = client.models.retrieve(f"echo-{tag}")
    assert (bare.id, bare.owned_by) == (f"echo-{tag}", edges.keyed)
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve(f"{edges.keyed}/no-such-model")
    assert info.value.code == "model_not_found"
    assert info.value.body["type"] == "invalid_request_error"  # type: ignore[index]


def test_models_retrieve_refuses_what_the_list_does_not_offer(edges: Edges, database_urls: tuple[str, str]) -> None:
    tag = tag_of(edges)
    assert_openai_error(requests.get(f"{edges.url}/v1/models/{edges.keyed}/echo-{tag}", timeout=10), 401,
                        "missing_token")
    # A model switched off by the admin is neither listed nor retrievable.
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        conn.execute("""update public.llm_model_rates set enabled = false where model = %s""", [f"org/nested-{tag}"])
    try:
        deadline = time.time() + 10
        while f"{edges.keyed}/org/nested-{tag}" in listed(edges) and time.time() < deadline:
            time.sleep(0.2)  # the catalog cache is invalidated by the database, not instantly
        assert f"{edges.keyed}/org/nested-{tag}" not in listed(edges)
        resp = requests.get(f"{edges.url}/v1/models/{edges.keyed}/org/nested-{tag}", headers=edges.auth, timeout=10)
        assert_openai_error(resp, 404, "model_not_found")
    finally:
        with psycopg.connect(database_urls[0], autocommit=True) as conn:
            conn.execute("update public.llm_model_rates set enabled = true where model = %s", [f"org/nested-{tag}"])


# -- slashes ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/chat/completions/", "/v1//chat/completions", "/v1/chat//completions",
                                  "/v1//chat/completions//"])
def test_chat_with_extra_slashes_is_the_canonical_route(edges: Edges, path: str) -> None:
    body = {"model": f"{edges.keyed}/echo-{tag_of(edges)}", "messages": [{"role": "user", "content": "hi"}]}
    resp = requests.post(edges.url + path, json=body, headers=edges.auth, timeout=30, allow_redirects=False)
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "The quick brown fox jumps over the lazy dog."
    assert resp.headers["X-Switchboard-Provider"] == edges.keyed


@pytest.mark.parametrize("path", ["/v1/models/", "/v1//models", "/v1//models//"])
def test_models_with_extra_slashes_is_the_canonical_route(edges: Edges, path: str) -> None:
    resp = requests.get(edges.url + path, headers=edges.auth, timeout=10, allow_redirects=False)
    assert resp.status_code == 200, resp.text
    assert resp.json()["object"] == "list"


@pytest.mark.parametrize("suffix", ["/", "//", ""])
def test_model_with_extra_slashes_is_the_canonical_route(edges: Edges, suffix: str) -> None:
    tag = tag_of(edges)
    for path in (f"/v1/models/{edges.keyed}/echo-{tag}{suffix}", f"/v1//models/{edges.keyed}//echo-{tag}{suffix}"):
        resp = requests.get(edges.url + path, headers=edges.auth, timeout=10, allow_redirects=False)
        assert resp.status_code == 200, (path, resp.text)
        assert resp.json()["id"] == f"{edges.keyed}/echo-{tag}"


def test_sdk_with_a_trailing_slash_base_url_works(edges: Edges) -> None:
    client = edges.client(edges.url + "/v1/")
    assert f"{edges.keyed}/echo-{tag_of(edges)}" in {m.id for m in client.models.list()}


@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("GET", "/v1/chat/completions/", 405, "method_not_allowed"),
    ("DELETE", "/v1//models", 405, "method_not_allowed"),
    ("POST", "/v1/models/x/y", 405, "method_not_allowed"),
    ("GET", "/v1//no/such", 404, "unknown_url"),
    ("POST", "/v1///", 404, "unknown_url"),
    ("GET", "/v1/", 404, "unknown_url"),
])
def test_slash_variants_never_answer_html_or_a_redirect(edges: Edges, method: str, path: str, status: int,
                                                        code: str) -> None:
    resp = requests.request(method, edges.url + path, headers=edges.auth, timeout=10, allow_redirects=False)
    assert_openai_error(resp, status, code)
    if status == 405:
        assert resp.headers["Allow"] in ("GET", "POST")


# -- keyless local engines in /v1/models -----------------------------------------------------------------------

def _wait_for(edges: Edges, model: str, present: bool) -> set[str]:
    deadline = time.time() + 10
    while True:
        ids = listed(edges)
        if (model in ids) == present or time.time() > deadline:
            return ids
        time.sleep(PROBE_TTL / 2)


def engine_probes(engine: FakeUpstream) -> int:
    return sum(1 for r in engine.requests if r.method == "GET" and r.path.endswith("/models"))


def test_models_list_follows_a_local_engine_going_down_and_up(edges: Edges, make_user: Any) -> None:
    local_model = f"{edges.local}/local-{tag_of(edges)}"
    keyed_model = f"{edges.keyed}/echo-{tag_of(edges)}"
    assert local_model in _wait_for(edges, local_model, True)
    edges.engine.behaviour = "refuse"  # the engine stops: its port refuses connections
    try:
        ids = _wait_for(edges, local_model, False)
        assert local_model not in ids
        assert keyed_model in ids  # a provider with a key is not probed, so not dropped
        resp = requests.get(f"{edges.url}/v1/models/{local_model}", headers=edges.auth, timeout=10)
        assert_openai_error(resp, 404, "model_not_found")
        assert_admin_panel_says(edges, make_user, "down")
    finally:
        edges.engine.behaviour = None  # listening again, on the same port
    assert local_model in _wait_for(edges, local_model, True)
    assert_admin_panel_says(edges, make_user, "up")


def test_the_engine_is_probed_at_most_once_per_ttl_not_per_call(edges: Edges) -> None:
    time.sleep(PROBE_TTL)  # the last result is stale: the next call probes once
    before = engine_probes(edges.engine)
    for _ in range(8):
        listed(edges)
    after = engine_probes(edges.engine)
    assert 1 <= after - before <= 2  # one probe (two if the calls straddled the TTL), never one per call


def assert_admin_panel_says(edges: Edges, make_user: Any, state: str) -> None:
    admin = make_user(admin=True)
    client = edges.app.test_client()
    web_sign_in(client, admin)
    html = client.get("/admin/providers").get_data(as_text=True)
    row = html[html.index(f"<code>{edges.local}</code>") if f"<code>{edges.local}</code>" in html
               else html.index(edges.local):]
    row = row[:row.index("</tr>")]
    assert f'data-engine="{state}"' in row, row


# -- estimated usage -------------------------------------------------------------------------------------------

def test_estimated_usage_is_flagged_in_the_standard_usage_field(edges: Edges) -> None:
    client, model = edges.client(), f"{edges.keyed}/echo-{tag_of(edges)}"
    measured = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}])
    reply = measured.parse()
    assert reply.usage is not None and reply.usage.model_extra == {"switchboard_estimated": False}
    assert measured.headers["X-Switchboard-Usage"] == "measured"
    edges.upstream.behaviour = "no_usage"
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "hi"}])
        estimated = raw.parse()
        assert raw.headers["X-Switchboard-Usage"] == "estimated"
        assert estimated.usage is not None and estimated.usage.model_extra == {"switchboard_estimated": True}
        assert estimated.usage.completion_tokens > 0
        assert estimated.usage.total_tokens == estimated.usage.prompt_tokens + estimated.usage.completion_tokens
        chunks = list(client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                                     stream=True, stream_options={"include_usage": True}))
        usage = chunks[-1].usage
        assert usage is not None and usage.model_extra == {"switchboard_estimated": True}
    finally:
        edges.upstream.behaviour = None
    chunks = list(client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].usage.model_extra == {"switchboard_estimated": False}


# -- the Node SDK ----------------------------------------------------------------------------------------------

def test_node_sdk_retrieves_models_and_reads_the_estimated_flag(edges: Edges) -> None:
    from tests.e2e.test_supabase_js_journey import node_or_fail

    node, tag = node_or_fail(), tag_of(edges)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(Path.home()),
           "SWITCHBOARD_URL": edges.url, "SWITCHBOARD_TOKEN": edges.token,
           "PREFIXED": f"{edges.keyed}/org/nested-{tag}", "BARE": f"echo-{tag}", "UNKNOWN": f"{edges.keyed}/nope"}
    edges.upstream.behaviour = "no_usage"
    try:
        proc = subprocess.run([node, str(ROOT / "tests" / "js" / "v1_edges.mjs")], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
    finally:
        edges.upstream.behaviour = None
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["prefixed"] == {"id": f"{edges.keyed}/org/nested-{tag}", "owned_by": edges.keyed}
    assert out["bare"] == {"id": f"echo-{tag}", "owned_by": edges.keyed}
    assert out["unknown"] == {"status": 404, "code": "model_not_found"}
    assert out["estimated"] is True and out["streamEstimated"] is True
