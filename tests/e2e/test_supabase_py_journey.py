"""supabase-py end to end against the local backend's /auth/v1, as an app would use it with `make run`:
sign up, sign in, get and update the user, call /v1 with the official `openai` SDK and the session's access
token, refresh (rotation; a reused token answered within the reuse interval, the session ended after it), sign out
(the refresh token dead, the access token refused). Real Postgres, the app on a loopback port, fake upstream
providers on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from jose import jws

from supabase import AuthApiError, AuthError, ClientOptions, create_client
from tests.e2e.conftest import Gateway, balance
from tests.support.live import serve
from tests.support.readme import snippet
from webapp import create_app
from webapp.config import Settings
from webapp.repos import credits as credits_repo
from webapp.repos import refresh_tokens

PASSWORD = "journey passphrase 4711"
REUSE_SECONDS = 1  # GoTrue's default is 10 s; shortened so the journey need not wait that long


def anon_key(settings: Settings) -> str:
    """A legacy anon key, as scripts/localenv.py writes one into .env.local."""
    now = int(time.time())
    token: str = jws.sign({"iss": "supabase", "ref": "local", "role": "anon", "iat": now, "exp": now + 3600},
                          settings.jwt_secret, algorithm="HS256")
    return token


@pytest.fixture()
def auth_server(gateway: Gateway, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """The app with an anon key configured (so the apikey check is on), served on loopback; the e2e providers
    the `gateway` fixture set up answer its /v1 calls. Yields (url, anon key)."""
    monkeypatch.setattr(refresh_tokens, "REUSE_INTERVAL_SECONDS", REUSE_SECONDS)
    key = anon_key(settings)
    app = create_app(settings.with_overrides(supabase_anon_key=key))
    try:
        with serve(app) as url:
            yield url, key
    finally:
        app.extensions["switchboard"].db.close()


_MADE: list[Any] = []  # the supabase clients a test made, closed when it ends


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Close the HTTP clients of every supabase client the test made: a pooled socket left to the garbage collector
    is a ResourceWarning (an error in this suite) in whatever test runs when it is collected."""
    yield
    while _MADE:
        _MADE.pop().auth.close()


def client(url: str, key: str) -> Any:
    made = create_client(url, key, options=ClientOptions(auto_refresh_token=False, persist_session=False))
    _MADE.append(made)
    return made


def chat(url: str, access_token: str) -> str:
    with openai.OpenAI(base_url=url + "/v1", api_key=access_token, max_retries=0, timeout=30) as ai:
        completion = ai.chat.completions.create(model="echo-1",
                                                messages=[{"role": "user", "content": "hello there"}])
    return completion.choices[0].message.content or ""


def test_supabase_py_journey(auth_server: tuple[str, str], db: Any) -> None:
    url, key = auth_server
    supabase = client(url, key)
    email = f"py-{uuid.uuid4().hex[:10]}@example.test"

    # Sign up: a user, no session (the local server asks for a sign-in, as a project with confirmations does).
    signed_up = supabase.auth.sign_up({"email": email, "password": PASSWORD, "options": {"data": {"name": "Py"}}})
    assert signed_up.session is None and signed_up.user is not None and signed_up.user.email == email
    with db.as_service() as conn:
        credits_repo.adjust(conn, signed_up.user.id, 100_000_000, "journey grant", None)

    # Sign in, read and update the user.
    session = supabase.auth.sign_in_with_password({"email": email, "password": PASSWORD}).session
    assert session is not None and session.user.id == signed_up.user.id
    user = supabase.auth.get_user()
    assert user is not None and user.user.email == email and user.user.user_metadata == {"name": "Py"}
    updated = supabase.auth.update_user({"data": {"plan": "journey"}})
    assert updated.user.user_metadata == {"name": "Py", "plan": "journey"}

    # The session's access token is an API key for the OpenAI SDK.
    before = balance(db, session.user.id)
    assert chat(url, session.access_token) == "The quick brown fox jumps over the lazy dog."
    assert balance(db, session.user.id) < before

    # Refresh: a new pair; the used token, sent again at once, still gets an answer (a second tab) ...
    refreshed = supabase.auth.refresh_session(session.refresh_token).session
    assert refreshed is not None and refreshed.refresh_token != session.refresh_token
    assert chat(url, refreshed.access_token)
    again = client(url, key).auth.refresh_session(session.refresh_token).session
    assert again is not None and again.refresh_token not in (session.refresh_token, refreshed.refresh_token)
    # ... but after the reuse interval it is refused and the whole session ends with it.
    time.sleep(REUSE_SECONDS + 0.5)
    with pytest.raises(AuthApiError) as reused:
        client(url, key).auth.refresh_session(session.refresh_token)
    assert reused.value.code == "refresh_token_already_used" and reused.value.status == 400
    with pytest.raises(AuthApiError) as dead:
        client(url, key).auth.refresh_session(refreshed.refresh_token)
    assert dead.value.code == "refresh_token_not_found"
    with pytest.raises(openai.AuthenticationError):
        chat(url, again.access_token)

    # Sign in again and sign out: the refresh token is dead and the access token refused on the next request.
    session = supabase.auth.sign_in_with_password({"email": email, "password": PASSWORD}).session
    assert session is not None and chat(url, session.access_token)
    supabase.auth.sign_out()
    assert supabase.auth.get_session() is None
    with pytest.raises(AuthApiError) as after:
        client(url, key).auth.refresh_session(session.refresh_token)
    assert after.value.code == "refresh_token_not_found"
    with pytest.raises(openai.AuthenticationError) as refused:
        chat(url, session.access_token)
    assert refused.value.status_code == 401
    with pytest.raises(AuthError):
        client(url, key).auth.get_user(session.access_token)


def test_supabase_py_password_change_and_errors(auth_server: tuple[str, str]) -> None:
    url, key = auth_server
    email = f"pw-{uuid.uuid4().hex[:10]}@example.test"
    supabase = client(url, key)
    supabase.auth.sign_up({"email": email, "password": PASSWORD})
    with pytest.raises(AuthApiError) as wrong:
        supabase.auth.sign_in_with_password({"email": email, "password": "not the passphrase"})
    assert (wrong.value.code, wrong.value.status) == ("invalid_credentials", 400)
    supabase.auth.sign_in_with_password({"email": email, "password": PASSWORD})
    laptop = client(url, key)
    laptop_session = laptop.auth.sign_in_with_password({"email": email, "password": PASSWORD}).session
    assert laptop_session is not None
    with pytest.raises(AuthApiError) as missing:
        supabase.auth.update_user({"password": "a fresh passphrase 99"})
    assert missing.value.code == "current_password_required"
    supabase.auth.update_user({"password": "a fresh passphrase 99", "current_password": PASSWORD})
    # The other device's session ended with the change; this one goes on.
    with pytest.raises(AuthApiError):
        laptop.auth.refresh_session(laptop_session.refresh_token)
    assert supabase.auth.refresh_session().session is not None
    assert client(url, key).auth.sign_in_with_password(
        {"email": email, "password": "a fresh passphrase 99"}).session is not None


def test_supabase_py_with_a_wrong_anon_key_is_refused(auth_server: tuple[str, str]) -> None:
    url, _ = auth_server
    with pytest.raises(AuthApiError) as refused:
        client(url, "not-the-anon-key").auth.sign_in_with_password({"email": "a@example.test", "password": "x" * 12})
    assert refused.value.status == 401 and "Invalid API key" in refused.value.message


# The README's "local development" snippet for Python, run verbatim (SUPABASE_URL and SWITCHBOARD_URL default to
# `make run`'s http://127.0.0.1:8000; the test points both at the app on its loopback port).
PY_README_SNIPPET = snippet("python-local")


def snippet_env(url: str, key: str, email: str, password: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(Path.home()), "SUPABASE_URL": url,
            "SWITCHBOARD_URL": url, "SUPABASE_ANON_KEY": key, "SWITCHBOARD_EMAIL": email,
            "SWITCHBOARD_PASSWORD": password, "SWITCHBOARD_MODEL": "echo-1"}


def test_readme_python_snippet_runs(auth_server: tuple[str, str], member: Any, db: Any) -> None:
    url, key = auth_server
    proc = subprocess.run([sys.executable, "-c", PY_README_SNIPPET], env=snippet_env(url, key, member.email,
                          member.password), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "The quick brown fox jumps over the lazy dog."
    with db.as_service() as conn:  # signed out: the snippet's session is over
        rows = conn.execute("select count(*) from auth.sessions s join auth.refresh_tokens r on r.session_id = s.id"
                            " where s.user_id = %s", [member.id]).fetchone()
    assert rows == (0,)
