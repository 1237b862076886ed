"""The local model engine `make run` supervises (webapp/local_engine.py): its registration and trial credits in the
real database, and the supervisor as a real process with the real llama.cpp server: ready, restarted after a crash,
stopped with its supervisor (SIGTERM or killed outright), its state file read as the admin panel reads it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.llama_server import free_port, require_llama
from webapp import local_engine

ROOT = Path(__file__).resolve().parents[2]


def test_register_keeps_an_admins_edits_and_trial_credits_are_granted_once(admin_conn: psycopg.Connection,
                                                                           make_user: Any) -> None:
    make_user(admin=True)  # there is an admin to grant to, whatever ran before
    with admin_conn.transaction(force_rollback=True):  # the session's other tests see none of it
        admin_conn.execute("delete from public.llm_providers where slug = 'local'")  # a first run: a fresh row
        local_engine.register(admin_conn, "http://127.0.0.1:4001/v1")
        row = admin_conn.execute("""select p.name, p.base_url, p.enabled, p.credit_multiplier::text, p.needs_key,
                                           r.input_rate, r.output_rate, r.context_window
                                    from public.llm_providers p join public.llm_model_rates r on r.provider_id = p.id
                                    where p.slug = 'local' and r.model = 'smollm2'""").fetchone()
        assert row == ("Local model", "http://127.0.0.1:4001/v1", True, "0.1000", False, 1000, 2000, 2048)
        admin_conn.execute("update public.llm_providers set credit_multiplier = 0.5, enabled = false"
                           " where slug = 'local'")
        local_engine.register(admin_conn, "http://127.0.0.1:4002/v1")  # the next run: only the address moves
        assert admin_conn.execute("select base_url, credit_multiplier::text, enabled from public.llm_providers"
                                  " where slug = 'local'").fetchone() == ("http://127.0.0.1:4002/v1", "0.5000", False)

        admin_conn.execute("update public.site_settings set signup_grant = 0 where id")
        first = local_engine.grant_trial(admin_conn)
        assert any("granted 10 credits" in line for line in first)
        assert any("sign-up grant was 0" in line for line in first)
        assert admin_conn.execute("select signup_grant from public.site_settings where id").fetchone() == (1_000_000,)
        assert local_engine.grant_trial(admin_conn) == []  # once only, and a grant that is set is left alone


def _wait(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _state(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie (exited, not reaped) is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.llama
@pytest.mark.timeout(300)
def test_supervisor_serves_restarts_and_stops_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_llama()
    state = tmp_path / "engine.json"
    port = free_port()
    env = {**os.environ, "LOCAL_ENGINE_STATE": str(state), "LOCAL_MODEL_PORT": str(port), "PORT": ""}
    sup = subprocess.Popen([sys.executable, "-m", "webapp.local_engine", "serve"], cwd=ROOT, env=env)
    try:
        _wait(lambda: _state(state).get("state") == "ready", 120, "the engine to be ready")
        first = int(_state(state)["pid"])
        monkeypatch.setenv("LOCAL_ENGINE_STATE", str(state))
        assert local_engine.read_state() == {"state": "ready", "detail": f"serving smollm2 on 127.0.0.1:{port}"}

        os.kill(first, signal.SIGKILL)  # a crash: restarted after a short backoff, on the same port
        _wait(lambda: _state(state).get("state") == "ready" and _state(state).get("pid") != first, 120,
              "the engine to be restarted")
        second = int(_state(state)["pid"])

        sup.send_signal(signal.SIGTERM)  # make run stopping: the engine stops with it
        sup.wait(30)
        assert _state(state)["state"] == "stopped"
        _wait(lambda: not _alive(second), 20, "the engine to stop")
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait(10)

    # killed outright, the supervisor cannot clean up: the engine still ends (it dies with its parent), and the
    # panel reads the state it left as stopped
    sup = subprocess.Popen([sys.executable, "-m", "webapp.local_engine", "serve"], cwd=ROOT, env=env)
    try:
        _wait(lambda: _state(state).get("state") == "ready" and _state(state).get("supervisor_pid") == sup.pid,
              120, "the engine to be ready again")
        engine = int(_state(state)["pid"])
        sup.kill()
        sup.wait(10)
        _wait(lambda: not _alive(engine), 20, "the engine to end with its supervisor")
        assert local_engine.read_state()["state"] == "stopped"  # type: ignore[index]
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait(10)


def test_admin_panel_shows_the_supervisors_state(client: Any, make_user: Any, admin_conn: psycopg.Connection,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.admin import web_sign_in

    state = tmp_path / "engine.json"
    monkeypatch.setenv("LOCAL_ENGINE_STATE", str(state))
    local_engine.register(admin_conn, "http://127.0.0.1:9/v1")
    admin_conn.execute("update public.llm_providers set enabled = true where slug = 'local'")
    try:
        web_sign_in(client, make_user(admin=True))
        assert 'id="local-engine-state"' not in client.get("/admin/providers").get_data(as_text=True)  # no file
        local_engine.write_state("failed", "exited with status 1: OSError: [Errno 98] address already in use")
        page = client.get("/admin/providers").get_data(as_text=True)
        assert 'data-local-engine="failed"' in page and "address already in use" in page
        local_engine.write_state("ready", "serving smollm2 on 127.0.0.1:9")
        assert 'data-local-engine="ready"' in client.get("/admin/providers").get_data(as_text=True)
        state.write_text(json.dumps({"state": "ready", "detail": "x", "supervisor_pid": 2**22 + 12345}))
        page = client.get("/admin/providers").get_data(as_text=True)  # its supervisor is gone: stopped
        assert 'data-local-engine="stopped"' in page and "make run stopped" in page
    finally:
        admin_conn.execute("update public.llm_providers set enabled = false where slug = 'local'")
