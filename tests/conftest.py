"""Shared fixtures: a real Postgres database per test session, the app, a client, users and tokens."""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.chromium import browser  # noqa: F401 (the session's one Chromium, for any test folder)
from tests.support.dbsetup import create_test_database, test_environ
from webapp import create_app
from webapp.config import Settings, load_settings
from webapp.db import Database
from webapp.repos import users as users_repo

TEST_DB = os.environ.get("TEST_DATABASE_NAME", "switchboard_test")


@dataclass
class TestUser:
    id: str
    email: str
    password: str
    claims: dict[str, Any]
    token: str
    is_admin: bool

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(autouse=True)
def _close_sdk_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every official SDK client (openai, anthropic) a test made when it ends, whether or not the test did:
    each holds a pool of sockets, and one left to the garbage collector is a ResourceWarning (an error here)."""
    made: list[Any] = []
    for cls in (openai.OpenAI, anthropic.Anthropic):
        def init(self: Any, *args: Any, _init: Any = cls.__init__, **kwargs: Any) -> None:
            _init(self, *args, **kwargs)
            made.append(self)

        monkeypatch.setattr(cls, "__init__", init)
    yield
    for client in made:
        client.close()


@pytest.fixture(scope="module", autouse=True)
def _collect_garbage_per_module() -> Iterator[None]:
    """Collect garbage when each test module ends. An HTTP client left unclosed in a reference cycle is otherwise
    freed whenever the collector happens to run, and its ResourceWarning (an error in this suite) fails some
    unrelated later test; collected here, it fails the last test of the module that leaked it, every run."""
    yield
    gc.collect()


@pytest.fixture(scope="session")
def database_urls() -> tuple[str, str]:
    return create_test_database(TEST_DB)


@pytest.fixture(scope="session")
def test_env(database_urls: tuple[str, str]) -> dict[str, str]:
    admin_url, app_url = database_urls
    return test_environ(app_url, admin_url)


@pytest.fixture(scope="session")
def settings(test_env: dict[str, str]) -> Settings:
    return load_settings(test_env)


@pytest.fixture(scope="session")
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url, 1, 20)
    database.open()
    yield database
    database.close()


@pytest.fixture()
def admin_conn(database_urls: tuple[str, str]) -> Iterator[psycopg.Connection]:
    """A superuser connection for test set-up and inspection (never how the app connects)."""
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        yield conn


@pytest.fixture()
def app(settings: Settings) -> Iterator[Flask]:
    application = create_app(settings)
    yield application
    application.extensions["switchboard"].db.close()


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="session")
def make_user(db: Database, settings: Settings) -> Any:
    """Create a real auth.users row (bcrypt via pgcrypto) and mint its access token the way sign-in does."""

    from webapp.auth.tokens import mint_access_token

    def _make(admin: bool = False, password: str = "correct horse battery") -> TestUser:
        email = f"user-{uuid.uuid4().hex[:10]}@example.test"
        with db.as_service() as conn:
            user = users_repo.create(conn, email, password, admin=admin)
            session_id = users_repo.create_session(conn, user.id)  # a live session, as sign-in makes
        token = mint_access_token(settings, user_id=user.id, email=user.email, app_metadata=user.app_metadata,
                                  user_metadata=user.user_metadata, session_id=session_id)
        claims = {"sub": user.id, "email": user.email, "role": "authenticated", "aud": "authenticated",
                  "app_metadata": user.app_metadata, "user_metadata": user.user_metadata, "session_id": session_id}
        return TestUser(user.id, email, password, claims, token, admin)

    return _make
