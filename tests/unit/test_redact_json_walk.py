"""KeyRedactor.redact_json (the upstream answer scrub on the hot path: the pathless walk, short strings skipped,
answers remembered) returns what the path-keeping walk map_json with redactor.redact returns, object for object: the
same strings redacted, unchanged parts the same objects."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.redact import REDACTED, map_json, redactor_for

KEYS = ["sk-bench-admin-0123456789abcdef", "abcdef", "short7x", "exactly8"]


def _texts(key: str) -> st.SearchStrategy[str]:
    pieces = st.sampled_from([key, key.upper(), key[:8], key[-9:], key[2:10], "hello", "", "x" * 7, "é" * 9])
    return st.lists(st.one_of(pieces, st.text(max_size=12)), max_size=4).map("".join)


def _json(key: str) -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _texts(key))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_texts(key), inner, max_size=4)), max_leaves=20)


def _same(a: Any, b: Any, original: Any) -> None:
    assert a == b
    assert (a is original) == (b is original)  # unchanged parts are returned as they are by both
    if isinstance(a, dict) and len(a) == len(original):  # two keys redacted alike collapse into one
        for (ka, va), (kb, vb), (_, vo) in zip(a.items(), b.items(), original.items(), strict=True):
            assert ka == kb
            _same(va, vb, vo)
    elif isinstance(a, list):
        for va, vb, vo in zip(a, b, original, strict=True):
            _same(va, vb, vo)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KEYS).flatmap(lambda key: st.tuples(st.just(key), _json(key))))
def test_the_fast_walk_returns_what_the_generic_one_returns(case: tuple[str, Any]) -> None:
    key, value = case
    redactor = redactor_for(key)
    _same(redactor.redact_json(value), map_json(value, lambda _path, text: redactor.redact(text), redactor.redact),
          value)


def test_a_key_echoed_in_keys_values_and_lists_is_redacted() -> None:
    key = KEYS[0]
    body = {"id": "x", key: [key.upper(), {"deep": "prefix " + key[3:12]}], "n": 1}
    out = redactor_for(key).redact_json(body)
    assert key not in str(out) and key.upper() not in str(out) and key[3:12] not in str(out)
    assert out["id"] == "x" and out["n"] == 1 and REDACTED in str(out)
    untouched = {"choices": [{"message": {"content": "hello"}}]}
    assert redactor_for(key).redact_json(untouched) is untouched


def test_remembered_answers_keep_unchanged_parts_as_they_are() -> None:
    key = KEYS[0]
    for _ in range(3):  # the second and third parse hold equal strings that are other objects
        body = {"object": "".join(["chat.", "completion"]), "model": "".join(["echo-", "model-1"]),
                "echo": "".join(["x", key[1:20]])}
        out = redactor_for(key).redact_json(body)
        assert out is not body and out["object"] is body["object"] and out["model"] is body["model"]
        assert out["echo"] == "x" + REDACTED
        clean = {k: v for k, v in body.items() if k != "echo"}
        assert redactor_for(key).redact_json(clean) is clean
