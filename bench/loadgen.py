"""Load generator for the proxy benchmark, run in its own process by bench/proxy_bench.py.

    python bench/loadgen.py '<json job>'     -> prints one JSON result line

Job keys: mode ("latency" | "throughput"), stream (bool), and
    latency:    targets (list of {name, url, headers, body}), n (sequential requests per target), rounds, warmup:
                one keep-alive connection per target; the targets take turns, n / rounds requests at a time, so
                a disturbance from outside (other processes) is spread over all of them alike
    throughput: url, headers, body (str),
    throughput: threads (one requests.Session each), duration (s), start_at (time.time() to start at, so several
                loadgen processes start together), auths (optional: bearer tokens, thread i uses auths[i % len])
A request counts as ok when it is HTTP 200 and complete: a JSON body with usage, or a stream ending in [DONE].
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import requests


def one(session: requests.Session, job: dict[str, Any], body: bytes) -> bool:
    if job["stream"]:
        with session.post(job["url"], data=body, headers=job["headers"], stream=True, timeout=30) as resp:
            tail = b""
            for data in resp.iter_content(chunk_size=None):
                tail = (tail + data)[-64:]
            return resp.status_code == 200 and b"[DONE]" in tail
    resp = session.post(job["url"], data=body, headers=job["headers"], timeout=30)
    return resp.status_code == 200 and b'"usage"' in resp.content


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


def latency(job: dict[str, Any]) -> dict[str, Any]:
    targets = [dict(t, stream=job["stream"]) for t in job["targets"]]
    bodies = [t["body"].encode() for t in targets]
    sessions = [_session() for _ in targets]
    times: dict[str, list[float]] = {t["name"]: [] for t in targets}
    errors = {t["name"]: 0 for t in targets}
    for t, s, b in zip(targets, sessions, bodies, strict=True):
        for _ in range(job.get("warmup", 20)):
            one(s, t, b)
    rounds = max(1, int(job.get("rounds", 5)))
    clock = time.perf_counter
    for r in range(rounds):
        count = job["n"] // rounds + (1 if r < job["n"] % rounds else 0)
        for t, s, b in zip(targets, sessions, bodies, strict=True):
            for _ in range(count):
                t0 = clock()
                ok = one(s, t, b)
                times[t["name"]].append((clock() - t0) * 1000.0)
                errors[t["name"]] += not ok
    return {"times_ms": times, "errors": errors}


def throughput(job: dict[str, Any]) -> dict[str, Any]:
    body = job["body"].encode()
    start_at = float(job.get("start_at") or time.time())
    deadline = start_at + float(job["duration"])
    ok_count = [0] * job["threads"]
    err_count = [0] * job["threads"]
    times: list[list[float]] = [[] for _ in range(job["threads"])]

    auths = job.get("auths") or []

    def worker(i: int) -> None:
        session = _session()
        mine = dict(job, headers={**job["headers"], "Authorization": f"Bearer {auths[i % len(auths)]}"}) \
            if auths else job
        clock = time.perf_counter
        while time.time() < start_at:
            time.sleep(0.001)
        while time.time() < deadline:
            t0 = clock()
            try:
                ok = one(session, mine, body)
            except requests.RequestException:
                ok = False
            if ok:
                ok_count[i] += 1
                times[i].append((clock() - t0) * 1000.0)
            else:
                err_count[i] += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(job["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(job["duration"] + 35)
    return {"ok": sum(ok_count), "errors": sum(err_count), "duration": float(job["duration"]),
            "times_ms": [x for per in times for x in per]}


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    result = latency(spec) if spec["mode"] == "latency" else throughput(spec)
    sys.stdout.write(json.dumps(result) + "\n")
