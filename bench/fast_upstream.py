"""A fast fake OpenAI-compatible upstream for the proxy benchmark: one asyncio process, HTTP/1.1 keep-alive,
answers at once (no sleeps, no per-request logging).

    python bench/fast_upstream.py [--host 127.0.0.1] [--port 0] [--key SECRET]

Prints `READY <port>` on stdout once listening. Routes:
    POST /v1/chat/completions   JSON chat.completion with usage, or (body "stream": true) SSE: a role chunk,
                                4 content chunks, a finish chunk, a usage chunk (choices: []), then [DONE],
                                each event its own HTTP chunk (Transfer-Encoding: chunked)
    GET  /v1/models             a one-model list
With --key, a request without `Authorization: Bearer <key>` gets 401 (proves the gateway decrypted its admin key).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys

CREATED = 1_700_000_000
WORDS = ["The quick", " brown fox", " jumps over", " the lazy dog."]
PROMPT_TOKENS, COMPLETION_TOKENS = 9, 9


def _chunk(obj: dict) -> bytes:
    data = b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def _base(**extra: object) -> dict:
    return {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": "echo-1",
            "system_fingerprint": "fp_bench", **extra}


def _build() -> tuple[bytes, bytes]:
    body = json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": CREATED, "model": "echo-1",
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(WORDS)},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                  "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS},
    }, separators=(",", ":")).encode()
    complete = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"Connection: keep-alive\r\n\r\n" % len(body)) + body
    events = [_chunk(_base(choices=[{"index": 0, "delta": {"role": "assistant", "content": ""},
                                     "logprobs": None, "finish_reason": None}]))]
    events += [_chunk(_base(choices=[{"index": 0, "delta": {"content": w}, "logprobs": None,
                                      "finish_reason": None}])) for w in WORDS]
    events.append(_chunk(_base(choices=[{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])))
    events.append(_chunk(_base(choices=[], usage={"prompt_tokens": PROMPT_TOKENS,
                                                  "completion_tokens": COMPLETION_TOKENS,
                                                  "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS})))
    done = b"data: [DONE]\n\n"
    events.append(b"%x\r\n%s\r\n" % (len(done), done))
    events.append(b"0\r\n\r\n")
    stream = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
              b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n") + b"".join(events)
    return complete, stream


COMPLETE, STREAM = _build()
MODELS_BODY = b'{"object":"list","data":[{"id":"echo-1","object":"model","created":0,"owned_by":"bench"}]}'
MODELS = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(MODELS_BODY)
          + MODELS_BODY)


def _plain(status: str, message: str) -> bytes:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
    return (b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (status.encode(), len(body))) + body


NOT_FOUND = _plain("404 Not Found", "unknown route")
UNAUTHORIZED = _plain("401 Unauthorized", "bad api key")
BAD_REQUEST = _plain("400 Bad Request", "body is not JSON")


class Upstream(asyncio.Protocol):
    expected_auth: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                self.transport.close()
                return
            method, path = parts[0], parts[1].split("?", 1)[0]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buf) < end + 4 + length:
                return  # wait for the rest of the body
            body = bytes(self.buf[end + 4:end + 4 + length])
            del self.buf[:end + 4 + length]
            self.transport.write(self._answer(method, path, headers, body))
            if headers.get("connection", "").lower() == "close":
                self.transport.close()
                return

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        if self.expected_auth is not None and headers.get("authorization", "").encode() != self.expected_auth:
            return UNAUTHORIZED
        if method == "POST" and path == "/v1/chat/completions":
            try:
                stream = json.loads(body).get("stream") is True
            except (ValueError, AttributeError):
                return BAD_REQUEST
            return STREAM if stream else COMPLETE
        if method == "GET" and path == "/v1/models":
            return MODELS
        return NOT_FOUND


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--key", default=None)
    args = ap.parse_args()
    if args.key:
        Upstream.expected_auth = f"Bearer {args.key}".encode()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, args.host, args.port, backlog=1024, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    for sock in server.sockets:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {port}", flush=True)
    async with server:
        await stop.wait()
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
