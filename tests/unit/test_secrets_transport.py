"""BYOK base URLs (Target.allow_private False): the host is resolved once, every address is checked, and the
connection goes to the checked address (pinned) with the host name kept for the Host header; a refused address
answers the same whether its port is open or closed; a resolution error fails closed. Real loopback servers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from urllib3.connectionpool import HTTPConnectionPool

from tests.support.upstreams import OpenAIUpstream, start_openai_upstream
from webapp.providers import get_adapter, transport
from webapp.providers.base import Target, UpstreamFailure
from webapp.providers.transport import pinned_addresses

PUBLIC = "93.184.216.34"
PUBLIC6 = "2606:2800:220:1:248:1893:25c8:1946"


@pytest.fixture()
def oai() -> Iterator[OpenAIUpstream]:
    up = start_openai_upstream()
    yield up
    up.stop()


def chat() -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


def failure_of(tgt: Target) -> UpstreamFailure:
    with pytest.raises(UpstreamFailure) as caught:
        get_adapter("openai").complete(tgt, chat())
    return caught.value


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the pinning function, with an injected resolver -------------------------------------------------------------

def test_pinning_returns_the_checked_public_addresses_once_each() -> None:
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return [PUBLIC, PUBLIC6, PUBLIC]

    assert pinned_addresses("llm.example.test", 443, resolve) == [PUBLIC, PUBLIC6]
    assert calls == ["llm.example.test"]  # one lookup: what is connected to is what was checked


@pytest.mark.parametrize("bad", ["127.0.0.1", "10.0.0.5", "169.254.169.254", "::1", "::ffff:127.0.0.1",
                                 "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "fe80::1%eth0", "224.0.0.1",
                                 "100.64.0.1", "0.0.0.0", "fd00::1", "240.0.0.1"])  # noqa: S104
def test_pinning_refuses_when_any_address_is_not_public(bad: str) -> None:
    with pytest.raises(UpstreamFailure) as caught:
        pinned_addresses("llm.example.test", 443, lambda host, port: [PUBLIC, bad])
    assert (caught.value.kind, caught.value.retryable) == ("blocked_address", False)
    assert bad.split("%")[0] not in caught.value.message  # the internal address is not revealed


@pytest.mark.parametrize("answer", [socket.gaierror("no such host"), OSError("resolver down"), []])
def test_pinning_fails_closed_when_resolution_fails(answer: Any) -> None:
    def resolve(host: str, port: int) -> list[str]:
        if isinstance(answer, Exception):
            raise answer
        return answer

    with pytest.raises(UpstreamFailure) as caught:
        pinned_addresses("llm.example.test", 443, resolve)
    assert caught.value.kind == "connect"
    assert "could not resolve" in caught.value.message


# -- the guarded connection ---------------------------------------------------------------------------------------

class _LoopbackNamed(transport._GuardedHTTPConnection):
    """The guarded connection with its seams set: a made-up name resolves to 127.0.0.1 (the first answer) and
    then to something else (a rebinding DNS), and the policy admits loopback, so the test can see where it
    connects."""

    answers: ClassVar[list[list[str]]] = []
    resolve = staticmethod(lambda host, port: _LoopbackNamed.answers.pop(0))
    allowed = staticmethod(lambda ip: ip == "127.0.0.1")


def test_connection_goes_to_the_pinned_address_and_keeps_the_host_name(oai: OpenAIUpstream) -> None:
    _LoopbackNamed.answers = [["127.0.0.1"], ["10.0.0.1"]]
    pool = HTTPConnectionPool("llm.example.test", oai.port, maxsize=1)
    pool.ConnectionCls = _LoopbackNamed
    resp = pool.request("GET", "/v1/models", headers={"Authorization": "Bearer x"})
    assert resp.status == 200
    assert oai.requests[-1].headers["host"] == f"llm.example.test:{oai.port}"
    assert _LoopbackNamed.answers == [["10.0.0.1"]]  # resolved once; the rebound answer was never asked for
    pool.close()


def test_refused_address_answers_the_same_for_an_open_and_a_closed_port(oai: OpenAIUpstream) -> None:
    def attempt(port: int) -> tuple[Any, ...]:
        tgt = Target("byok", "openai", f"http://127.0.0.1:{port}/v1", "sk-user-key-123456", allow_private=False)
        exc = failure_of(tgt)
        return exc.kind, exc.message.replace(str(port), "PORT"), exc.status, exc.retryable, exc.error_body

    assert attempt(oai.port) == attempt(closed_port())
    assert attempt(oai.port)[0] == "blocked_address"
    assert oai.requests == []  # no connection was even tried on the open port


def test_unresolvable_byok_host_fails_closed_with_a_clear_error() -> None:
    exc = failure_of(Target("byok", "openai", "http://no-such-host.invalid/v1", "k", allow_private=False))
    assert exc.kind == "connect" and "could not resolve" in exc.message


def test_admin_target_on_loopback_still_works(oai: OpenAIUpstream) -> None:
    tgt = Target("ollama", "openai", oai.base_url, None, allow_private=True)
    assert get_adapter("openai").complete(tgt, chat())["choices"]
    assert get_adapter("openai").list_models(tgt)


def test_ip_literal_public_check_end_to_end_connects_to_that_literal(oai: OpenAIUpstream) -> None:
    """An IP literal is its own (single) answer: a loopback literal is refused before any connection, and the
    same server is reachable when the target allows private addresses."""
    url = f"http://127.0.0.1:{oai.port}/v1"
    assert failure_of(Target("byok", "openai", url, "k", allow_private=False)).kind == "blocked_address"
    assert oai.requests == []
    assert get_adapter("openai").complete(Target("byok", "openai", url, "k", allow_private=True), chat())
    assert len(oai.requests) == 1
