"""Scrub secrets from any text that may reach a log line, an error or a response.

Two layers:
* well-known key shapes (sk-..., Bearer ..., ?key=..., JWTs), for text whose secrets we do not know;
* every key Switchboard holds, by *fragment*: any run of MIN_FRAGMENT or more characters of a key, ignoring case,
  is replaced. A key cut in half by a truncation, re-cased or echoed piecewise by an upstream still disappears.

Redact first, truncate after: cutting first could leave a piece too short to recognise by shape."""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

REDACTED = "[redacted]"
MIN_FRAGMENT = 8  # a run of this many characters of a key is treated as the key
MIN_SECRET = 6  # shorter "secrets" would shred ordinary words
HELD_MIN = 16  # keys remembered for log lines (see HeldSecrets.add)
_MEMO_CHARS, _MEMO_SIZE = 48, 256  # KeyRedactor.redact_json remembers strings up to this long, this many
_BLOCK = MIN_FRAGMENT // 2  # every window of MIN_FRAGMENT characters holds one whole key-aligned block of this size

_PATTERNS = [
    re.compile(r"sk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"gsk_[A-Za-z0-9]{8,}"),
    re.compile(r"AIza[0-9A-Za-z_\-]{20,}"),
    re.compile(r"(gh[pousr]_|github_pat_)[A-Za-z0-9_]{10,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/\-]{4,}=*"),
    re.compile(r"(?i)([?&](key|api_key|apikey|token)=)[^&\s]+"),
    re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"),
]


def _fold(text: str) -> str:
    """Lower case with the same length as `text`, so offsets found in it are offsets in `text`."""
    low = text.lower()
    if len(low) == len(text):
        return low
    # A few characters (e.g. U+0130) lower to two; keep those as they are.
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


class KeyRedactor:
    """Finds and replaces every fragment (>= MIN_FRAGMENT characters, any case) of one secret.

    Search without regex alternation (which costs about a microsecond per character in `re`): a fragment of
    MIN_FRAGMENT characters always contains a whole key block of _BLOCK characters starting at a multiple of
    _BLOCK, so each block is looked up with str.find (C speed) and a hit is extended both ways against the key.
    Text without any block costs len(key)/_BLOCK substring searches and nothing else."""

    __slots__ = ("_blocks", "_key", "_memo", "_short")

    def __init__(self, secret: str) -> None:
        self._key = _fold(secret)
        self._short = len(secret) < MIN_FRAGMENT  # such a key only counts when it appears whole
        starts = range(0, len(self._key) - _BLOCK + 1, _BLOCK) if not self._short else ()
        blocks: dict[str, list[int]] = {}
        for start in starts:
            blocks.setdefault(self._key[start:start + _BLOCK], [])
        for block, offsets in blocks.items():  # every offset of the block in the key, not only aligned ones
            at = self._key.find(block)
            while at >= 0:
                offsets.append(at)
                at = self._key.find(block, at + 1)
        self._blocks = tuple(blocks.items())
        self._memo: dict[str, str] = {}  # redact_json: short strings answers repeat (keys, roles, ids, models)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Sorted, merged (start, end) ranges of `text` that are fragments of the key."""
        if len(text) < min(MIN_FRAGMENT, len(self._key)):
            return []
        folded = _fold(text)
        if self._short:
            return _merge([(m, m + len(self._key)) for m in _find_all(folded, self._key)])
        key, found = self._key, []
        for block, offsets in self._blocks:
            at = folded.find(block)
            while at >= 0:
                for k in offsets:
                    lo, hi = at, at + _BLOCK
                    while lo > 0 and lo - at + k > 0 and folded[lo - 1] == key[lo - at + k - 1]:
                        lo -= 1
                    while hi < len(folded) and hi - at + k < len(key) and folded[hi] == key[hi - at + k]:
                        hi += 1
                    if hi - lo >= MIN_FRAGMENT:
                        found.append((lo, hi))
                at = folded.find(block, at + 1)
        return _merge(found)

    def redact(self, text: str) -> str:
        return _replace(text, self.spans(text))

    def redact_json(self, value: Any) -> Any:
        """`value` (parsed JSON) with `redact` applied to every string, object keys included; unchanged parts are
        returned as they are (no copy). What `redact_json(value, self.redact)` returns, without its paths, without
        a call per string too short to hold a fragment, and with the answer for a short string remembered."""
        shortest, memo = min(MIN_FRAGMENT, len(self._key)), self._memo

        def text(s: str) -> str:
            if len(s) < shortest:
                return s
            if len(s) > _MEMO_CHARS:
                return self.redact(s)
            done = memo.get(s)
            if done is None:
                done = self.redact(s)
                if len(memo) >= _MEMO_SIZE:
                    memo.clear()
                memo[s] = done
            return s if done == s else done  # unchanged: this very string, as redact() returns it

        return redact_json(value, text)

    def blocks(self) -> list[str]:
        return [block for block, _ in self._blocks]

    def is_short(self) -> bool:
        return self._short


def _find_all(text: str, needle: str) -> list[int]:
    out, at = [], text.find(needle)
    while at >= 0:
        out.append(at)
        at = text.find(needle, at + 1)
    return out


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    if len(spans) < 2:
        return spans
    spans.sort()
    out = [spans[0]]
    for lo, hi in spans[1:]:
        if lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _replace(text: str, spans: list[tuple[int, int]]) -> str:
    if not spans:
        return text
    parts, pos = [], 0
    for lo, hi in spans:
        parts.append(text[pos:lo])
        parts.append(REDACTED)
        pos = hi
    parts.append(text[pos:])
    return "".join(parts)


@lru_cache(maxsize=1024)
def redactor_for(secret: str) -> KeyRedactor:
    """The (cached) redactor of one secret: built once per key, reused by every request that uses the key."""
    return KeyRedactor(secret)


def _redactors(secrets: Iterable[str | None]) -> list[KeyRedactor]:
    return [redactor_for(s) for s in secrets if s and len(s) >= MIN_SECRET]


class HeldSecrets:
    """The keys Switchboard has recently sent upstream (bounded, most recent kept), so that log lines, which do
    not know which key a request used, are scrubbed of their fragments too.

    A log line is checked against all of them in time proportional to its length, not to the number of keys:
    the line's _BLOCK-grams are looked up in one index of every held key's blocks, and only keys with a hit
    run their full search."""

    def __init__(self, capacity: int = 64) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._items: OrderedDict[str, KeyRedactor] = OrderedDict()
        self._index: dict[str, dict[str, KeyRedactor]] = {}  # block -> {secret: redactor}

    def add(self, secret: str | None) -> None:
        # Placeholder "keys" for keyless engines ("ollama", "lm-studio") would shred every log line that names
        # the provider; a real key is far longer than HELD_MIN. Errors still redact the request's own keys.
        if not secret or len(secret) < HELD_MIN:
            return
        with self._lock:
            if secret in self._items:
                self._items.move_to_end(secret)
                return
            redactor = self._items[secret] = redactor_for(secret)
            for block in redactor.blocks():
                self._index.setdefault(block, {})[secret] = redactor
            while len(self._items) > self._capacity:
                old, gone = self._items.popitem(last=False)
                for block in gone.blocks():
                    holders = self._index.get(block, {})
                    holders.pop(old, None)
                    if not holders:
                        self._index.pop(block, None)

    def redact(self, text: str) -> str:
        """`text` without fragments of any held key."""
        if len(text) < MIN_SECRET or not self._items:
            return text
        folded = _fold(text)
        with self._lock:
            index = self._index
            hits = {id(r): r for i in range(len(folded) - _BLOCK + 1)
                    for r in index.get(folded[i:i + _BLOCK], {}).values()}
            short = [r for r in self._items.values() if r.is_short()]
        for redactor in [*hits.values(), *short]:
            text = redactor.redact(text)
        return text

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._index.clear()


held_secrets = HeldSecrets()


def redact_keys(text: str, *secrets: str | None) -> str:
    """`text` without any fragment of the given secrets (no shape patterns): for successful upstream content,
    where "Bearer x" or "sk-..." written by a model is an answer, not a leak."""
    for redactor in _redactors(secrets):
        text = redactor.redact(text)
    return text


def redact(text: str, *secrets: str | None) -> str:
    """`text` for an error or a log line: well-known key shapes, then fragments of the given secrets and of
    every held key. Call it on the whole text and truncate the result, never the other way round."""
    # Shapes first: they take a whole token (prefix to end), where a fragment match could split it and leave a
    # tail no longer recognisable by its shape.
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.re.groups and m.group(1) else "") + REDACTED, text)
    for redactor in _redactors(secrets):
        text = redactor.redact(text)
    return held_secrets.redact(text)


def map_json(value: Any, on_text: Callable[[tuple[Any, ...], str], str], on_key: Callable[[str], str],
             path: tuple[Any, ...] = ()) -> Any:
    """`value` (parsed JSON) with `on_text(path, text)` applied to every string value and `on_key` to every object
    key. `path` is the keys and positions leading to a value; a list item's own integer "index" (choices, tool
    calls) stands for its position. Unchanged parts are returned as they are (no copy)."""
    if isinstance(value, str):
        return on_text(path, value)
    if isinstance(value, dict):
        out: dict[Any, Any] | None = None
        for i, (k, v) in enumerate(value.items()):
            nk = on_key(k) if isinstance(k, str) else k
            nv = map_json(v, on_text, on_key, (*path, k))
            if out is None and (nk is not k or nv is not v):
                out = dict(list(value.items())[:i])
            if out is not None:
                out[nk] = nv
        return value if out is None else out
    if isinstance(value, list):
        items = []
        for n, item in enumerate(value):
            idx = item.get("index", n) if isinstance(item, dict) else n
            items.append(map_json(item, on_text, on_key, (*path, idx if isinstance(idx, int) else n)))
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def redact_json(value: Any, clean: Callable[[str], str]) -> Any:
    """`value` (parsed JSON) with `clean` applied to every string, object keys included; unchanged parts are
    returned as they are (no copy). `map_json` without the paths (no tuple built per value)."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        out: dict[Any, Any] | None = None
        for i, (k, v) in enumerate(value.items()):
            nk = clean(k) if isinstance(k, str) else k
            nv = redact_json(v, clean)
            if out is None and (nk is not k or nv is not v):
                out = dict(list(value.items())[:i])
            if out is not None:
                out[nk] = nv
        return value if out is None else out
    if isinstance(value, list):
        items = [redact_json(x, clean) for x in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


class StreamRedactor:
    """Redacts fragments of `secrets` in a sequence of stream chunks (OpenAI chunk dicts).

    Text under `delta` arrives in pieces, so a fragment may be split between two chunks. For each delta field
    (choice index + field path) the last MIN_FRAGMENT - 1 characters already seen are kept and the new piece is
    searched together with them: the part of a straddling fragment that is in the new chunk is redacted. What was
    already sent cannot be recalled, so at most MIN_FRAGMENT - 1 characters of a key can reach a client before
    the rest turns into [redacted] (the same as the fragment threshold). Strings outside `delta` (id, model,
    object, ...) repeat in every chunk: their verdict is memoised per stream."""

    _MEMO_MAX = 256

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self._redactors = _redactors(secrets)
        self._tails: dict[tuple[Any, ...], str] = {}
        self._memo: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self._redactors)

    def chunk(self, chunk: dict[str, Any]) -> dict[str, Any]:
        """The chunk with every key fragment replaced (the same object when nothing was found)."""
        if not self._redactors:
            return chunk
        result = map_json(chunk, self._text, self._plain)
        return result if isinstance(result, dict) else chunk

    def _plain(self, text: str) -> str:
        if len(text) < MIN_FRAGMENT:
            return text
        done = self._memo.get(text)
        if done is None:
            done = redact_keys_with(self._redactors, text)
            if len(self._memo) >= self._MEMO_MAX:
                self._memo.clear()
            self._memo[text] = done
        return done

    def _delta_text(self, path: tuple[Any, ...], text: str) -> str:
        tail = self._tails.get(path, "")
        joined = tail + text
        self._tails[path] = joined[-(MIN_FRAGMENT - 1):]
        if len(joined) < MIN_FRAGMENT:
            return text
        spans: list[tuple[int, int]] = []
        for redactor in self._redactors:
            spans.extend(redactor.spans(joined))
        if not spans:
            return text
        cut = len(tail)
        return _replace(text, _merge([(max(lo, cut) - cut, hi - cut) for lo, hi in spans if hi > cut]))

    def _text(self, path: tuple[Any, ...], text: str) -> str:
        # Choices and tool calls carry their own "index" in the path: it says which earlier piece this continues.
        return self._delta_text(path, text) if "delta" in path else self._plain(text)


def redact_keys_with(redactors: Iterable[KeyRedactor], text: str) -> str:
    for redactor in redactors:
        text = redactor.redact(text)
    return text


class RedactingFilter(logging.Filter):
    """Attached to every handler: a log record's final message is scrubbed before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a malformed log call: let logging report it the usual way, never raise into the caller
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
