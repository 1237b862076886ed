"""The README's code snippets, read from the README itself so the tests run exactly what a reader copies.

A snippet is the fenced code block right after a `<!-- snippet: NAME -->` line."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
_SNIPPET = re.compile(r"^<!-- snippet: ([a-z0-9-]+) -->\n```[a-z]*\n(.*?)^```$", re.M | re.S)


def snippets() -> dict[str, str]:
    found: dict[str, str] = {}
    for name, body in _SNIPPET.findall(README.read_text(encoding="utf-8")):
        assert name not in found, f"two README snippets are named {name}"
        found[name] = body
    return found


def snippet(name: str) -> str:
    """The code of README snippet `name`; fails the test when the README lost it."""
    found = snippets()
    assert name in found, f"README.md has no snippet {name!r} (have {sorted(found)})"
    return found[name]
