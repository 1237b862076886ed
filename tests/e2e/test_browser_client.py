"""The README's browser module in a real browser: esbuild (pinned in package.json) bundles tests/js/browser_app.mjs
with the real `openai` and `@supabase/supabase-js` packages and the README's `js-browser` snippet (read from
README.md); Chromium opens the page from a second loopback origin, a user signs in through its form (supabase-js
against /auth/v1), and the page lists the models, asks as JSON and streamed, and shows the receipts — read through
CORS, so a header the app does not expose shows as "(none)" and fails the test. Desktop and 390 px."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Gateway, balance, log_row
from tests.e2e.test_supabase_js_journey import node_or_fail
from tests.e2e.test_supabase_py_journey import anon_key
from tests.support.live import serve
from tests.support.readme import snippet
from tests.support.upstreams import REPLY
from webapp import create_app
from webapp.config import Settings

ROOT = Path(__file__).resolve().parents[2]
ENTRY = ROOT / "tests" / "js" / "browser_app.mjs"
ESBUILD = ROOT / "node_modules" / ".bin" / "esbuild"
MODEL = "e2e-oa/echo-1"
CREDITS = re.compile(r"^\d+(\.\d+)?$")
PAGE = """<!doctype html><html lang="en"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Switchboard from the browser</title>
<style>
  body { font: 16px system-ui, sans-serif; margin: 0 auto; padding: 1rem; max-width: 40rem; }
  form { display: grid; gap: .5rem; } input, button { font: inherit; padding: .5rem; max-width: 100%; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
  dd { margin: 0; overflow-wrap: anywhere; } ul { padding-left: 1.2rem; overflow-wrap: anywhere; }
</style>
<form id="sign-in">
  <label>Email <input id="email" type="email" autocomplete="username" required></label>
  <label>Password <input id="password" type="password" autocomplete="current-password" required></label>
  <button type="submit">Sign in and ask</button>
</form>
<p id="status" role="status"></p>
<p>Signed in as <span id="signed-in"></span></p>
<h2>Models</h2><ul id="models"></ul>
<h2>JSON</h2><dl>
  <dt>Reply</dt><dd id="json-text"></dd><dt>Provider</dt><dd id="json-provider"></dd>
  <dt>Credits</dt><dd id="json-credits"></dd><dt>Request</dt><dd id="json-request-id"></dd>
  <dt>Estimated</dt><dd id="json-estimated"></dd></dl>
<h2>Stream</h2><dl>
  <dt>Reply</dt><dd id="stream-text"></dd><dt>Pieces</dt><dd id="stream-pieces"></dd>
  <dt>Reserved</dt><dd id="stream-reserved"></dd><dt>Credits</dt><dd id="stream-credits"></dd>
  <dt>Estimated</dt><dd id="stream-estimated"></dd></dl>
<script>window.SWITCHBOARD_CONFIG = __CONFIG__</script>
<script type="module" src="/app.js"></script>
</html>"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """esbuild bundles the front end with the README's snippet as module `readme-js-browser` (no network)."""
    node_or_fail()
    if not ESBUILD.exists() or shutil.which("node") is None:
        pytest.fail("node_modules/.bin/esbuild is missing: run `bash scripts/setup.sh` (npm ci) first.")
    out = tmp_path_factory.mktemp("browser-bundle")
    module = out / "js-browser.mjs"
    module.write_text(snippet("js-browser"), encoding="utf-8")
    proc = subprocess.run(
        [str(ESBUILD), str(ENTRY), "--bundle", "--format=esm", "--platform=browser", "--target=chrome120",
         f"--alias:readme-js-browser={module}", f"--outfile={out / 'app.js'}", "--log-level=warning"],
        cwd=ROOT, env={"PATH": str(Path(shutil.which("node") or "/usr/bin/node").parent),
                       "NODE_PATH": str(ROOT / "node_modules")},
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return out / "app.js"


class _FrontEnd(ThreadingHTTPServer):
    bundle: bytes
    config: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    server: _FrontEnd

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            body = PAGE.replace("__CONFIG__", json.dumps(self.server.config)).encode()
            kind = "text/html; charset=utf-8"
        elif path == "/app.js":
            body, kind = self.server.bundle, "text/javascript; charset=utf-8"
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
def front_end(bundle: Path) -> Iterator[_FrontEnd]:
    server = _FrontEnd(("127.0.0.1", 0), _Handler)
    server.bundle = bundle.read_bytes()
    server.config = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _text(page: Any, element_id: str) -> str:
    return str(page.locator(f"#{element_id}").inner_text()).strip()


@pytest.mark.parametrize("width", [1280, 390])
def test_the_readme_browser_module_signs_in_lists_asks_and_streams(gateway: Gateway, settings: Settings,
                                                                   front_end: _FrontEnd, member: Any, db: Any,
                                                                   browser: Any, width: int) -> None:
    origin = f"http://127.0.0.1:{front_end.server_port}"
    key = anon_key(settings)
    app = create_app(settings.with_overrides(supabase_anon_key=key, cors_origins=(origin,)))
    failed: list[str] = []
    errors: list[str] = []
    before = balance(db, member.id)
    try:
        with serve(app) as url:
            front_end.config = {"url": url, "anonKey": key, "model": MODEL}
            context = browser.new_context(viewport={"width": width, "height": 844})
            try:
                page = context.new_page()
                page.on("requestfailed", lambda r: failed.append(f"{r.method} {r.url}: {r.failure}"))
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(origin + "/")
                page.wait_for_selector("body[data-ready=true]", timeout=10_000)
                page.fill("#email", member.email)
                page.fill("#password", member.password)
                page.click("#sign-in button")
                page.wait_for_function("() => /^(done|failed)/.test(document.getElementById('status').textContent)",
                                       timeout=30_000)
                shown = {i: _text(page, i) for i in (
                    "status", "signed-in", "json-text", "json-provider", "json-credits", "json-request-id",
                    "json-estimated", "stream-text", "stream-pieces", "stream-reserved", "stream-credits",
                    "stream-estimated")}
                models = page.locator("#models li").all_inner_texts()
                overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            finally:
                context.close()
        app.extensions["switchboard"].logs.flush()
    finally:
        app.extensions["switchboard"].db.close()
    assert failed == [] and errors == [], (failed, errors)  # a CORS refusal shows here
    assert shown["status"] == "done", shown
    assert shown["signed-in"] == member.email
    assert MODEL in models and all("/" in m for m in models)
    assert shown["json-text"] == REPLY and shown["json-provider"] == "e2e-oa"
    assert CREDITS.match(shown["json-credits"]) and float(shown["json-credits"]) > 0, shown
    assert shown["json-estimated"] == "false"
    row = log_row(db, str(uuid.UUID(shown["json-request-id"])))  # the id the page read is the logged request
    assert row["provider"] == "e2e-oa" and row["status"] == 200
    assert shown["stream-text"] == REPLY and int(shown["stream-pieces"]) > 1
    # Read from the stream's response headers: only possible when the app exposes them to the page's origin.
    assert CREDITS.match(shown["stream-reserved"]), shown
    assert CREDITS.match(shown["stream-credits"]) and float(shown["stream-credits"]) <= float(shown["stream-reserved"])
    assert shown["stream-estimated"] == "false"
    assert balance(db, member.id) < before
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px at {width}px"
