"""OpenAI-compatible chat: request and response models, and how an answer becomes a chat message.

The message text is the answer with its `[n]` markers followed by a "Sources:" list; the same
citations are in the `meshrag` extension field (on the completion, and on the last stream chunk).
"""

from __future__ import annotations

import re
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import OUTCOME_DESCRIPTION, Classification, Strict
from retrieval.pipeline import AskResult, ProductFacts
from retrieval.types import Citation, Outcome, ShortAnswer

MAX_MESSAGES = 100
MAX_MESSAGE_CHARS = 100_000


def model_id(answerer: str) -> str:
    return f"meshrag-{answerer}"


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    type: str = Field(description="`text` parts are read; other kinds are ignored.")
    text: str | None = Field(None, max_length=MAX_MESSAGE_CHARS)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = Field(None, description="Text, or a list of content parts.")
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.type == "text" and p.text)
        return ""


class ChatOptions(Strict):
    """meshrag's own options (pass as `extra_body={"meshrag": {...}}` with the openai client)."""

    k: int | None = Field(None, ge=1, description="Chunks the answerer sees (at most MESHRAG_MAX_K).")
    release: str = Field("current", min_length=1, max_length=200)
    products: list[str] | None = Field(
        None, description="Only these products (at most MESHRAG_MAX_PRODUCTS)."
    )
    domains: list[str] | None = None
    classifications: list[Classification] | None = None
    as_of: str | None = Field(None, description="YYYY-MM-DD: each product at the version current on that date.")


class ChatCompletionRequest(BaseModel):
    """The OpenAI chat completions request. Sampling fields (temperature, max_tokens, …) are accepted
    and ignored: answers are extractive and deterministic."""

    model_config = ConfigDict(
        extra="allow",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "model": "meshrag-extractive",
                    "messages": [
                        {"role": "user", "content": "Who owns the mesh handbook?"},
                        {"role": "assistant", "content": "Marguerite Okafor of Data Platform owns it [1]."},
                        {"role": "user", "content": "How fresh is it?"},
                    ],
                }
            ]
        },
    )

    model: str = Field(description="The model id from GET /v1/models.", max_length=200)
    messages: list[ChatMessage] = Field(
        min_length=1,
        max_length=MAX_MESSAGES,
        description="The conversation; the last message must be the user's question.",
    )
    stream: bool = Field(
        False, description="Stream chunks in the OpenAI SSE format, ending with `data: [DONE]`."
    )
    n: int | None = Field(None, ge=1, le=1, description="Only one choice is produced.")
    meshrag: ChatOptions | None = Field(None, description="Filters and k for retrieval.")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class MeshragExtension(BaseModel):
    request_id: str = Field(description="Names the provenance record: GET /v1/provenance/{request_id}.")
    release_id: str
    question: str = Field(
        description="The standalone question that was answered (after the follow-up rewrite)."
    )
    rewritten: bool
    rewrite_rule: str = Field(description="none, connector, pronoun or short (see README).")
    outcome: Outcome = Field(description=OUTCOME_DESCRIPTION)
    abstained: bool
    short: ShortAnswer | None = Field(
        None, description="Answered who / when / how many / how much / where questions: the answering phrase, "
        "with its span in the text of citation `marker`."
    )
    citations: list[Citation]
    products: list[ProductFacts]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    meshrag: MeshragExtension


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    meshrag: MeshragExtension | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "meshrag"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# ------------------------------------------------------------------------------------ formatting
def source_line(c: Citation) -> str:
    section = " > ".join(c.heading_path)
    where = f"{c.document} § {section}" if section else c.document
    return f"[{c.marker}] {c.product_id} v{c.product_version} — {where} (chars {c.start}–{c.end})"


def message_text(result: AskResult) -> str:
    """The answer with markers, then one "Sources:" line per citation."""
    answer = result.answer
    if not answer.citations:
        return answer.text
    return answer.text + "\n\nSources:\n" + "\n".join(source_line(c) for c in answer.citations)


def extension(result: AskResult, rewritten: bool, rule: str) -> MeshragExtension:
    return MeshragExtension(
        request_id=result.request_id,
        release_id=result.search.release_id,
        question=result.answer.question,
        rewritten=rewritten,
        rewrite_rule=rule,
        outcome=result.answer.outcome,
        abstained=result.answer.abstained,
        short=result.answer.short,
        citations=list(result.answer.citations),
        products=list(result.products),
    )


def completion(result: AskResult, model: str, ext: MeshragExtension) -> ChatCompletion:
    return ChatCompletion(
        id=f"chatcmpl-{result.request_id}",
        created=int(time.time()),
        model=model,
        choices=[Choice(message=AssistantMessage(content=message_text(result)))],
        meshrag=ext,
    )


_PIECE_END = re.compile(r"(?<=[.!?\n])(?=\s)")


def stream_chunks(result: AskResult, model: str, ext: MeshragExtension) -> list[ChatCompletionChunk]:
    """The completion as chunks: the role, then the text a sentence (or line) at a time — the deltas
    concatenate to exactly the non-streamed message — then an empty delta with `finish_reason` and the
    extension."""
    base: dict[str, Any] = {
        "id": f"chatcmpl-{result.request_id}",
        "created": int(time.time()),
        "model": model,
    }
    chunks = [ChatCompletionChunk(**base, choices=[ChunkChoice(delta=Delta(role="assistant", content=""))])]
    for piece in _PIECE_END.split(message_text(result)):
        if piece:
            chunks.append(ChatCompletionChunk(**base, choices=[ChunkChoice(delta=Delta(content=piece))]))
    chunks.append(
        ChatCompletionChunk(**base, choices=[ChunkChoice(delta=Delta(), finish_reason="stop")], meshrag=ext)
    )
    return chunks
