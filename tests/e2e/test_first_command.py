"""The README's first command, run from a clean clone in a temporary folder, sets everything up, serves the
sign-in page, and the admin it prints can sign in."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.timeout(900)
def test_make_run_from_a_clean_clone_serves_sign_in_and_the_printed_admin_signs_in() -> None:
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
    proc = subprocess.Popen(["make", "run"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            assert proc.poll() is None, "make run exited early:\n" + Path(log.name).read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/auth/sign-in", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(1)
        output = Path(log.name).read_text()
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
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        _stop_cluster(clone)
        shutil.rmtree(tmp_path, ignore_errors=True)
