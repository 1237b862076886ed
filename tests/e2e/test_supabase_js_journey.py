"""supabase-js end to end: the real `@supabase/supabase-js` and `openai` npm packages (pinned in package.json,
installed by scripts/setup.sh) run tests/js/journey.mjs in Node against the app on a loopback port — sign up,
sign in, get and update the user, /v1 with the openai SDK and the session's token, refresh with rotation and reuse
detection, sign out. Missing Node or node_modules is a failure that says how to fix it, never a skip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Gateway, balance
from tests.e2e.test_supabase_py_journey import REUSE_SECONDS, anon_key
from tests.support.live import serve
from webapp import create_app
from webapp.config import Settings
from webapp.repos import credits as credits_repo
from webapp.repos import refresh_tokens

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "js" / "journey.mjs"
PACKAGES = ("@supabase/supabase-js", "openai")


def node_or_fail() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is not installed: run `bash scripts/setup.sh` (it installs Node.js and npm).")
    for package in PACKAGES:
        if not (ROOT / "node_modules" / package / "package.json").is_file():
            pytest.fail(f"node_modules/{package} is missing: run `bash scripts/setup.sh` (npm ci from "
                        "package-lock.json) before the tests.")
    return node


@pytest.fixture()
def js_server(gateway: Gateway, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    monkeypatch.setattr(refresh_tokens, "REUSE_INTERVAL_SECONDS", REUSE_SECONDS)
    key = anon_key(settings)
    app = create_app(settings.with_overrides(supabase_anon_key=key))
    try:
        with serve(app) as url:
            yield url, key
    finally:
        app.extensions["switchboard"].db.close()


def run_journey(node: str, phase: str, env: dict[str, str]) -> list[dict[str, Any]]:
    proc = subprocess.run([node, str(SCRIPT), phase], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, f"journey.mjs {phase} failed:\n{proc.stderr}\n{proc.stdout}"
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_supabase_js_journey(js_server: tuple[str, str], db: Any) -> None:
    node = node_or_fail()
    url, key = js_server
    email = f"js-{uuid.uuid4().hex[:10]}@example.test"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(Path.home()),
           "SUPABASE_URL": url, "SUPABASE_ANON_KEY": key, "JOURNEY_EMAIL": email,
           "JOURNEY_PASSWORD": "journey passphrase 0815", "JOURNEY_REUSE_SECONDS": str(REUSE_SECONDS)}
    signed_up = run_journey(node, "signup", env)
    user_id = signed_up[-1]["user_id"]
    with db.as_service() as conn:  # a member needs credits for the /v1 call
        credits_repo.adjust(conn, user_id, 100_000_000, "journey grant", None)
    steps = run_journey(node, "session", env)
    assert [s["step"] for s in steps] == ["signed_in", "chat", "refreshed", "reuse_detected", "signed_out", "errors"]
    assert steps[0]["user_id"] == user_id
    assert balance(db, user_id) < 100_000_000  # the three chats were charged to this user
    with db.as_service() as conn:
        live = conn.execute("select count(*) from auth.sessions where user_id = %s", [user_id]).fetchone()
    assert live == (0,)


# The README's "local development" snippet for JavaScript (Node or a browser bundle), run verbatim as an ES module.
JS_README_SNIPPET = """\
import { createClient } from '@supabase/supabase-js'
import OpenAI from 'openai'

const SUPABASE_URL = process.env.SUPABASE_URL ?? 'http://127.0.0.1:8000' // make run serves Supabase Auth's API
const SWITCHBOARD_URL = process.env.SWITCHBOARD_URL ?? 'http://127.0.0.1:8000'

const supabase = createClient(SUPABASE_URL, process.env.SUPABASE_ANON_KEY)
const { data, error } = await supabase.auth.signInWithPassword({
  email: process.env.SWITCHBOARD_EMAIL,
  password: process.env.SWITCHBOARD_PASSWORD,
})
if (error) throw error

const openai = new OpenAI({
  baseURL: `${SWITCHBOARD_URL}/v1`,
  apiKey: data.session.access_token, // the user's own short-lived token, never a provider key
  dangerouslyAllowBrowser: true, // needed only in a browser; harmless in Node
})
const reply = await openai.chat.completions.create({
  model: process.env.SWITCHBOARD_MODEL ?? 'openai/gpt-4o-mini',
  messages: [{ role: 'user', content: 'Hello' }],
})
console.log(reply.choices[0].message.content)
await supabase.auth.signOut()
"""


def run_node_module(node: str, source: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `source` as an ES module from tests/js, where `import '@supabase/supabase-js'` resolves to the project's
    node_modules (bare imports resolve from the module's own directory, so a temporary directory would not do)."""
    path = ROOT / "tests" / "js" / f"_snippet_{uuid.uuid4().hex}.mjs"
    path.write_text(source)
    try:
        return subprocess.run([node, str(path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                              check=False)
    finally:
        path.unlink()


def test_readme_javascript_snippet_runs(js_server: tuple[str, str], member: Any, db: Any) -> None:
    node = node_or_fail()
    url, key = js_server
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(Path.home()), "SUPABASE_URL": url,
           "SWITCHBOARD_URL": url, "SUPABASE_ANON_KEY": key, "SWITCHBOARD_EMAIL": member.email,
           "SWITCHBOARD_PASSWORD": member.password, "SWITCHBOARD_MODEL": "echo-1"}
    proc = run_node_module(node, JS_README_SNIPPET, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "The quick brown fox jumps over the lazy dog."
    with db.as_service() as conn:  # signed out: no session of the snippet's is left with a refresh token
        rows = conn.execute("select count(*) from auth.sessions s join auth.refresh_tokens r on r.session_id = s.id"
                            " where s.user_id = %s", [member.id]).fetchone()
    assert rows == (0,)
