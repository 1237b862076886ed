"""Provider adapters. `get_adapter(api_style)` returns the shared adapter for a wire format."""

from __future__ import annotations

from webapp.providers.anthropic import AnthropicAdapter
from webapp.providers.base import Adapter, Target, UpstreamFailure, UpstreamStream
from webapp.providers.openai_compat import OpenAICompatAdapter

# Adapters hold no per-request state, so one instance per style is shared by every thread.
_ADAPTERS: dict[str, Adapter] = {
    "openai": OpenAICompatAdapter(),
    "anthropic": AnthropicAdapter(),
}

API_STYLES = tuple(_ADAPTERS)


def get_adapter(api_style: str) -> Adapter:
    """The shared adapter for `api_style` ("openai" or "anthropic"); ValueError for anything else."""
    try:
        return _ADAPTERS[api_style]
    except KeyError:
        raise ValueError(f"unknown api_style {api_style!r}; expected one of {', '.join(API_STYLES)}") from None


__all__ = ["API_STYLES", "Adapter", "Target", "UpstreamFailure", "UpstreamStream", "get_adapter"]
