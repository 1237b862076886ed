"""A private, throw-away PostgreSQL cluster for one test: initdb into a fresh folder under /var/tmp, a random free
loopback port, a generated superuser password, the Supabase platform pieces + migrations + seed applied, and an
app login role shaped like Supabase's `authenticator`. Never touches the project's shared cluster (scripts/pg.sh).

    with PrivateCluster.create() as pg:
        admin_url, app_url = pg.admin_url, pg.app_url
        pg.restart()                      # pg_ctl restart -m fast, as the postgres OS user
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from webapp import migrate

DB_NAME = "switchboard_load"
LOGIN = "switchboard_load_login"


def find_bin() -> Path:
    """The bin folder of the newest installed PostgreSQL (Debian layout first, then PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL is not installed (run scripts/setup.sh or apt-get install postgresql)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(args: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: run them as the postgres OS user, like scripts/pg.sh.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PrivateCluster:
    def __init__(self, folder: Path, port: int, password: str) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = port
        self.password = password
        self.bin = find_bin()
        self.app_password = secrets.token_urlsafe(16)
        self.running = False

    # -- lifecycle -------------------------------------------------------------------------------------------

    @classmethod
    def create(cls) -> PrivateCluster:
        folder = Path(tempfile.mkdtemp(prefix="switchboard-loadpg-", dir="/var/tmp"))
        cluster = cls(folder, free_port(), secrets.token_urlsafe(24))
        try:
            cluster._initdb()
            cluster.start()
            cluster._create_database()
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    def _run(self, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            _as_postgres(args), cwd="/", check=True, capture_output=True, text=True, timeout=timeout)

    def _initdb(self) -> None:
        self.folder.chmod(0o755)
        self.data.mkdir(mode=0o700)
        pwfile = self.folder / "pw"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres")
            shutil.chown(pwfile, "postgres")
        try:
            self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", f"--pwfile={pwfile}",
                       "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8",
                       "--locale=C.UTF-8"], timeout=120)
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# switchboard load test: private, disposable\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                "unix_socket_directories = ''\n"
                "max_connections = 100\n"
                "shared_buffers = 32MB\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
            )

    def start(self) -> None:
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.data / "server.log"),
                   "-w", "-t", "60", "start"], timeout=90)
        self.running = True

    def restart(self) -> None:
        """pg_ctl restart -m fast: every backend is terminated, every pooled connection of the app dies."""
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.data / "server.log"),
                   "-m", "fast", "-w", "-t", "60", "restart"], timeout=90)

    def stop(self) -> None:
        if self.running:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "-t", "30",
                           "stop"], timeout=60)
            self.running = False

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PrivateCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def server_log(self) -> str:
        try:
            return (self.data / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    # -- databases -------------------------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"postgresql://postgres:{quote(self.password)}@127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"{self.base}/{DB_NAME}"

    @property
    def app_url(self) -> str:
        return f"postgresql://{LOGIN}:{quote(self.app_password)}@127.0.0.1:{self.port}/{DB_NAME}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.base + "/postgres", connect_timeout=2) as conn:
                    conn.execute("select 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _create_database(self) -> None:
        """What tests/support/dbsetup.create_test_database does, on this cluster."""
        self.wait_ready()
        with psycopg.connect(self.base + "/postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(DB_NAME)))
        with migrate.connect_admin(self.admin_url) as conn:
            migrate.apply_platform(conn)
            conn.execute(sql.SQL("create role {} with login noinherit password {}").format(
                sql.Identifier(LOGIN), sql.Literal(self.app_password)))
            conn.execute(sql.SQL("grant anon, authenticated, service_role to {}").format(sql.Identifier(LOGIN)))
            migrate.upgrade(conn)
            migrate.seed(conn)
