"""The README's first command, run from a clean clone in a temporary folder, sets everything up, serves the
sign-in page, and the admin it prints can sign in -- then the newcomer path of the README: in headless Chromium the
playground streams an answer from the real local model `make run` supervises, its receipt shows the charge, and the
same model answers through /v1 with the openai SDK and a personal API key made on the settings page. Stopping
`make run` stops the engine. The times (to the pages, to the engine, to the first streamed token) go to
artifacts/first-run-timing.txt."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import openai
import pytest
import requests

from tests.support.llama_server import require_llama
from tests.support.readme import snippet

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_cluster(clone: Path) -> None:
    path_file = clone / ".local" / "pgdata.path"
    data = Path(path_file.read_text().strip()) if path_file.exists() else clone / ".local" / "pgdata"
    if (data / "postmaster.pid").exists():
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        cmd = [str(bindir / "pg_ctl"), "-D", str(data), "stop", "-m", "fast"]
        if os.getuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=False, capture_output=True, timeout=60)


def _engine_pids(clone: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", "llama_cpp.server"], capture_output=True, text=True, check=False).stdout
    pids = []
    for pid in out.split():
        try:
            if str(clone) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(pid))
        except OSError:
            continue
    return pids


def _playground_journey(browser: Any, base: str, password: str, started: float, timings: dict[str, float]) -> str:
    """Sign in, ask the local model in the playground (waiting for it to join), check the receipt, make an API
    key. Returns the key."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(base + "/auth/sign-in")
        page.fill("#email", "first-admin@example.test")
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url("**/settings")
        deadline = time.time() + 600  # the engine joins when ready (it may be installing from the cached wheel)
        while page.locator('#play-model option[value="local/smollm2"]').count() == 0:
            assert time.time() < deadline, "the local model never joined the playground"
            time.sleep(2)
            page.reload()
        timings["local model listed"] = time.time() - started
        assert "New accounts get 1" in page.inner_text("#play-local-note")
        page.select_option("#play-model", "local/smollm2")
        page.fill("#play-prompt", "Name one colour of the rainbow.")
        page.click("#play-submit")
        page.wait_for_selector("#play-answer span", timeout=120_000)
        timings["first streamed token"] = time.time() - started
        page.wait_for_selector("#play-receipt-list", timeout=120_000)
        assert page.inner_text("#play-answer").strip()
        credits = page.inner_text("#play-receipt-list [data-field=credits]")
        assert float(credits.split()[0]) > 0, credits
        assert "local" in page.inner_text("#play-receipt-list [data-field=provider]")
        width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width <= inner, f"the page scrolls sideways at 390 px: {width} > {inner}"
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#playground").screenshot(path=str(ARTIFACTS / "first-run-playground-phone.png"))
        page.fill("#api-keys-name", "first run")
        page.click("#api-keys-submit")
        page.wait_for_selector("#api-key-secret")
        return page.inner_text("#api-key-secret").strip()
    finally:
        context.close()


@pytest.mark.llama
@pytest.mark.timeout(1500)
def test_make_run_from_a_clean_clone_serves_sign_in_and_the_printed_admin_signs_in(browser: Any) -> None:
    require_llama()  # the cached llama-cpp-python wheel (scripts/build_llama.sh) is installed from, not rebuilt
    # The private cluster belongs to the `postgres` OS user, which must be able to reach the project folder:
    # pytest's own tmp_path (mode 700, root's) is not, so the clone goes to a traversable temporary folder.
    tmp_path = Path(tempfile.mkdtemp(prefix="switchboard-first-run-"))
    tmp_path.chmod(0o755)
    clone = tmp_path / "switchboard"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "TIKTOKEN_CACHE_DIR", "VIRTUAL_ENV"}}
    env.update(PORT=str(port), ADMIN_EMAIL="first-admin@example.test")
    log = (tmp_path / "run.log").open("w+")
    started = time.time()
    timings: dict[str, float] = {}
    proc = subprocess.Popen(["make", "run"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            assert proc.poll() is None, "make run exited early:\n" + Path(log.name).read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/auth/sign-in", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # gunicorn listens before its workers have booted
                pass
            time.sleep(1)
        timings["pages served"] = time.time() - started
        output = Path(log.name).read_text()
        assert "local model: granted 10 credits to first-admin@example.test" in output, output[-3000:]
        assert "sign-up grant was 0: set to 1 credit" in output
        match = re.search(r"one-time password: (\S+)", output)
        assert match, "the run command prints the first admin's one-time password:\n" + output[-3000:]
        s = requests.Session()
        page = s.get(f"http://127.0.0.1:{port}/auth/sign-in", timeout=5).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        resp = s.post(f"http://127.0.0.1:{port}/auth/sign-in", timeout=10, allow_redirects=False,
                      data={"email": "first-admin@example.test", "password": match.group(1),
                            "csrf_token": token.group(1)})
        assert resp.status_code == 302 and resp.headers["Location"].endswith("/settings")
        assert s.get(f"http://127.0.0.1:{port}/settings", timeout=5).status_code == 200
        assert (clone / ".env.local").exists() and "SECRET_KEY=" in (clone / ".env.local").read_text()

        key = _playground_journey(browser, f"http://127.0.0.1:{port}", match.group(1), started, timings)
        # the README's own snippet, with this run's address and key
        code = snippet("python-first-request").replace("http://127.0.0.1:8000", f"http://127.0.0.1:{port}")
        for _ in range(3):  # a 135M model sampled at temperature 1 may end its answer at once: run it again then
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(code.replace('"sb_..."', repr(key)), "README.md", "exec"), {})  # noqa: S102
            if printed.getvalue().strip():
                break
        assert printed.getvalue().strip(), "the README snippet prints the local model's answer"
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=120)
        assert "local/smollm2" in [m.id for m in client.models.list()]
        raw = client.chat.completions.with_raw_response.create(
            model="local/smollm2", messages=[{"role": "user", "content": "Say hello."}], max_tokens=16)
        assert raw.parse().choices[0].message.content.strip()
        assert raw.headers["x-switchboard-provider"] == "local" and raw.headers["x-switchboard-multiplier"] == "0.1"
        assert _engine_pids(clone), "the engine runs as a child of make run"
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "first-run-timing.txt").write_text(
            "".join(f"{name}: {seconds:.1f} s after make run\n" for name, seconds in timings.items()))
        print(timings)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        deadline = time.time() + 20
        while _engine_pids(clone) and time.time() < deadline:
            time.sleep(0.5)
        leftover = _engine_pids(clone)
        for pid in leftover:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        log.close()
        _stop_cluster(clone)
        shutil.rmtree(tmp_path, ignore_errors=True)
    assert not leftover, "stopping make run left the engine running"
