"""The provider adapter contract. Adapters speak one wire format and know nothing of users, credits or Flask."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Target:
    """Where and how to send one request. `api_key` is never logged, never put in an error or a repr."""

    provider: str  # provider slug, e.g. "openai"
    api_style: str  # "openai" or "anthropic"
    base_url: str  # e.g. "https://api.openai.com/v1" (no trailing slash needed)
    api_key: str | None = field(default=None, repr=False)
    # False for user-supplied base URLs: the transport refuses to connect to a private, loopback, link-local,
    # multicast, reserved or metadata address (checked on the connected socket, IPv4-mapped IPv6 included).
    allow_private: bool = True
    connect_timeout: float = 5.0
    read_timeout: float = 120.0
    # Headers the provider needs on every request (an Azure api-version, OpenRouter's HTTP-Referer), set by the
    # admin and validated there: never an auth, hop-by-hop or framing header. Not secrets, but kept out of reprs.
    extra_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)


def with_extra_headers(target: Target, headers: dict[str, str]) -> dict[str, str]:
    """The adapter's own headers plus the provider's extra ones; the adapter's win on a clash (the admin's
    validation already refuses the names an adapter sets, this only keeps it so if a row was written by hand)."""
    own = {name.lower() for name in headers}
    return {**{n: v for n, v in target.extra_headers if n.lower() not in own}, **headers}


class UpstreamFailure(Exception):
    """The upstream could not serve the request. `retryable` is true for connect errors, timeouts, 429 and 5xx,
    i.e. the cases where the gateway may fall back to the next route. The message never contains a key."""

    def __init__(self, kind: str, message: str, *, status: int | None = None, retryable: bool = False,
                 error_body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.kind = kind  # "connect", "timeout", "status", "protocol", "blocked_address"
        self.message = message
        self.status = status
        self.retryable = retryable
        self.error_body = error_body


class UpstreamStream:
    """An opened streaming response. Iterate for OpenAI `chat.completion.chunk` dicts, as they arrive.
    Iteration raises UpstreamFailure(kind="protocol"/"timeout") if the stream breaks midway. Always close()."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class Adapter(ABC):
    @abstractmethod
    def complete(self, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        """Send an OpenAI-style chat request (stream false); return an OpenAI `chat.completion` dict."""

    @abstractmethod
    def open_stream(self, target: Target, body: dict[str, Any]) -> UpstreamStream:
        """Send an OpenAI-style chat request with stream true. Returns once the upstream answered 2xx (so a
        failure here happens before any byte reaches the client); raises UpstreamFailure otherwise."""

    @abstractmethod
    def list_models(self, target: Target) -> list[str]:
        """The model ids the key can use (a cheap call used to test a key and to fetch a provider's models).
        At most MAX_MODEL_LIST_BYTES of answer are read."""


MAX_MODEL_LIST_BYTES = 4 * 1024 * 1024  # a model list is a few hundred KB at most; more is a hostile upstream
