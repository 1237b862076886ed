"""The keyless-engine health cache: one probe per engine per TTL however many callers, stale answers while a probe
runs, and a real probe against real loopback sockets (an answering server, a closed port, a 5xx)."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from webapp.services.engines import EngineHealth, EngineState, probe


def test_concurrent_callers_share_one_probe() -> None:
    calls: list[str] = []
    gate = threading.Event()

    def slow(url: str) -> EngineState:
        calls.append(url)
        gate.wait(5)
        return EngineState(True, time.time(), "HTTP 200")

    health = EngineHealth(60, prober=slow)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(health.is_up("http://127.0.0.1:9/v1")))
               for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(5)
    assert calls == ["http://127.0.0.1:9/v1"] and results == [True] * 8


def test_a_stale_result_is_answered_while_another_caller_probes() -> None:
    started, gate = threading.Event(), threading.Event()
    outcomes = iter([True, False])

    def prober(url: str) -> EngineState:
        up = next(outcomes)
        if not up:
            started.set()
            gate.wait(5)
        return EngineState(up, time.time(), "HTTP 200" if up else "connection refused")

    health = EngineHealth(0.05, prober=prober)
    assert health.is_up("u") is True
    time.sleep(0.1)
    slow = threading.Thread(target=health.is_up, args=("u",))
    slow.start()
    assert started.wait(5)
    assert health.is_up("u") is True  # the last known state, without waiting for the running probe
    gate.set()
    slow.join(5)
    assert health.is_up("u") is False and health.known("u").detail == "connection refused"  # type: ignore[union-attr]


def test_results_are_cached_for_the_ttl() -> None:
    count = 0

    def prober(url: str) -> EngineState:
        nonlocal count
        count += 1
        return EngineState(True, time.time(), "HTTP 200")

    health = EngineHealth(0.3, prober=prober)
    for _ in range(20):
        health.is_up("u")
    assert count == 1
    time.sleep(0.35)
    health.is_up("u")
    assert count == 2


class _Answer(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


def _serve(status: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.status = status  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_probe_against_real_sockets() -> None:
    ok, broken, locked = _serve(200), _serve(503), _serve(401)
    try:
        assert probe(f"http://127.0.0.1:{ok.server_port}/v1").up is True
        assert probe(f"http://127.0.0.1:{locked.server_port}/v1").up is True  # something answers: up
        assert probe(f"http://127.0.0.1:{broken.server_port}/v1").detail == "HTTP 503"
        assert probe(f"http://127.0.0.1:{broken.server_port}/v1").up is False
    finally:
        for s in (ok, broken, locked):
            s.shutdown()
            s.server_close()
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = probe(f"http://127.0.0.1:{port}/v1")
    assert (down.up, down.detail) == (False, "connection refused")
