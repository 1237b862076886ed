"""The one Server-Sent Events helper: parse an upstream byte stream into events, and format OpenAI chunks."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

DONE = b"data: [DONE]\n\n"

# A line ends at CRLF, LF or a lone CR (the SSE spec allows all three).
_EOL = re.compile(rb"\r\n|\r|\n")
# An upstream that never sends a newline must not make us buffer without bound.
MAX_LINE_BYTES = 16 * 1024 * 1024


class SSEError(ValueError):
    """The byte stream is not valid SSE (a line or an event over the size limit)."""


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event. `event` is "message" when the stream gave no `event:` field."""

    event: str
    data: str
    id: str | None = None


class SSEParser:
    """Incremental parser: feed() bytes as they arrive, get back the events completed so far."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_line_bytes
        self._event = ""
        self._data: list[str] = []
        self._data_size = 0
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Add bytes; return the events they complete (possibly none)."""
        self._buf += chunk
        events: list[SSEEvent] = []
        pos = 0
        while True:
            match = _EOL.search(self._buf, pos)
            if match is None:
                break
            # A CR as the very last byte may be the first half of a CRLF split across two reads: wait.
            if match.group() == b"\r" and match.end() == len(self._buf):
                break
            self._line(bytes(self._buf[pos:match.start()]), events)
            pos = match.end()
        del self._buf[:pos]
        if len(self._buf) > self._max:
            raise SSEError("SSE line exceeds the size limit")
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: a final unterminated line and a pending event are still delivered (lenient)."""
        events: list[SSEEvent] = []
        if self._buf:
            line = bytes(self._buf).rstrip(b"\r")
            self._buf.clear()
            self._line(line, events)
        self._dispatch(events)
        return events

    def _line(self, raw: bytes, events: list[SSEEvent]) -> None:
        # Splitting on CR/LF bytes never cuts a UTF-8 sequence, so decoding per line is safe.
        line = raw.decode("utf-8", errors="replace")
        if not line:
            self._dispatch(events)
            return
        if line.startswith(":"):
            return  # comment / keep-alive
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_size += len(value)
            if self._data_size > self._max:
                raise SSEError("SSE event exceeds the size limit")
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self._id = value
        # "retry" and unknown fields are ignored, as the spec says.

    def _dispatch(self, events: list[SSEEvent]) -> None:
        if self._data:
            events.append(SSEEvent(self._event or "message", "\n".join(self._data), self._id))
        self._event = ""
        self._data = []
        self._data_size = 0


def iter_sse(chunks: Iterable[bytes], max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[SSEEvent]:
    """Events from an iterable of byte chunks, yielded as soon as each one is complete."""
    parser = SSEParser(max_line_bytes)
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.close()


def format_chunk(chunk: dict[str, Any]) -> bytes:
    """One OpenAI stream chunk as `data: {json}\\n\\n`. JSON escapes newlines, so one data line suffices."""
    return b"data: " + json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n\n"


def format_event(data: str, event: str | None = None) -> bytes:
    """A generic SSE event; multi-line data becomes several `data:` lines."""
    head = f"event: {event}\n" if event else ""
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return (head + body + "\n").encode("utf-8")
