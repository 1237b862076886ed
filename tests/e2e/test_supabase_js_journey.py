"""supabase-js end to end: the real `@supabase/supabase-js` and `openai` npm packages (pinned in package.json,
installed by scripts/setup.sh) run tests/js/journey.mjs in Node against the app on a loopback port — sign up,
sign in, get and update the user, /v1 with the openai SDK and the session's token, refresh with rotation and reuse
detection, sign out. Missing Node or node_modules is a failure that says how to fix it, never a skip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Gateway, balance
from tests.e2e.test_supabase_py_journey import REUSE_SECONDS, anon_key
from tests.support.live import serve
from tests.support.readme import snippet
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


# The README's "local development" snippet for JavaScript (Node), run verbatim as an ES module. In a browser the
# same code needs `dangerouslyAllowBrowser: true` for the openai SDK (see the Chromium test below).
JS_README_SNIPPET = snippet("js-local")


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


# -- the browser variant: supabase-js and openai in Chromium, on a page of another origin (CORS) -------------------

PAGE = """<!doctype html><meta charset="utf-8"><title>supabase-js in a browser</title>
<script src="/node_modules/@supabase/supabase-js/dist/umd/supabase.js"></script>
<script type="module">
import OpenAI from '/node_modules/openai/index.mjs'
window.journey = async (url, key, email, password) => {
  const sb = supabase.createClient(url, key, { auth: { persistSession: false, autoRefreshToken: false } })
  const signedIn = await sb.auth.signInWithPassword({ email, password })
  if (signedIn.error) return { failed: 'sign-in', message: signedIn.error.message }
  const refreshed = await sb.auth.refreshSession()
  if (refreshed.error) return { failed: 'refresh', message: refreshed.error.message }
  const user = await sb.auth.updateUser({ data: { from: 'browser' } })
  const openai = new OpenAI({ baseURL: url + '/v1', apiKey: refreshed.data.session.access_token,
                              dangerouslyAllowBrowser: true, maxRetries: 0 })
  const reply = await openai.chat.completions.create({ model: 'echo-1', messages: [{ role: 'user', content: 'hi' }] })
  const wrong = await sb.auth.signInWithPassword({ email, password: 'not the passphrase at all' })
  const signOut = await sb.auth.signOut()
  return { reply: reply.choices[0].message.content, metadata: user.data.user?.user_metadata,
           wrongCode: wrong.error?.code ?? null, signOutError: signOut.error?.message ?? null,
           receipt: reply._request_id ?? null }
}
window.ready = true
</script>"""


# The README's browser snippet (a module exporting `ask`) imported by a page that signs in with supabase-js; the
# import map resolves the snippet's bare `import OpenAI from 'openai'` as a bundler would.
README_PAGE = """<!doctype html><meta charset="utf-8"><title>the README's browser snippet</title>
<script type="importmap">{"imports": {"openai": "/node_modules/openai/index.mjs"}}</script>
<script src="/node_modules/@supabase/supabase-js/dist/umd/supabase.js"></script>
<script type="module">
import { ask } from '/ask.mjs'
window.run = async (url, key, email, password) => {
  const sb = supabase.createClient(url, key, { auth: { persistSession: false, autoRefreshToken: false } })
  const signedIn = await sb.auth.signInWithPassword({ email, password })
  if (signedIn.error) return { failed: signedIn.error.message }
  const reply = await ask(sb, url, 'echo-1', 'Hello')
  await sb.auth.signOut()
  return { reply }
}
window.ready = true
</script>"""


class _PageHandler(BaseHTTPRequestHandler):
    """The front end's own origin: the page, and the two npm packages' files (nothing else of the repo)."""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            body, kind = PAGE.encode(), "text/html; charset=utf-8"
        elif path == "/readme":
            body, kind = README_PAGE.encode(), "text/html; charset=utf-8"
        elif path == "/ask.mjs":  # the README's browser snippet, as the app would serve its own module
            body, kind = snippet("js-browser").encode(), "text/javascript; charset=utf-8"
        elif path.startswith(("/node_modules/@supabase/", "/node_modules/openai/")) and ".." not in path:
            file = ROOT / path.lstrip("/")
            if not file.is_file():
                self.send_error(404)
                return
            body, kind = file.read_bytes(), "text/javascript; charset=utf-8"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def front_end() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def in_chromium(browser: Any, settings: Settings, front_end: str, page_path: str, function: str,
                member: Any) -> tuple[Any, list[str], list[str]]:
    """Serve the app (the page's origin allowed by CORS), open `page_path` of the front end in Chromium, and call
    window.<function>(url, anon key, email, password). Returns its result, failed requests and page errors."""
    node_or_fail()
    key = anon_key(settings)
    app = create_app(settings.with_overrides(supabase_anon_key=key, cors_origins=(front_end,)))
    failed: list[str] = []
    errors: list[str] = []
    try:
        with serve(app) as url:
            context = browser.new_context()
            try:
                page = context.new_page()
                page.on("requestfailed", lambda r: failed.append(f"{r.method} {r.url}: {r.failure}"))
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(front_end + page_path)
                page.wait_for_function("window.ready === true", timeout=10_000)
                result = page.evaluate(f"([u, k, e, p]) => window.{function}(u, k, e, p)",
                                       [url, key, member.email, member.password])
            finally:
                context.close()
    finally:
        app.extensions["switchboard"].db.close()
    return result, failed, errors


def test_browser_supabase_js_and_openai_from_another_origin(gateway: Gateway, settings: Settings, front_end: str,
                                                          member: Any, db: Any, browser: Any) -> None:
    result, failed, _ = in_chromium(browser, settings, front_end, "/", "journey", member)
    assert failed == [], failed  # a CORS refusal shows here
    assert result["reply"] == "The quick brown fox jumps over the lazy dog.", result
    assert result["metadata"] == {"from": "browser"}
    # The error code is read from the 2024 format, which supabase-js picks by the exposed version header.
    assert result["wrongCode"] == "invalid_credentials"
    assert result["signOutError"] is None
    with db.as_service() as conn:
        assert conn.execute("select count(*) from auth.sessions where user_id = %s",
                            [member.id]).fetchone() == (0,)


def test_readme_browser_snippet_runs_in_chromium(gateway: Gateway, settings: Settings, front_end: str, member: Any,
                                                 db: Any, browser: Any) -> None:
    """The README's browser snippet, served verbatim as a module of a page on another origin, signs nothing itself:
    the page's supabase-js client does, and the snippet calls /v1 with the session's token through CORS."""
    result, failed, errors = in_chromium(browser, settings, front_end, "/readme", "run", member)
    assert failed == [] and errors == [], (failed, errors)
    assert result == {"reply": "The quick brown fox jumps over the lazy dog."}
