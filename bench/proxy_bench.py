"""Proxy overhead benchmark: direct-to-upstream vs a bare Flask pass-through vs Switchboard, all on loopback.

    .venv/bin/python bench/proxy_bench.py [--quick] [--profile] [--threads N] [--users K] [--server gunicorn|granian]
                                          [--hold-streams N] [--hold-seconds S]
                                          [--loadgen auto|wrk|python] [--wait-quiet S] [--serve]

One run (about 110 s; --quick about 50 s):
  1. starts bench/fast_upstream.py (asyncio, answers at once) and bench/streams_per_core.py's slow upstream (one
     chunk every 0.5 s for --hold-seconds) in their own processes,
  2. recreates the database `switchboard_bench` (migrations + seed), registers provider `bench` pointing at the
     fast upstream and `slow` at the slow one, with encrypted admin keys and model rates, and a member-mode user
     with plenty of credits and a personal API key (BENCH_DATABASE_NAME picks another database name), then serves
     Switchboard under gunicorn (gunicorn.conf.py, 2 workers x N gthread threads, LOG_LEVEL=WARNING; or granian in
     WSGI mode with --server granian; the per-user rate and stream limits raised out of reach but still
     evaluated): every request does the full accounting (principal + context + admission + reserve, settle +
     receipt row),
  3. serves bench/bare_proxy.py under the same server with the same settings, and bench/floor_proxy.py (the
     floor: the bare pass-through plus one durable hold statement before forwarding and one settle-and-receipt
     statement after, in the benchmark database; what no exact per-request accounting can beat),
  4. measures from separate processes: (a) latency at 1 connection, N sequential requests per target, json and
     streaming (time to the end of the stream), the targets taking turns (Switchboard twice: with the user's JWT
     and, as `sb-apikey`, with their personal API key); (b) throughput at 20 connections
     for D seconds (wrk when installed, `apt-get install wrk`, else a threaded Python load generator), with the
     CPU each party used meanwhile (Postgres: the benchmark database's own backends, besides the whole cluster);
     (c) the streams phase (bench/hold_streams.py): --hold-streams streams of --hold-seconds held open by the one
     Switchboard instance while a short request is timed every 0.25 s; (d) the workers' RSS afterwards; (e) the
     Postgres statements (round trips) per member request, counted in process,
  5. prints the tables and issue 14's targets, each `met` or `NOT MET` (bench/bench_report.py), checks the log
     rows / ledger, and stops every process it started.
--profile adds where one Switchboard request's time goes, stage by stage (in process, same database/upstream).
--switchboard-app MODULE:APP (+ --switchboard-pythonpath DIR) measures a candidate change without editing webapp/.
The machine is shared: a WARNING line and the "other" CPU columns say when other processes disturbed a run.
Exits 0 when the benchmark ran (whether or not the targets are met); 1 when it could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

import bench_report  # noqa: E402
import inprocess  # noqa: E402
import psycopg  # noqa: E402
import requests  # noqa: E402

DB_NAME = os.environ.get("BENCH_DATABASE_NAME", "switchboard_bench")  # another name lets two runs coexist
UPSTREAM_KEY = "sk-bench-admin-" + "0" * 16
RATE_IN, RATE_OUT = 1_000_000, 2_000_000  # micro-credits per 1K tokens
GRANT = 10**13  # micro-credits: ten million credits, far more than any run spends
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
    {"role": "user", "content": "Say hello to the benchmark in one short sentence, please."},
]


# ---------------------------------------------------------------------------------------------------------------
# Processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, wait: float = 15.0) -> None:
        """Signal the process we started (a gunicorn master stops its own workers), then its whole session
        (which we created for it) if anything is left."""
        if self.alive():
            try:
                self.popen.send_signal(sig)
                self.popen.wait(wait)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # the group we made with start_new_session
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)


@dataclass
class Stack:
    workdir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def wait_until(check: Any, proc: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        try:
            if check():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not become ready in {timeout:.0f} s:\n{proc.log_tail()}")


def start_upstream(stack: Stack) -> str:
    port = free_port()
    proc = stack.start("upstream", [sys.executable, str(BENCH / "fast_upstream.py"), "--port", str(port),
                                    "--key", UPSTREAM_KEY], dict(os.environ))

    def ready() -> bool:
        return "READY" in proc.log_path.read_text(errors="replace")

    wait_until(ready, proc, 15)
    return f"http://127.0.0.1:{port}"


def gunicorn_argv(port: int, app: str, *extra: str) -> list[str]:
    if SERVER[0] == "granian":  # measured against gunicorn (--server granian), WSGI mode, same workers/threads
        pythonpath = [extra[i + 1] for i, x in enumerate(extra) if x == "--pythonpath"]
        return [str(Path(sys.executable).parent / "granian"), "--interface", "wsgi", "--host", "127.0.0.1",
                "--port", str(port), "--workers", os.environ.get("WEB_CONCURRENCY", "2"), "--blocking-threads",
                os.environ.get("GUNICORN_THREADS", "128"), "--no-ws", "--access-log", *(["--working-dir", pythonpath[0]]
                                                                     if pythonpath else []), app]
    gunicorn = Path(sys.executable).parent / "gunicorn"
    exe = [str(gunicorn)] if gunicorn.exists() else [sys.executable, "-m", "gunicorn"]
    return [*exe, "-c", str(ROOT / "gunicorn.conf.py"), "-b", f"127.0.0.1:{port}", *extra, app]


SERVER = ["gunicorn"]  # --server


# ---------------------------------------------------------------------------------------------------------------
# Database: provider, admin key, rates, user, credits, token

@dataclass
class Fixture:
    env: dict[str, str]
    admin_url: str
    user_ids: list[str]
    tokens: list[str]
    api_keys: list[str]  # one personal API key per user (sb_...), for the key-authenticated target


def prepare_database(upstream: str, users: int, slow_upstream: str | None = None) -> Fixture:
    from tests.support.dbsetup import create_test_database, test_environ
    from webapp.auth.tokens import mint_access_token
    from webapp.config import load_settings
    from webapp.crypto import KeyRing, admin_aad
    from webapp.repos import credits as credits_repo
    from webapp.repos import users as users_repo

    admin_url, app_url = create_test_database(DB_NAME)
    # The per-user admission limits (when this version of the app has them) stay on the request path, with caps no
    # benchmark reaches: one user sends every request here.
    env = test_environ(app_url, admin_url, LOG_LEVEL="WARNING", RATE_LIMIT_PER_MINUTE="1000000000",
                       MAX_CONCURRENT_STREAMS="100000")
    settings = load_settings({**os.environ, **env})  # what the server will read (e.g. an API_KEY_SECRET set outside)
    keyring = KeyRing(settings.encryption_keys)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute(
            """insert into public.llm_providers (slug, name, api_style, base_url, default_model, enabled,
                   credit_multiplier, byok_allowed, custom_base_url_allowed, sort_order)
               values ('bench', 'Bench', 'openai', %s, 'echo-1', true, 1.0, false, false, 0)
               returning id::text""", [upstream + "/v1"]).fetchone()
        assert row is not None
        provider_id = row[0]
        conn.execute("""insert into public.llm_model_rates (provider_id, model, input_rate, output_rate,
                            context_window) values (%s, 'echo-1', %s, %s, 8192)""", [provider_id, RATE_IN, RATE_OUT])
        ciphertext, kid = keyring.encrypt(UPSTREAM_KEY, admin_aad(provider_id))
        conn.execute("""insert into public.llm_admin_keys (provider_id, ciphertext, key_id, last4, label)
                        values (%s, %s, %s, %s, 'bench')""", [provider_id, ciphertext, kid, UPSTREAM_KEY[-4:]])
        if slow_upstream:  # the streams phase: provider `slow` (bench/hold_streams.py)
            from hold_streams import SLOW_KEY

            row = conn.execute(
                """insert into public.llm_providers (slug, name, api_style, base_url, default_model, enabled,
                       credit_multiplier, byok_allowed, custom_base_url_allowed, sort_order)
                   values ('slow', 'Slow', 'openai', %s, 'echo-1', true, 1.0, false, false, 1)
                   returning id::text""", [slow_upstream + "/v1"]).fetchone()
            assert row is not None
            conn.execute("""insert into public.llm_model_rates (provider_id, model, input_rate, output_rate,
                                context_window) values (%s, 'echo-1', %s, %s, 8192)""", [row[0], RATE_IN, RATE_OUT])
            ciphertext, kid = keyring.encrypt(SLOW_KEY, admin_aad(row[0]))
            conn.execute("""insert into public.llm_admin_keys (provider_id, ciphertext, key_id, last4, label)
                            values (%s, %s, %s, %s, 'bench')""", [row[0], ciphertext, kid, SLOW_KEY[-4:]])
        made = []
        for _ in range(users):
            user = users_repo.create(conn, f"bench-{uuid.uuid4().hex[:10]}@example.test", uuid.uuid4().hex)
            credits_repo.adjust(conn, user.id, GRANT, "benchmark grant", None)
            made.append((user, users_repo.create_session(conn, user.id)))  # a live session, as sign-in makes
        api_keys = [personal_api_key(conn, settings, u.id) for u, _ in made]
    tokens = [mint_access_token(settings, user_id=u.id, email=u.email, app_metadata=u.app_metadata,
                                user_metadata=u.user_metadata, session_id=sid, ttl=6 * 3600) for u, sid in made]
    return Fixture(env, admin_url, [u.id for u, _ in made], tokens, api_keys)


def personal_api_key(conn: psycopg.Connection, settings: Any, user_id: str) -> str:
    """A personal API key of the user (no restriction), stored as the app stores it: only its keyed hash."""
    from webapp.services import api_keys

    key, prefix = api_keys.generate()
    conn.execute("insert into public.api_keys (user_id, name, prefix, hash) values (%s, 'bench', %s, %s)",
                 [user_id, prefix, api_keys.digest(settings, key)])
    return key


def accounting(fx: Fixture) -> dict[str, int]:
    with psycopg.connect(fx.admin_url, autocommit=True) as conn:
        logs = conn.execute("select count(*) filter (where status = 200), count(*) from public.llm_request_logs "
                            "where user_id = any(%s::uuid[])", [fx.user_ids]).fetchone()
        kinds = dict(conn.execute("select kind, count(*) from public.credit_ledger where user_id = any(%s::uuid[]) "
                                  "group by kind", [fx.user_ids]).fetchall())
    assert logs is not None
    return {"log_ok": int(logs[0]), "log_all": int(logs[1]), "reserve": int(kinds.get("reserve", 0)),
            "settle": int(kinds.get("settle", 0)), "refund": int(kinds.get("refund", 0))}


# ---------------------------------------------------------------------------------------------------------------
# Targets and requests

@dataclass(frozen=True)
class Target:
    name: str
    url: str  # .../v1/chat/completions
    auth: str
    model: str
    more_auth: tuple[str, ...] = ()  # under load, requests take turns with these credentials (--users)

    def body(self, stream: bool) -> str:
        body: dict[str, Any] = {"model": self.model, "messages": MESSAGES, "max_tokens": 64}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return json.dumps(body)

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": f"Bearer {self.auth}"}


def check_once(target: Target, stream: bool) -> requests.Response:
    resp = requests.post(target.url, data=target.body(stream), headers=target.headers(), timeout=30)
    if resp.status_code != 200:
        raise RuntimeError(f"{target.name} answered HTTP {resp.status_code}: {resp.text[:300]}")
    if stream and not resp.content.rstrip().endswith(b"data: [DONE]"):
        raise RuntimeError(f"{target.name} stream did not end with [DONE]: {resp.content[-200:]!r}")
    if not stream and resp.json().get("usage", {}).get("completion_tokens") != 9:
        raise RuntimeError(f"{target.name} answer has no usage: {resp.text[:300]}")
    return resp


def warm(target: Target, stream: bool, connections: int, per_conn: int) -> int:
    """Concurrent requests so every worker and thread has loaded what it loads lazily (tiktoken, catalog, pools)."""
    errors = [0]
    lock = threading.Lock()

    def run() -> None:
        s = requests.Session()
        s.trust_env = False
        for _ in range(per_conn):
            r = s.post(target.url, data=target.body(stream), headers=target.headers(), timeout=30)
            if r.status_code != 200:
                with lock:
                    errors[0] += 1

    threads = [threading.Thread(target=run) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors[0]:
        raise RuntimeError(f"{errors[0]} warm-up requests to {target.name} failed")
    return connections * per_conn


def loadgen(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(BENCH / "loadgen.py"), json.dumps(job)], cwd=ROOT,
                         capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr.decode(errors='replace')[-2000:]}")
    return dict(json.loads(out.stdout))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


WRK_LUA = """
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(auth)s"
local auths = {%(auths)s}
local turn = 0
if #auths > 1 then
  request = function()
    turn = turn + 1
    wrk.headers["Authorization"] = "Bearer " .. auths[(turn %% #auths) + 1]
    return wrk.format()
  end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"p50_us":%%d,"p99_us":%%d}\\n', summary.requests, summary.duration, e.connect,
    e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def steal_seconds() -> float:
    """CPU time the hypervisor gave to other guests so far (the 'steal' column of /proc/stat), in seconds."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0
    except (OSError, ValueError):
        return 0.0


def proc_cpu() -> dict[int, tuple[float, str, int]]:
    """pid -> (CPU seconds used so far, command name, parent pid), from /proc; key -1 holds the steal time."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[float, str, int]] = {-1: (steal_seconds(), "steal", 0)}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(entry)] = ((int(fields[11]) + int(fields[12])) / tick, comm, int(fields[1]))
    return out


def cpu_split(before: dict[int, tuple[float, str, int]], after: dict[int, tuple[float, str, int]],
              server_pids: set[int], upstream_pid: int, wall: float, children_cpu: float) -> dict[str, float]:
    """Cores used during one run by: the proxy's processes, the upstream, Postgres (every backend of the shared
    cluster), the load generator (our waited-for children), everything else, and the hypervisor (steal)."""
    split = {"server": 0.0, "upstream": 0.0, "postgres": 0.0, "other": 0.0, "steal": 0.0}
    for pid, (cpu, comm, ppid) in after.items():
        used = cpu - before.get(pid, (0.0, "", 0))[0]
        if pid == -1:
            split["steal"] += used
        elif pid == upstream_pid:
            split["upstream"] += used
        elif pid in server_pids or ppid in server_pids:
            split["server"] += used
        elif comm == "postgres":
            split["postgres"] += used
        elif pid != os.getpid():
            split["other"] += used
    split = {k: v / wall for k, v in split.items()}
    split["loadgen"] = children_cpu / wall
    return split


def throughput(target: Target, stream: bool, args: argparse.Namespace, workdir: Path,
               server_pids: set[int], upstream_pid: int) -> dict[str, Any]:
    """Requests/s over `duration` at `connections` keep-alive connections (ok = complete HTTP 200 answers), and
    where the CPU went meanwhile."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    backends0 = bench_backends()
    cpu0, t0 = proc_cpu(), time.monotonic()
    result = _throughput(target, stream, args, workdir)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1, wall = proc_cpu(), time.monotonic() - t0
    children = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    result["cpu"] = cpu_split(cpu0, cpu1, server_pids, upstream_pid, wall, children)
    result["pg_bench"] = sum(cpu1[pid][0] - cpu0.get(pid, (0.0, "", 0))[0]
                             for pid in backends0 | bench_backends() if pid in cpu1) / wall
    return result


BENCH_ADMIN_URL: list[str] = []  # set once the benchmark database exists


def bench_backends() -> set[int]:
    """The pids of the Postgres backends connected to the benchmark database (not the rest of the shared cluster)."""
    if not BENCH_ADMIN_URL:
        return set()
    with psycopg.connect(BENCH_ADMIN_URL[0], autocommit=True) as conn:
        rows = conn.execute("select pid from pg_stat_activity where datname = current_database()"
                            " and pid <> pg_backend_pid()").fetchall()
    return {int(r[0]) for r in rows}


def children(pid: int) -> list[int]:
    return [p for p, (_, _, ppid) in proc_cpu().items() if ppid == pid and p > 0]


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _throughput(target: Target, stream: bool, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    if args.loadgen == "wrk":
        script = workdir / f"wrk-{target.name}-{int(stream)}.lua"
        auths = ",".join(f'"{a}"' for a in (target.auth, *target.more_auth))
        script.write_text(WRK_LUA % {"body": target.body(stream), "auth": target.auth, "auths": auths})
        argv = [shutil.which("wrk") or "wrk", "-t", str(args.wrk_threads), "-c", str(args.connections),
                "-d", f"{args.duration}s", "--timeout", "10s", "-s", str(script), target.url]
        out = subprocess.run(argv,
                             capture_output=True, timeout=args.duration + 60, stdin=subprocess.DEVNULL, text=True)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
        if out.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed: {out.stdout[-1000:]} {out.stderr[-1000:]}")
        r = json.loads(line[len("WRKJSON "):])
        errors = r["status"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
        secs = r["duration_us"] / 1e6
        return {"rps": (r["requests"] - r["status"]) / secs, "errors": errors, "p50": r["p50_us"] / 1000,
                "p99": r["p99_us"] / 1000}
    procs = max(1, min(args.loadgen_procs, args.connections))
    start_at = time.time() + 1.0  # every loadgen process imports requests first, then all start together
    jobs = []
    for i in range(procs):
        threads = args.connections // procs + (1 if i < args.connections % procs else 0)
        jobs.append(subprocess.Popen(
            [sys.executable, str(BENCH / "loadgen.py"), json.dumps({
                "mode": "throughput", "url": target.url, "headers": target.headers(), "body": target.body(stream),
                "stream": stream, "threads": threads, "duration": args.duration, "start_at": start_at,
                "auths": [target.auth, *target.more_auth][i::procs]})],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL))
    results = []
    try:
        for p in jobs:
            out, err = p.communicate(timeout=args.duration + 60)
            if p.returncode != 0:
                raise RuntimeError(f"loadgen failed: {err.decode(errors='replace')[-2000:]}")
            results.append(json.loads(out))
    finally:
        for p in jobs:
            if p.poll() is None:
                p.kill()
                p.wait()
    times = [t for r in results for t in r["times_ms"]]
    return {"rps": sum(r["ok"] for r in results) / args.duration, "errors": sum(r["errors"] for r in results),
            "p50": percentile(times, 0.5), "p99": percentile(times, 0.99)}


# ---------------------------------------------------------------------------------------------------------------

def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over `seconds` (before the benchmark starts anything: other people's load)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return sum(vals), idle
    try:
        t0, i0 = sample()
        time.sleep(seconds)
        t1, i1 = sample()
    except OSError:
        return 0.0
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests and shorter throughput runs (<= 30 s)")
    ap.add_argument("--threads", type=int, default=None, help="gunicorn threads per worker (default: what "
                    "gunicorn.conf.py says)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--requests", type=int, default=None, help="sequential requests per latency run (500; quick 100)")
    ap.add_argument("--duration", type=int, default=None, help="seconds per throughput run (10; quick 2)")
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--users", type=int, default=1, help="Switchboard users the throughput runs take turns with "
                    "(default 1: every request is the same user's, so that user's rows serialise them)")
    ap.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto",
                    help="throughput load generator: wrk if installed (auto), else threaded Python")
    ap.add_argument("--loadgen-procs", type=int, default=2, help="Python load generator processes")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="afterwards, time the stages of Switchboard's request "
                    "path in process (one thread, same database and upstream) and print where the time goes")
    ap.add_argument("--serve", action="store_true", help="only start everything, print the URLs and the token, and "
                    "wait for Ctrl-C (for profiling by hand)")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS", help="first wait up to this long for "
                    "the machine to be idle (< 15%% CPU busy), e.g. while other people's tests run")
    ap.add_argument("--switchboard-app", default="wsgi:app", metavar="MODULE:APP", help="what gunicorn serves as "
                    "Switchboard (to measure a candidate change without editing webapp/)")
    ap.add_argument("--switchboard-pythonpath", default=None, metavar="DIR", help="extra import path for "
                    "--switchboard-app")
    ap.add_argument("--hold-streams", type=int, default=200, help="streams phase: how many long streams one "
                    "instance holds while short requests are timed (0: skip the phase)")
    ap.add_argument("--hold-seconds", type=float, default=10.0, help="streams phase: how long each stream lasts")
    ap.add_argument("--server", choices=["gunicorn", "granian"], default="gunicorn", help="the WSGI server both "
                    "proxies run under (gunicorn gthread with gunicorn.conf.py, or granian in WSGI mode)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder with logs and profiles")
    args = ap.parse_args()
    args.requests = args.requests or (100 if args.quick else 500)
    args.duration = args.duration or (2 if args.quick else 10)
    args.threads = args.threads or int(runpy.run_path(str(ROOT / "gunicorn.conf.py"))["threads"])
    SERVER[0] = args.server
    if args.loadgen == "auto":
        args.loadgen = "wrk" if shutil.which("wrk") else "python"
    elif args.loadgen == "wrk" and not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    t_start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    stack = Stack(workdir)
    ok = False
    try:
        ok = run(args, stack, workdir, t_start)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
    except (RuntimeError, OSError, psycopg.Error, subprocess.TimeoutExpired) as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
    finally:
        stack.stop_all()
        if args.keep or not ok:
            print(f"logs kept in {workdir}", file=sys.stderr if not ok else sys.stdout)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


def run(args: argparse.Namespace, stack: Stack, workdir: Path, t_start: float) -> bool:
    mode_label = "quick" if args.quick else "full"
    server = "gunicorn" if args.server == "gunicorn" else "granian (WSGI)"
    kind = "gthread threads" if args.server == "gunicorn" else "blocking threads"
    print(f"Switchboard proxy benchmark ({mode_label}): {os.cpu_count()} CPUs, {server} {args.workers} workers x "
          f"{args.threads} {kind} per server, loopback", flush=True)
    busy = cpu_busy()
    waited_until = time.monotonic() + args.wait_quiet
    while busy > 0.15 and time.monotonic() < waited_until:
        busy = cpu_busy(2.0)
    if busy > 0.15:
        print(f"  WARNING: {100 * busy:.0f}% of the CPUs were busy before the benchmark started (other processes); "
              "the numbers below are disturbed by that load", flush=True)
    upstream = start_upstream(stack)
    bare_port = free_port()
    bare_env = {**os.environ, "WEB_CONCURRENCY": str(args.workers), "GUNICORN_THREADS": str(args.threads),
                "BARE_UPSTREAM": upstream + "/v1"}
    # The bare proxy needs no database: it boots while the database is made.
    bare = stack.start("bare", gunicorn_argv(bare_port, "bare_proxy:app", "--pythonpath", str(BENCH)), bare_env)
    slow = None
    if args.hold_streams:
        import hold_streams

        slow_port = free_port()
        slow_proc = stack.start("slow-upstream", hold_streams.upstream_argv(slow_port, args.hold_seconds, 0.5),
                                dict(os.environ))
        wait_until(lambda: "READY" in slow_proc.log_path.read_text(errors="replace"), slow_proc, 15)
        slow = f"http://127.0.0.1:{slow_port}"
    fx = prepare_database(upstream, args.users, slow)
    BENCH_ADMIN_URL[:] = [fx.admin_url]
    print(f"  set-up: upstream {upstream}, database {DB_NAME} ready ({time.monotonic() - t_start:.1f} s)", flush=True)

    env = {**os.environ, **fx.env, "WEB_CONCURRENCY": str(args.workers), "GUNICORN_THREADS": str(args.threads)}
    sb_port = free_port()
    extra = ["--pythonpath", args.switchboard_pythonpath] if args.switchboard_pythonpath else []
    sb = stack.start("switchboard", gunicorn_argv(sb_port, args.switchboard_app, *extra), env)
    # The floor: the bare pass-through plus the two durable statements any exact per-request charge needs.
    floor_port = free_port()
    floor = stack.start("floor", gunicorn_argv(floor_port, "floor_proxy:app", "--pythonpath", str(BENCH)),
                        {**bare_env, "FLOOR_DATABASE_URL": fx.admin_url})

    targets = {
        "direct": Target("direct", upstream + "/v1/chat/completions", UPSTREAM_KEY, "echo-1"),
        "bare": Target("bare", f"http://127.0.0.1:{bare_port}/v1/chat/completions", UPSTREAM_KEY, "echo-1"),
        "floor": Target("floor", f"http://127.0.0.1:{floor_port}/v1/chat/completions", UPSTREAM_KEY, "echo-1"),
        "switchboard": Target("switchboard", f"http://127.0.0.1:{sb_port}/v1/chat/completions", fx.tokens[0],
                              "bench/echo-1", tuple(fx.tokens[1:])),
        # The same member requests, authenticated by a personal API key instead of a JWT.
        "sb-apikey": Target("sb-apikey", f"http://127.0.0.1:{sb_port}/v1/chat/completions", fx.api_keys[0],
                            "bench/echo-1", tuple(fx.api_keys[1:])),
    }
    wait_until(lambda: requests.get(f"http://127.0.0.1:{sb_port}/healthz", timeout=2).ok, sb)
    wait_until(lambda: requests.post(targets["bare"].url, data=targets["bare"].body(False),
                                     headers=targets["bare"].headers(), timeout=2).ok, bare)
    wait_until(lambda: requests.post(targets["floor"].url, data=targets["floor"].body(False),
                                     headers=targets["floor"].headers(), timeout=2).ok, floor)

    if args.serve:
        info = {"upstream": targets["direct"].url, "bare": targets["bare"].url, "floor": targets["floor"].url,
                "switchboard": targets["switchboard"].url, "upstream_key": UPSTREAM_KEY, "tokens": fx.tokens,
                "api_keys": fx.api_keys,
                "switchboard_master_pid": sb.popen.pid,
                "bare_master_pid": bare.popen.pid, "logs": str(workdir), "env": fx.env}
        (workdir / "serve.json").write_text(json.dumps(info, indent=1))
        print(json.dumps(info, indent=1), flush=True)
        print(f"serving; details in {workdir / 'serve.json'}; Ctrl-C (or SIGTERM) stops everything", flush=True)
        while all(p.alive() for p in stack.procs):
            time.sleep(0.5)
        raise RuntimeError("a server exited")

    # Correctness first: Switchboard serves in member mode with an admin key and charges credits.
    served = 0
    for stream in (False, True):
        for t in targets.values():
            check_once(t, stream)
        served += 1
    served += 1  # the key target's checks above
    for name in ("switchboard", "sb-apikey"):
        r = check_once(targets[name], False)
        served += 1
        if r.headers.get("X-Switchboard-Mode") != "member" or r.headers.get("X-Switchboard-Key-Source") != "admin_db" \
                or float(r.headers.get("X-Switchboard-Credits", "0")) <= 0:
            raise RuntimeError(f"Switchboard ({name}) did not serve in member mode with credits: {dict(r.headers)}")
    for stream in (False, True):
        for name in ("bare", "floor", "switchboard", "sb-apikey"):
            n = warm(targets[name], stream, args.connections, 3 if args.quick else 10)
            served += n if name in ("switchboard", "sb-apikey") else 0
    print(f"  servers ready and warmed ({time.monotonic() - t_start:.1f} s); load generator: latency = Python "
          f"requests.Session, throughput = {args.loadgen}", flush=True)

    latency: dict[tuple[str, str], dict[str, float]] = {}
    ours = {p.popen.pid for p in stack.procs}
    cpu0, t_lat = proc_cpu(), time.monotonic()
    for stream in (False, True):
        mode = "stream" if stream else "json"
        res = loadgen({"mode": "latency", "stream": stream, "n": args.requests, "rounds": 5, "warmup": 20,
                       "targets": [{"name": name, "url": t.url, "headers": t.headers(), "body": t.body(stream)}
                                   for name, t in targets.items()]}, timeout=600)
        for name in targets:
            if res["errors"][name]:
                raise RuntimeError(f"{res['errors'][name]} latency requests to {name} ({mode}) failed")
            times = res["times_ms"][name]
            latency[(mode, name)] = {"p50": percentile(times, 0.5), "p99": percentile(times, 0.99),
                                     "mean": sum(times) / len(times)}
        served += 2 * (args.requests + 20)
    lat_cpu = cpu_split(cpu0, proc_cpu(), ours - {stack.procs[0].popen.pid}, stack.procs[0].popen.pid,
                        time.monotonic() - t_lat, 0.0)
    print(f"  latency done ({time.monotonic() - t_start:.1f} s)", flush=True)

    tput: dict[tuple[str, str], Any] = {}
    masters = {"direct": stack.procs[0].popen.pid, "bare": bare.popen.pid, "floor": floor.popen.pid,
               "switchboard": sb.popen.pid, "sb-apikey": sb.popen.pid}
    rounds = 2 if args.duration >= 6 and args.duration % 2 == 0 else 1
    per_round = argparse.Namespace(**{**vars(args), "duration": args.duration // rounds})
    for stream in (False, True):
        mode = "stream" if stream else "json"
        for _ in range(rounds):  # the targets take turns, as in the latency runs
            for name, t in targets.items():
                res = throughput(t, stream, per_round, workdir, {masters[name]}, masters["direct"])
                tput.setdefault((mode, name), []).append(res)
                if name in ("switchboard", "sb-apikey"):
                    served += int(res["rps"] * per_round.duration)
                time.sleep(0.2)
        for name in targets:
            parts = tput[(mode, name)]
            if name in ("floor", "switchboard", "sb-apikey"):
                for p in parts:  # Postgres CPU of the benchmark database's own backends only
                    p["cpu"]["pg_bench"] = p["pg_bench"]
            tput[(mode, name)] = {  # type: ignore[assignment]
                "rps": sum(p["rps"] for p in parts) / len(parts), "errors": sum(p["errors"] for p in parts),
                "p50": sum(p["p50"] for p in parts) / len(parts), "p99": max(p["p99"] for p in parts),
                "cpu": {k: sum(p["cpu"][k] for p in parts) / len(parts) for k in parts[0]["cpu"]}}
    print(f"  throughput done ({time.monotonic() - t_start:.1f} s)", flush=True)

    held: dict[str, Any] | None = None
    if args.hold_streams:
        import hold_streams

        held = hold_streams.hold(sb_port, fx.tokens[0], args.hold_streams, args.hold_seconds)
        served += held["served"] + held["short_n"] - held["short_failed"]
        print(f"  streams phase done ({time.monotonic() - t_start:.1f} s)", flush=True)
    rss = {pid: rss_mib(pid) for pid in children(sb.popen.pid)}
    trips = inprocess.round_trips(fx, targets)
    served += 4 * 60  # the round-trip count's requests

    profile = ""
    if args.profile:
        n_prof = 100 if args.quick else 300
        profile = "\n".join(f" {name} ({'JWT' if name == 'switchboard' else 'personal API key'}):\n"
                            + inprocess.stage_profile(fx, targets[name], n_prof)
                            for name in ("switchboard", "sb-apikey"))
        served += 2 * 2 * (30 + n_prof)

    # The accounting really happened: every served request left a log row and a reserve + settle pair.
    deadline = time.monotonic() + 10
    acct = accounting(fx)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        again = accounting(fx)
        if again == acct:
            break
        acct = again

    bench_report.report(args, latency, tput, acct, served, time.monotonic() - t_start, lat_cpu, held, rss, trips)
    if profile:
        print("\nWhere a Switchboard request's time goes (--profile: sequential requests through the Flask test "
              "client in this process, same database and upstream; mean per request):")
        print(profile)
    return True


if __name__ == "__main__":
    sys.exit(main())
