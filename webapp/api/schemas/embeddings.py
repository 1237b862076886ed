"""POST /v1/embeddings: OpenAI's embeddings request and answer, declared once."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from webapp.api.schemas import V1Body, V1Object
from webapp.api.schemas.responses import ModelName

MAX_INPUTS = 2048  # OpenAI's own bound on one request
MAX_INPUT_CHARS = 200_000  # one text; the model's window bounds the whole request's tokens on top
MAX_TOKEN_ID = 2**31 - 1

TokenId = Annotated[int, Field(ge=0, le=MAX_TOKEN_ID)]
Tokens = Annotated[list[TokenId], Field(min_length=1, max_length=MAX_INPUT_CHARS)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_INPUT_CHARS)]


class EmbeddingsRequest(V1Body):
    """Fields not declared here pass through to the provider untouched."""

    model: ModelName
    input: (Text | Annotated[list[Text], Field(min_length=1, max_length=MAX_INPUTS)] | Tokens
            | Annotated[list[Tokens], Field(min_length=1, max_length=MAX_INPUTS)]) = Field(
        description="A text, texts, a token array or token arrays. Member mode bills input tokens at the model's "
                    "input rate x multiplier.")
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Field(ge=1, le=65_536)] | None = None
    user: str | None = None


class Embedding(V1Object):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 with encoding_format base64.")


class EmbeddingsUsage(V1Object):
    prompt_tokens: int
    total_tokens: int
    switchboard_estimated: bool | None = None


class EmbeddingList(V1Object):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingsUsage


DECLARED = (EmbeddingsRequest, EmbeddingList)
