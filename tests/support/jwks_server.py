"""A loopback JWKS endpoint for verifier tests: serve keys, answer 500 or a redirect, count requests, stop."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

JWKS_PATH = "/auth/v1/.well-known/jwks.json"
MOVED_PATH = "/moved/jwks.json"  # always serves the keys, never redirects: a redirect target that would work


class JwksServer:
    """Serves `{"keys": self.keys}` at JWKS_PATH (and MOVED_PATH) on 127.0.0.1; `status` != 200 answers that status,
    `redirect_to` makes JWKS_PATH answer 302 to it. `requests` counts JWKS requests."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.status = 200
        self.redirect_to: str | None = None
        self.raw_body: bytes | None = None  # served verbatim with status 200 instead of the JWKS
        self._count = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        # A short poll interval keeps stop() (which waits for one poll) from costing half a second per test.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), name="jwks-server",
                                        daemon=True)
        self._running = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def requests(self) -> int:
        with self._lock:
            return self._count

    def start(self) -> JwksServer:
        self._thread.start()
        self._running = True
        return self

    def stop(self) -> None:
        """Shut down and close the socket: later requests get "connection refused"."""
        if self._running:
            self._server.shutdown()
            self._thread.join(5)
            self._running = False
        self._server.server_close()

    def _hit(self) -> None:
        with self._lock:
            self._count += 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path not in (JWKS_PATH, MOVED_PATH):
                    self._send(404, {"error": "not found"})
                    return
                owner._hit()
                if owner.redirect_to and self.path == JWKS_PATH:
                    self.send_response(302)
                    self.send_header("Location", owner.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if owner.status != 200:
                    self._send(owner.status, {"error": "unavailable"})
                    return
                self._send(200, owner.raw_body if owner.raw_body is not None else {"keys": owner.keys})

            def _send(self, status: int, body: dict[str, Any] | bytes) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=600")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                return None

        return Handler
