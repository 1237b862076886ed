"""How many long concurrent streams one gunicorn worker serves: gthread (threads=N) versus gevent. Issue 6 part 5.

    .venv/bin/python bench/streams_per_core.py [--streams 400] [--seconds 20] [--interval 0.5]
                                               [--configs gthread:16,gthread:512,gevent:1000]

One run (about 100 s with the defaults, bounded; everything on loopback, everything it starts is stopped):
  1. a private Postgres cluster (tests/load/pgcluster.py) with migrations, seed, a provider `slow` and 20 member users,
  2. a slow upstream in its own asyncio process: every streamed answer sends a role chunk at once, then one content
     chunk every --interval seconds for --seconds seconds, then finish, usage and [DONE]; plain answers come at once,
  3. per configuration: Switchboard under gunicorn with gunicorn.conf.py and ONE worker of that class
     (`gthread:N` = threads=N, `gevent:C` = worker_connections=C), then an asyncio client opens --streams streams
     over --ramp seconds (full accounting: admission, reserve, relay, settle, log row) and, while they run, sends a
     short non-streamed chat completion every 0.25 s,
  4. prints per configuration: streams served concurrently (first byte within 5 s, every chunk, no gap over 2 s),
     the peak number of streams in flight at once, first-byte and gap percentiles, the short request's latency,
     the worker's RSS idle and at the peak, and its CPU use (cores) while the streams ran.

Under gevent, gunicorn's worker monkey-patches before the app is imported, so psycopg 3 picks its cooperative wait
function (wait_poll, checked below) and requests/urllib3 sockets yield to the hub; psycopg_pool's and the log
writer's threads become greenlets. Exits 0 when the benchmark ran, 1 when it could not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

UPSTREAM_KEY = "sk-bench-slow-" + "0" * 16
USERS = 20
SHORT_EVERY = 0.25
SHORT_TIMEOUT = 10.0
MESSAGES = [{"role": "user", "content": "Tell me a long story, one word at a time."}]


# ---------------------------------------------------------------------------------------------------------------
# The slow upstream (its own process): asyncio, HTTP/1.1 keep-alive, chunked SSE

def _sse_chunk(obj: Any) -> bytes:
    data = b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()) + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def _delta(**delta: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-slow", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "echo-1",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}


async def _upstream_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, interval: float,
                         count: int) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
            if headers.get("authorization") != f"Bearer {UPSTREAM_KEY}":
                payload = b'{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}'
                writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
                await writer.drain()
                continue
            data = json.loads(body) if body else {}
            if method == "POST" and path.endswith("/chat/completions") and data.get("stream"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n" + _sse_chunk(_delta(role="assistant", content="")))
                await writer.drain()
                for i in range(count):
                    await asyncio.sleep(interval)
                    writer.write(_sse_chunk(_delta(content=f" w{i}")))
                    await writer.drain()
                finish = _delta()
                finish["choices"][0]["finish_reason"] = "stop"
                usage = {**_delta(), "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": count,
                                                              "total_tokens": 12 + count}}
                writer.write(_sse_chunk(finish) + _sse_chunk(usage) + _sse_chunk(b"[DONE]") + b"0\r\n\r\n")
                await writer.drain()
            elif method == "POST" and path.endswith("/chat/completions"):
                payload = json.dumps({
                    "id": "chatcmpl-slow", "object": "chat.completion", "created": 1_700_000_000, "model": "echo-1",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Short answer."},
                                 "logprobs": None, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                             % len(payload) + payload)
                await writer.drain()
            else:
                payload = b'{"object":"list","data":[{"id":"echo-1","object":"model"}]}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                             % len(payload) + payload)
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


def run_upstream(port: int, interval: float, count: int) -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: _upstream_conn(r, w, interval, count), "127.0.0.1", port,
                                            backlog=2048)
        print(f"READY {port}", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------------------------
# Processes

def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


@dataclass
class Server:
    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def worker(self) -> int:
        kids = _children(self.popen.pid)
        return kids[0] if kids else 0

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)


def start_gunicorn(config: str, env: dict[str, str], port: int, log: Path) -> Server:
    kind, _, n = config.partition(":")
    extra = ["--workers", "1"]
    if kind == "gthread":
        extra += ["--worker-class", "gthread", "--threads", n or "16"]
    elif kind == "gevent":
        extra += ["--worker-class", "gevent", "--worker-connections", n or "1000"]
    else:
        raise ValueError(f"unknown worker configuration {config!r} (gthread:N or gevent:N)")
    gunicorn = Path(sys.executable).parent / "gunicorn"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [str(gunicorn), "-c", str(ROOT / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}",
             *extra, "wsgi:app"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    server = Server(popen, port, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"gunicorn {config} exited:\n{log.read_text(errors='replace')[-3000:]}")
        if server.worker and _probe(port):
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"gunicorn {config} did not start:\n{log.read_text(errors='replace')[-3000:]}")


def _probe(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------------------
# The client: asyncio, one connection per request, chunked SSE read by hand

@dataclass
class StreamRecord:
    sent: float = 0.0
    first: float | None = None
    chunks: list[float] = field(default_factory=list)
    done: bool = False
    status: int = 0
    error: str = ""


def _request(port: int, token: str, stream: bool, model: str = "slow/echo-1") -> bytes:
    body: dict[str, Any] = {"model": model, "messages": MESSAGES, "max_tokens": 200}
    if stream:
        body["stream"] = True
    raw = json.dumps(body).encode()
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\nConnection: close\r\n\r\n").encode() + raw


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    return status, {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}


async def one_stream(port: int, token: str, rec: StreamRecord) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    try:
        rec.sent = time.monotonic()
        writer.write(_request(port, token, True))
        await writer.drain()
        rec.status, headers = await _read_head(reader)
        if rec.status != 200 or "chunked" not in headers.get("transfer-encoding", ""):
            rec.error = f"HTTP {rec.status}"
            return
        buf = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                break
            buf += (await reader.readexactly(size + 2))[:-2]
            now = time.monotonic()
            if rec.first is None:
                rec.first = now
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                if event == b"data: [DONE]":
                    rec.done = True
                elif b'"content":" w' in event:
                    rec.chunks.append(now)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        rec.error = type(exc).__name__
    finally:
        writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await writer.wait_closed()


async def one_short(port: int, token: str) -> float | None:
    """Seconds for one non-streamed chat completion (full accounting), or None when it failed or timed out."""
    started = time.monotonic()

    async def go() -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_request(port, token, False))
            await writer.drain()
            status, headers = await _read_head(reader)
            await reader.readexactly(int(headers.get("content-length", "0")))
            return status == 200
        finally:
            writer.close()

    try:
        ok = await asyncio.wait_for(go(), SHORT_TIMEOUT)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return None
    return time.monotonic() - started if ok else None


@dataclass
class Result:
    config: str
    streams: list[StreamRecord]
    short: list[float | None]
    rss_idle_kib: int
    rss_peak_kib: int
    cpu_cores: float
    threads_peak: int
    log_rows: int = 0


def _threads(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def run_config(config: str, server: Server, tokens: list[str], args: argparse.Namespace) -> Result:
    pid = server.worker
    # warm-up: lazily loaded pieces (tiktoken, catalog, pools, upstream session) before the idle RSS is taken
    warm = [StreamRecord() for _ in range(2)]
    await asyncio.gather(*(one_short(server.port, tokens[i % len(tokens)]) for i in range(4)))
    rss_idle = _rss_kib(pid)
    records = [StreamRecord() for _ in range(args.streams)]
    count = round(args.seconds / args.interval)
    stream_tasks: list[asyncio.Task[None]] = []
    t0 = time.monotonic()
    ramp_end = t0 + args.ramp
    stop_at = ramp_end + count * args.interval + 3.0  # unserved (queued) streams are abandoned here
    shorts: list[float | None] = []
    peak = [rss_idle, 0]
    cpu_window: list[float] = []

    async def sampler() -> None:
        while time.monotonic() < stop_at:
            peak[0] = max(peak[0], _rss_kib(pid))
            peak[1] = max(peak[1], _threads(pid))
            await asyncio.sleep(0.5)

    async def short_probe() -> None:
        await asyncio.sleep(max(0.0, ramp_end + 1.0 - time.monotonic()))
        cpu_window.append(_cpu_seconds(pid))
        cpu_window.append(time.monotonic())
        end = ramp_end + count * args.interval - 1.0
        pending = []
        while time.monotonic() < end:
            pending.append(asyncio.create_task(one_short(server.port, tokens[len(pending) % len(tokens)])))
            await asyncio.sleep(SHORT_EVERY)
        cpu_window.append(_cpu_seconds(pid))
        cpu_window.append(time.monotonic())
        shorts.extend(await asyncio.gather(*pending))

    side = [asyncio.create_task(sampler()), asyncio.create_task(short_probe())]
    for i, rec in enumerate(records):
        stream_tasks.append(asyncio.create_task(one_stream(server.port, tokens[i % len(tokens)], rec)))
        await asyncio.sleep(max(0.0, t0 + args.ramp * (i + 1) / args.streams - time.monotonic()))
    _done, pending = await asyncio.wait(stream_tasks, timeout=max(0.0, stop_at - time.monotonic()))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await asyncio.gather(*side)
    del warm
    cpu = ((cpu_window[2] - cpu_window[0]) / (cpu_window[3] - cpu_window[1])) if len(cpu_window) == 4 else 0.0
    return Result(config, records, shorts, rss_idle, peak[0], cpu, peak[1])


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def summarise(r: Result, args: argparse.Namespace) -> dict[str, Any]:
    count = round(args.seconds / args.interval)
    served = []
    for rec in r.streams:
        if rec.first is None or not rec.done or len(rec.chunks) != count:
            continue
        gaps = [b - a for a, b in zip([rec.first, *rec.chunks], rec.chunks, strict=False)]
        if rec.first - rec.sent <= 5.0 and max(gaps) <= 2.0:
            served.append((rec, max(gaps)))
    events = sorted([(rec.first, 1) for rec in r.streams if rec.first is not None] +
                    [(rec.chunks[-1] if rec.chunks else rec.first, -1) for rec in r.streams if rec.first is not None])
    live = inflight = 0
    for _, delta in events:
        live += delta
        inflight = max(inflight, live)
    ttfb = [rec.first - rec.sent for rec, _ in served]
    ok_short = [s for s in r.short if s is not None]
    return {
        "config": r.config, "streams": len(r.streams), "served": len(served), "peak_inflight": inflight,
        "ttfb_p50": _pct(ttfb, 0.5), "ttfb_p95": _pct(ttfb, 0.95), "gap_p99": _pct([g for _, g in served], 0.99),
        "errors": sum(1 for rec in r.streams if rec.error),
        "short_n": len(r.short), "short_failed": len(r.short) - len(ok_short),
        "short_p50_ms": _pct(ok_short, 0.5) * 1000, "short_p95_ms": _pct(ok_short, 0.95) * 1000,
        "short_max_ms": max(ok_short, default=float("nan")) * 1000,
        "rss_idle_mib": r.rss_idle_kib / 1024, "rss_peak_mib": r.rss_peak_kib / 1024,
        "kib_per_stream": (r.rss_peak_kib - r.rss_idle_kib) / max(1, inflight), "cpu_cores": r.cpu_cores,
        "threads_peak": r.threads_peak, "log_rows": r.log_rows,
        "streams_per_core": len(served) / r.cpu_cores if r.cpu_cores > 0.05 else float("nan"),
    }


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\nOne gunicorn worker, {args.streams} streams opened over {args.ramp:.0f}s, each {args.seconds:.0f}s long "
          f"(a chunk every {args.interval}s), a short chat completion every {SHORT_EVERY}s meanwhile")
    head = ("config", "served", "inflight", "ttfb p50/p95 s", "gap p99 s", "short p50/p95/max ms", "short fail",
            "RSS idle/peak MiB", "KiB/stream", "cores", "OS thr", "streams/core*")
    print(" | ".join(head))
    for r in rows:
        print(" | ".join([
            r["config"], f"{r['served']}/{r['streams']}", str(r["peak_inflight"]),
            f"{r['ttfb_p50']:.2f}/{r['ttfb_p95']:.2f}", f"{r['gap_p99']:.2f}",
            f"{r['short_p50_ms']:.0f}/{r['short_p95_ms']:.0f}/{r['short_max_ms']:.0f}",
            f"{r['short_failed']}/{r['short_n']}", f"{r['rss_idle_mib']:.0f}/{r['rss_peak_mib']:.0f}",
            f"{r['kib_per_stream']:.0f}", f"{r['cpu_cores']:.2f}", str(r["threads_peak"]),
            f"{r['streams_per_core']:.0f}"]))
    print("served = first byte within 5 s, every chunk, no gap over 2 s; inflight = most streams sending at once;\n"
          "short = non-streamed completion with full accounting (fail = error or over 10 s); cores = worker CPU while\n"
          "the streams ran; *streams/core = served / cores, a linear estimate of the streams one saturated core holds")


# ---------------------------------------------------------------------------------------------------------------
# Main

def gevent_check() -> str:
    code = ("from gevent import monkey; monkey.patch_all()\n"
            "import psycopg.waiting, requests, urllib3, socket\n"
            "print(psycopg.waiting.wait.__name__, monkey.is_module_patched('socket'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return "gevent not usable: " + out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "?"
    wait, patched = out.stdout.split()
    return f"psycopg wait function after monkey.patch_all(): {wait} (cooperative: {wait != 'wait_c'}); " \
           f"socket patched for requests/urllib3: {patched}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--ramp", type=float, default=3.0)
    parser.add_argument("--configs", default="gthread:16,gthread:512,gevent:1000")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream is not None:
        run_upstream(args.upstream, args.interval, round(args.seconds / args.interval))
        return 0

    import psycopg

    from tests.load.pgcluster import PrivateCluster, free_port
    from tests.support.dbsetup import test_environ
    from webapp.auth.tokens import mint_access_token
    from webapp.config import load_settings
    from webapp.crypto import KeyRing, admin_aad
    from webapp.repos import credits as credits_repo
    from webapp.repos import users as users_repo

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    has_gevent = True
    try:
        import gevent  # noqa: F401
    except ImportError:
        has_gevent = False
        configs = [c for c in configs if not c.startswith("gevent")]
        print("gevent is not installed (.venv/bin/pip install gevent): gevent configurations skipped")
    if has_gevent:
        print(gevent_check())
    started = time.monotonic()
    cluster = PrivateCluster.create()
    upstream: subprocess.Popen[bytes] | None = None
    rows = []
    try:
        up_port = free_port()
        upstream = subprocess.Popen(
            [sys.executable, __file__, "--upstream", str(up_port), "--seconds", str(args.seconds),
             "--interval", str(args.interval)], stdout=subprocess.PIPE, start_new_session=True)
        assert upstream.stdout is not None
        if not upstream.stdout.readline().startswith(b"READY"):
            raise RuntimeError("the slow upstream did not start")
        env_app = test_environ(cluster.app_url, cluster.admin_url, LOG_LEVEL="WARNING", RATE_LIMIT_PER_MINUTE="0",
                               MAX_CONCURRENT_STREAMS="0", DB_POOL_MAX="10", UPSTREAM_READ_TIMEOUT="30")
        settings = load_settings(env_app)
        keyring = KeyRing(settings.encryption_keys)
        tokens = []
        with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
            pid = conn.execute(
                """insert into public.llm_providers (slug, name, api_style, base_url, default_model, enabled,
                       credit_multiplier, byok_allowed, custom_base_url_allowed, sort_order)
                   values ('slow', 'Slow', 'openai', %s, 'echo-1', true, 1.0, false, false, 0) returning id::text""",
                [f"http://127.0.0.1:{up_port}/v1"]).fetchone()[0]
            conn.execute("""insert into public.llm_model_rates (provider_id, model, input_rate, output_rate,
                            context_window) values (%s, 'echo-1', 1000, 2000, 8192)""", [pid])
            ciphertext, kid = keyring.encrypt(UPSTREAM_KEY, admin_aad(pid))
            conn.execute("""insert into public.llm_admin_keys (provider_id, ciphertext, key_id, last4, label)
                            values (%s, %s, %s, %s, 'bench')""", [pid, ciphertext, kid, UPSTREAM_KEY[-4:]])
            for _ in range(USERS):
                user = users_repo.create(conn, f"streams-{uuid.uuid4().hex[:10]}@bench.test", uuid.uuid4().hex)
                credits_repo.adjust(conn, user.id, 10**13, "bench grant", None)
                tokens.append(mint_access_token(settings, user_id=user.id, email=user.email,
                                                app_metadata=user.app_metadata, user_metadata=user.user_metadata,
                                                session_id=users_repo.create_session(conn, user.id)))
        base_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("GUNICORN_", "WEB_CONCURRENCY", "DATABASE_", "SWITCHBOARD_"))}
        env = {**base_env, **env_app, "GUNICORN_TIMEOUT": "120"}
        for config in configs:
            server = start_gunicorn(config, env, free_port(), cluster.folder / f"{config.replace(':', '-')}.log")
            try:
                with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
                    before = conn.execute("select count(*) from public.llm_request_logs where stream and status = 200"
                                          ).fetchone()[0]
                result = asyncio.run(run_config(config, server, tokens, args))
                time.sleep(1.0)  # the async log writer
                with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
                    result.log_rows = conn.execute("select count(*) from public.llm_request_logs where stream and "
                                                   "status = 200").fetchone()[0] - before
            finally:
                server.stop()
            row = summarise(result, args)
            rows.append(row)
            print(f"{config}: served {row['served']}/{row['streams']} streams, inflight peak {row['peak_inflight']}, "
                  f"short requests failed {row['short_failed']}/{row['short_n']}, {row['log_rows']} completed-stream "
                  f"log rows, {row['errors']} client errors ({time.monotonic() - started:.0f}s so far)", flush=True)
    except Exception as exc:
        print(f"benchmark could not run: {exc!r}", file=sys.stderr)
        return 1
    finally:
        if upstream is not None:
            upstream.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                upstream.wait(5)
        cluster.destroy()
    print_table(rows, args)
    print(f"total {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
