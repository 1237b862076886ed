"""Real HTTP servers on loopback that speak the OpenAI chat completions and Anthropic Messages wire protocols,
for tests of adapters and of the gateway. Deterministic replies, predictable usage, failures on demand.

    up = start_openai_upstream()          # or start_anthropic_upstream()
    up.base_url                           # "http://127.0.0.1:<port>/v1"
    up.behaviour = "429"                  # every request fails with 429 until reset to None
    body["model"] = "gpt-x@cut:3"         # this request only: cut the stream after 3 events
    up.requests[-1].body                  # what the server received
    up.stop()

Reply: REPLY ("The quick brown fox jumps over the lazy dog.", 9 words), one streamed chunk per word.
Usage: prompt tokens = whitespace-separated words of every message's text (system included, for Anthropic the
top-level `system` too; images and tool_call arguments are not counted), completion tokens = words produced.
For Anthropic, `input_tokens` is that word count and `cache_read_tokens` / `cache_creation_tokens` (attributes,
default 0) are reported on top, as the real API does. For OpenAI, a non-zero `cache_read_tokens` is reported as
`prompt_tokens_details.cached_tokens`, inside `prompt_tokens`, as OpenAI does, and a non-zero `reasoning_tokens`
as `completion_tokens_details.reasoning_tokens`, added inside `completion_tokens`. reset() zeroes all three.

If `max_tokens` (or OpenAI `max_completion_tokens`) is below the word count, the reply is cut to that many
words and the finish reason is length / max_tokens. If a stop sequence equals one of the reply words, the
reply ends before it (stop / stop_sequence).

Tools: when a request has tools, tool_choice is not "none" and the last message is not a tool result, the
reply is one tool call to the named (forced) tool or the first tool, with arguments {"echo": <last user
text>}; completion tokens = words of that arguments JSON.

Behaviours ("+" joins several, e.g. "drip:0.05+no_usage"):
    ok / None     normal answer
    refuse        (server-level only) stop listening and drop open connections: connections are refused.
                  Setting any other behaviour listens again on the same port. As a per-request model suffix
                  it acts as "drop" (the connection already exists).
    drop          close the connection without answering
    hang          wait `hang_seconds` (default 10, cut short by stop()) before answering normally
    stall[:N]     stream N events (default 2), then hang
    <status>      answer that HTTP status with the protocol's error body, e.g. 401, 429, 500, 529
    redirect      302 to /v1/redirected
    cut[:N]       stream N events (default 3), then close the socket without ending the chunked body
    drip[:S]      sleep S seconds (default 0.05) before each streamed event
    no_usage      no usage anywhere (JSON, stream)
    error_event[:N]  stream N events (default 2), then the protocol's mid-stream error, then end
    garbage       200 with a body that is not JSON / not SSE

Lying upstreams (attributes, reset by reset()):
    ignore_limits = True   produce the whole `reply` whatever max_tokens says (set `reply` to a long text)
    usage_lie = "neg" | "huge" | "zero" | "str" | "float"
                           report that as the completion / output token count instead of the truth
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

REPLY = "The quick brown fox jumps over the lazy dog."
REPLY_WORDS = len(REPLY.split())
CREATED = 1_700_000_000


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received. Header names are lower-cased; `body` is the parsed JSON (or None)."""

    method: str
    path: str  # without the query string
    query: str
    headers: dict[str, str]
    body: Any
    client_port: int = 0  # the same port twice means a pooled connection was reused


@dataclass
class Behaviour:
    status: int | None = None
    refuse: bool = False
    drop: bool = False
    hang: bool = False
    stall_after: int | None = None
    redirect: bool = False
    cut_after: int | None = None
    drip: float = 0.0
    no_usage: bool = False
    error_after: int | None = None
    garbage: bool = False

    @classmethod
    def parse(cls, spec: str | None) -> Behaviour:
        b = cls()
        for token in (spec or "").split("+"):
            name, _, arg = token.strip().partition(":")
            if name in ("", "ok"):
                continue
            if name.isdigit():
                b.status = int(name)
            elif name == "refuse":
                b.refuse = True
            elif name == "drop":
                b.drop = True
            elif name == "hang":
                b.hang = True
            elif name == "stall":
                b.stall_after = int(arg or 2)
            elif name == "redirect":
                b.redirect = True
            elif name == "cut":
                b.cut_after = int(arg or 3)
            elif name == "drip":
                b.drip = float(arg or 0.05)
            elif name == "no_usage":
                b.no_usage = True
            elif name == "error_event":
                b.error_after = int(arg or 2)
            elif name == "garbage":
                b.garbage = True
            else:
                raise ValueError(f"unknown fake upstream behaviour {token!r}")
        return b


def words(text: str) -> int:
    return len(text.split())


def _part_text(part: Any) -> str:
    if isinstance(part, dict) and part.get("type") == "text":
        return str(part.get("text", ""))
    if isinstance(part, dict) and part.get("type") == "tool_result":
        return _content_text(part.get("content"))
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_part_text(p) for p in content)
    return ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    upstream: FakeUpstream

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-answer are part of the tests


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.upstream._handle(self)

    def do_POST(self) -> None:
        self.server.upstream._handle(self)

    def do_DELETE(self) -> None:  # DELETE /v1/responses/{id} (tests/support/openai_extra.py)
        self.server.upstream._handle(self)

    def setup(self) -> None:
        super().setup()
        self.server.upstream._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.upstream._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeUpstream:
    """Base: HTTP plumbing, recording and behaviours. Subclasses speak a protocol."""

    chat_path = ""
    protocol = ""

    def __init__(self, api_key: str | None = None, models: list[str] | None = None) -> None:
        self.api_key = api_key  # when set, requests with another key get 401
        self.models = models or self.default_models()
        self.requests: list[RecordedRequest] = []
        self.reply = REPLY
        self.hang_seconds = 10.0
        self.cache_read_tokens = 0
        self.cache_creation_tokens = 0
        self.reasoning_tokens = 0  # OpenAI: hidden reasoning, reported inside completion_tokens and detailed
        self.ignore_limits = False
        self.usage_lie: str | None = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._behaviour: str | None = None
        self._closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self._listen()

    # -- lifecycle -------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def behaviour(self) -> str | None:
        return self._behaviour

    @behaviour.setter
    def behaviour(self, value: str | None) -> None:
        refuse = Behaviour.parse(value).refuse
        self._behaviour = value
        if refuse and self._server is not None:
            self._shutdown()
        elif not refuse and self._server is None:
            self._listen()

    def _listen(self) -> None:
        self._closing = threading.Event()
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.upstream = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                                        name=f"fake-{self.protocol}-{self.port}")
        self._thread.start()

    def _shutdown(self) -> None:
        server, self._server = self._server, None
        self._closing.set()
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # keep-alive connections would otherwise still be served
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def stop(self) -> None:
        """Stop listening and drop every connection; the port then refuses connections."""
        self._shutdown()

    def __enter__(self) -> FakeUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            return self.requests[-1]

    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == self.chat_path]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
        self.behaviour = None
        self.reply = REPLY
        self.ignore_limits = False
        self.usage_lie = None
        self.cache_read_tokens = self.cache_creation_tokens = self.reasoning_tokens = 0

    def reported(self, output: int) -> Any:
        """The output token count this upstream reports: the truth, or its lie."""
        lies: dict[str, Any] = {"neg": -5, "huge": 10**12, "zero": 0, "str": "many", "float": 2.5}
        return lies[self.usage_lie] if self.usage_lie else output

    # -- request handling --------------------------------------------------------------------------------------

    def _handle(self, h: _Handler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        parts = urlsplit(h.path)
        record = RecordedRequest(h.command, parts.path, parts.query, {k.lower(): v for k, v in h.headers.items()},
                                 body, int(h.client_address[1]))
        with self._lock:
            self.requests.append(record)
        spec = self._behaviour
        model = body.get("model") if isinstance(body, dict) else None
        if isinstance(model, str) and "@" in model:
            spec = model.rsplit("@", 1)[1]  # a per-request behaviour wins over the server's
        b = Behaviour.parse(spec)
        try:
            self._dispatch(h, record, b)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            h.close_connection = True

    def _dispatch(self, h: _Handler, req: RecordedRequest, b: Behaviour) -> None:
        if b.drop or b.refuse:
            self._abort(h)
            return
        if b.hang:
            self._closing.wait(self.hang_seconds)
            if self._closing.is_set():
                self._abort(h)
                return
        if b.redirect:
            self._send(h, 302, b"", "text/plain", {"Location": f"http://127.0.0.1:{self.port}/v1/redirected"})
            return
        if b.status:
            self._send_json(h, b.status, self.failure_json(b.status, req))
            return
        auth_error = self.check_auth(req)
        if auth_error is not None:
            self._send_json(h, *auth_error)
            return
        if req.method == "GET" and req.path == "/v1/models":
            self._send_json(h, 200, self.models_json())
        elif req.method == "POST" and req.path == self.chat_path and isinstance(req.body, dict):
            invalid = self.validate(req)
            if invalid:
                self._send_json(h, 400, self.error_json(400, invalid))
            elif b.garbage:
                self._send(h, 200, b"this is <not> json", "application/json")
            elif req.body.get("stream"):
                self._stream(h, self.stream_events(req.body, b), b)
            else:
                self._send_json(h, 200, self.completion_json(req.body, b))
        elif not self.other_route(h, req, b):
            self._send_json(h, 404, self.error_json(404, f"no route for {req.method} {req.path}"))

    def other_route(self, h: _Handler, req: RecordedRequest, b: Behaviour) -> bool:
        """A protocol's further routes (OpenAI: /v1/responses, /v1/embeddings); False: not one of them."""
        return False

    # -- wire helpers ------------------------------------------------------------------------------------------

    @staticmethod
    def _abort(h: _Handler) -> None:
        h.close_connection = True
        with contextlib.suppress(OSError):
            h.connection.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _send(h: _Handler, status: int, payload: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(payload)

    def _send_json(self, h: _Handler, status: int, data: Any) -> None:
        headers = {"Retry-After": "1"} if status == 429 else None
        self._send(h, status, json.dumps(data).encode("utf-8"), "application/json", headers)

    def _stream(self, h: _Handler, events: list[bytes], b: Behaviour) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream; charset=utf-8")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.flush()
        if b.error_after is not None:
            events = [*events[:b.error_after], self.stream_error_event()]
        for n, event in enumerate(events):
            if b.cut_after is not None and n >= b.cut_after:
                self._abort(h)  # no terminating chunk: the client sees a truncated body
                return
            if b.stall_after is not None and n >= b.stall_after:
                self._closing.wait(self.hang_seconds)
                self._abort(h)
                return
            if b.drip:
                time.sleep(b.drip)
            h.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            h.wfile.flush()
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()

    # -- reply content shared by both protocols -----------------------------------------------------------------

    def reply_words(self, limit: Any, stops: list[str]) -> tuple[list[str], str]:
        """The words to send and why the reply ended: "end", "max_tokens" or "stop_sequence"."""
        out: list[str] = []
        for word in self.reply.split():
            if word in stops:
                return out, "stop_sequence"
            if isinstance(limit, int) and len(out) >= limit and not self.ignore_limits:
                return out, "max_tokens"
            out.append(word)
        return out, "end"

    @staticmethod
    def word_chunks(ws: list[str]) -> list[str]:
        """One chunk per word; joined they give the sentence back."""
        return [w if i == 0 else " " + w for i, w in enumerate(ws)]

    @staticmethod
    def tool_args(last_user_text: str) -> str:
        return json.dumps({"echo": last_user_text})

    # -- protocol hooks ----------------------------------------------------------------------------------------

    def default_models(self) -> list[str]:
        raise NotImplementedError

    def _sent_key(self, req: RecordedRequest) -> str:
        raise NotImplementedError

    def check_auth(self, req: RecordedRequest) -> tuple[int, Any] | None:
        raise NotImplementedError

    def validate(self, req: RecordedRequest) -> str | None:
        return None

    def failure_json(self, status: int, req: RecordedRequest) -> Any:
        """The body of a failure on demand. A 401 echoes the key it got, as real upstreams do."""
        if status == 401:
            return self.error_json(401, f"Incorrect API key provided: {self._sent_key(req)}.")
        return self.error_json(status, f"fake upstream error {status}")

    def error_json(self, status: int, message: str) -> Any:
        raise NotImplementedError

    def models_json(self) -> Any:
        raise NotImplementedError

    def completion_json(self, body: dict[str, Any], b: Behaviour) -> Any:
        raise NotImplementedError

    def stream_events(self, body: dict[str, Any], b: Behaviour) -> list[bytes]:
        raise NotImplementedError

    def stream_error_event(self) -> bytes:
        raise NotImplementedError


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return (head + "data: " + json.dumps(data) + "\n\n").encode("utf-8")


_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


class OpenAIUpstream(FakeUpstream):
    chat_path = "/v1/chat/completions"
    protocol = "openai"

    def default_models(self) -> list[str]:
        return ["fake-gpt-small", "fake-gpt-large"]

    def _sent_key(self, req: RecordedRequest) -> str:
        return req.headers.get("authorization", "").removeprefix("Bearer ")

    def check_auth(self, req: RecordedRequest) -> tuple[int, Any] | None:
        if self.api_key is None or self._sent_key(req) == self.api_key:
            return None
        # Like the real API, echo the key that was sent (the adapter must not let it into an error message).
        return 401, self.error_json(401, f"Incorrect API key provided: {self._sent_key(req)}.")

    def error_json(self, status: int, message: str) -> Any:
        code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
        return {"error": {"message": message, "type": _ERROR_TYPES.get(status, "api_error"), "param": None,
                          "code": code}}

    def models_json(self) -> Any:
        return {"object": "list", "data": [{"id": m, "object": "model", "created": CREATED, "owned_by": "fake"}
                                           for m in self.models]}

    def prompt_words(self, body: dict[str, Any]) -> int:
        return sum(words(_content_text(m.get("content"))) for m in body.get("messages") or [])

    def _plan(self, body: dict[str, Any]) -> tuple[str, Any]:
        """("tool", (name, args)) or ("text", (words, ended_by))."""
        messages = body.get("messages") or []
        tools = body.get("tools") or []
        choice = body.get("tool_choice")
        if tools and choice != "none" and messages and messages[-1].get("role") != "tool":
            name = tools[0]["function"]["name"]
            if isinstance(choice, dict):
                name = choice["function"]["name"]
            last_user = next((_content_text(m.get("content")) for m in reversed(messages)
                              if m.get("role") == "user"), "")
            return "tool", (name, self.tool_args(last_user))
        stop = body.get("stop") or []
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        return "text", self.reply_words(limit, [stop] if isinstance(stop, str) else list(stop))

    def _usage(self, body: dict[str, Any], completion: int) -> dict[str, Any]:
        prompt = self.prompt_words(body)
        completion += self.reasoning_tokens  # OpenAI counts reasoning inside completion_tokens and details it
        usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": self.reported(completion),
                                 "total_tokens": prompt + completion}
        if self.cache_read_tokens:  # OpenAI counts cached prompt tokens inside prompt_tokens and details them
            usage["prompt_tokens_details"] = {"cached_tokens": self.cache_read_tokens}
        if self.reasoning_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return usage

    def completion_json(self, body: dict[str, Any], b: Behaviour) -> Any:
        kind, plan = self._plan(body)
        if kind == "tool":
            name, args = plan
            message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
                {"id": "call_fake_1", "type": "function", "function": {"name": name, "arguments": args}}]}
            finish, completion = "tool_calls", words(args)
        else:
            ws, ended = plan
            message = {"role": "assistant", "content": " ".join(ws), "refusal": None}
            finish, completion = ("length" if ended == "max_tokens" else "stop"), len(ws)
        out = {"id": "chatcmpl-fake", "object": "chat.completion", "created": CREATED, "model": body.get("model"),
               "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
               "system_fingerprint": None}
        if not b.no_usage:
            out["usage"] = self._usage(body, completion)
        return out

    def stream_events(self, body: dict[str, Any], b: Behaviour) -> list[bytes]:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and not b.no_usage
        model = body.get("model")

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data: dict[str, Any] = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": CREATED,
                                    "model": model, "system_fingerprint": None,
                                    "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                 "finish_reason": finish}]}
            if include_usage:
                data["usage"] = None
            return _sse(data)

        kind, plan = self._plan(body)
        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        if kind == "tool":
            name, args = plan
            half = len(args) // 2
            events.append(chunk({"tool_calls": [{"index": 0, "id": "call_fake_1", "type": "function",
                                                 "function": {"name": name, "arguments": ""}}]}))
            events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                       for piece in (args[:half], args[half:])]
            events.append(chunk({}, "tool_calls"))
            completion = words(args)
        else:
            ws, ended = plan
            events += [chunk({"content": piece}) for piece in self.word_chunks(ws)]
            events.append(chunk({}, "length" if ended == "max_tokens" else "stop"))
            completion = len(ws)
        if include_usage:
            events.append(_sse({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": CREATED,
                                "model": model, "system_fingerprint": None, "choices": [],
                                "usage": self._usage(body, completion)}))
        events.append(b"data: [DONE]\n\n")
        return events

    def stream_error_event(self) -> bytes:
        return _sse({"error": {"message": "The server had an error while processing your request.",
                               "type": "server_error", "param": None, "code": None}})

    def other_route(self, h: _Handler, req: RecordedRequest, b: Behaviour) -> bool:
        from tests.support import openai_extra  # /v1/responses and /v1/embeddings

        return openai_extra.handle(self, h, req, b)


class AnthropicUpstream(FakeUpstream):
    chat_path = "/v1/messages"
    protocol = "anthropic"

    def default_models(self) -> list[str]:
        return ["claude-fake-haiku", "claude-fake-sonnet"]

    def _sent_key(self, req: RecordedRequest) -> str:
        return req.headers.get("x-api-key", "")

    def check_auth(self, req: RecordedRequest) -> tuple[int, Any] | None:
        if "x-api-key" not in req.headers:
            return 401, self.error_json(401, "x-api-key header is required")
        if self.api_key is not None and self._sent_key(req) != self.api_key:
            return 401, self.error_json(401, f"invalid x-api-key: {self._sent_key(req)}")
        if "anthropic-version" not in req.headers:
            return 400, self.error_json(400, "anthropic-version: header is required")
        return None

    def validate(self, req: RecordedRequest) -> str | None:
        """The checks of the real API that catch translation mistakes."""
        body = req.body
        if not isinstance(body.get("model"), str):
            return "model: field required"
        if not isinstance(body.get("max_tokens"), int):
            return "max_tokens: field required"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: at least one message is required"
        previous_tool_ids: set[str] = set()
        for i, msg in enumerate(messages):
            if msg.get("role") not in ("user", "assistant"):
                return f"messages.{i}.role: Input should be 'user' or 'assistant'"
            content = msg.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            if not isinstance(blocks, list) or not blocks:
                return f"messages.{i}.content: must be a non-empty string or list"
            for block in blocks:
                kind = block.get("type")
                if kind == "text" and not block.get("text"):
                    return f"messages.{i}: text content blocks must be non-empty"
                if kind == "tool_result" and block.get("tool_use_id") not in previous_tool_ids:
                    return f"messages.{i}: tool_result block(s) must follow a tool_use block with that id"
                if kind == "image" and block.get("source", {}).get("type") not in ("base64", "url"):
                    return f"messages.{i}: image source type must be base64 or url"
                if kind not in ("text", "image", "tool_use", "tool_result"):
                    return f"messages.{i}: unknown content block type {kind!r}"
            previous_tool_ids = {blk.get("id") for blk in blocks if blk.get("type") == "tool_use"}
        for tool in body.get("tools") or []:
            if not isinstance(tool.get("name"), str) or not isinstance(tool.get("input_schema"), dict):
                return "tools: each tool needs name and input_schema"
        return None

    def error_json(self, status: int, message: str) -> Any:
        return {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}}

    def models_json(self) -> Any:
        data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in self.models]
        return {"data": data, "has_more": False, "first_id": self.models[0] if self.models else None,
                "last_id": self.models[-1] if self.models else None}

    def prompt_words(self, body: dict[str, Any]) -> int:
        total = words(_content_text(body.get("system")))
        return total + sum(words(_content_text(m.get("content"))) for m in body.get("messages") or [])

    def _plan(self, body: dict[str, Any]) -> tuple[str, Any]:
        messages = body.get("messages") or []
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {"type": "auto"}
        last = messages[-1] if messages else {}
        last_is_result = isinstance(last.get("content"), list) and any(
            blk.get("type") == "tool_result" for blk in last["content"])
        if tools and choice.get("type") != "none" and not last_is_result:
            name = choice["name"] if choice.get("type") == "tool" else tools[0]["name"]
            last_user = next((_content_text(m.get("content")) for m in reversed(messages)
                              if m.get("role") == "user"), "")
            return "tool", (name, self.tool_args(last_user))
        return "text", self.reply_words(body.get("max_tokens"), list(body.get("stop_sequences") or []))

    def _usage(self, body: dict[str, Any], output: int) -> dict[str, int]:
        return {"input_tokens": self.prompt_words(body), "output_tokens": self.reported(output),
                "cache_creation_input_tokens": self.cache_creation_tokens,
                "cache_read_input_tokens": self.cache_read_tokens}

    def completion_json(self, body: dict[str, Any], b: Behaviour) -> Any:
        kind, plan = self._plan(body)
        stop_sequence = None
        if kind == "tool":
            name, args = plan
            content = [{"type": "tool_use", "id": "toolu_fake_1", "name": name, "input": json.loads(args)}]
            stop_reason, output = "tool_use", words(args)
        else:
            ws, ended = plan
            content = [{"type": "text", "text": " ".join(ws)}]
            stop_reason = {"end": "end_turn"}.get(ended, ended)
            output = len(ws)
            if ended == "stop_sequence":
                stop_sequence = self.reply.split()[len(ws)]
        out = {"id": "msg_fake", "type": "message", "role": "assistant", "model": body.get("model"),
               "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence}
        if not b.no_usage:
            out["usage"] = self._usage(body, output)
        return out

    def stream_events(self, body: dict[str, Any], b: Behaviour) -> list[bytes]:
        kind, plan = self._plan(body)
        message: dict[str, Any] = {"id": "msg_fake", "type": "message", "role": "assistant",
                                   "model": body.get("model"), "content": [], "stop_reason": None,
                                   "stop_sequence": None}
        if not b.no_usage:
            message["usage"] = {**self._usage(body, 1)}
        events = [_sse({"type": "message_start", "message": message}, "message_start")]
        if kind == "tool":
            name, args = plan
            half = len(args) // 2
            events.append(_sse({"type": "content_block_start", "index": 0, "content_block": {
                "type": "tool_use", "id": "toolu_fake_1", "name": name, "input": {}}}, "content_block_start"))
            events.append(_sse({"type": "ping"}, "ping"))
            events += [_sse({"type": "content_block_delta", "index": 0,
                             "delta": {"type": "input_json_delta", "partial_json": piece}}, "content_block_delta")
                       for piece in (args[:half], args[half:])]
            stop_reason, output = "tool_use", words(args)
        else:
            ws, ended = plan
            events.append(_sse({"type": "content_block_start", "index": 0,
                                "content_block": {"type": "text", "text": ""}}, "content_block_start"))
            events.append(_sse({"type": "ping"}, "ping"))
            events += [_sse({"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")
                       for piece in self.word_chunks(ws)]
            stop_reason = {"end": "end_turn"}.get(ended, ended)
            output = len(ws)
        events.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        delta: dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": stop_reason,
                                                                  "stop_sequence": None}}
        if not b.no_usage:
            delta["usage"] = {"output_tokens": self.reported(output)}
        events.append(_sse(delta, "message_delta"))
        events.append(_sse({"type": "message_stop"}, "message_stop"))
        return events

    def stream_error_event(self) -> bytes:
        return _sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error")


def start_openai_upstream(api_key: str | None = None, models: list[str] | None = None) -> OpenAIUpstream:
    """A running fake OpenAI-compatible upstream on 127.0.0.1 (base_url ends in /v1)."""
    return OpenAIUpstream(api_key, models)


def start_anthropic_upstream(api_key: str | None = None, models: list[str] | None = None) -> AnthropicUpstream:
    """A running fake Anthropic Messages upstream on 127.0.0.1 (base_url ends in /v1)."""
    return AnthropicUpstream(api_key, models)
