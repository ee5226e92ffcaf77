"""What the HTTP API takes and gives, as pydantic models (they make the OpenAPI schema and validate input).

The `Answer` itself is the agent's dataclass (assistant/agent.py), served as is: one definition, not two.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from assistant.safety import MAX_QUESTION_CHARS  # the agent's own limit (the chat's box holds as much)
from corpus import ROUTES

Route = Literal[ROUTES]  # the tuple's strings, as if listed


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS, pattern=r"\S")
    route: Route | None = Field(None, description="Skip the router and use this route.")
    k: int | None = Field(None, ge=1, le=20, description="Passages to retrieve (the server's default when unset).")
    use_rag: bool = Field(True, description="False: a model-only answer, labelled unsourced.")
    stream: bool = Field(False, description="Server-sent events: route, sources, evidence, reasoning and answer "
                                            "pieces, then `final` with the checked Answer (or `error`).")


class PassageOut(BaseModel):
    chunk_id: str
    doc_id: str
    text: str
    title: str
    section: str
    source: str
    routes: list[str]
    page: int | None
    ingested_at: str | None
    score: float
    dense_score: float | None
    sparse_score: float | None


class DocumentOut(BaseModel):
    doc_id: str
    source: str
    title: str
    kind: str
    routes: list[str]
    updated: str | None
    reference: str | None
    n_chunks: int
    state: str
    ingested_at: str


class IngestResultOut(BaseModel):
    path: str = Field(description="The uploaded file's name.")
    status: Literal["added", "unchanged", "replaced", "failed", "skipped"]
    doc_id: str | None = None
    title: str | None = None
    chunks: int = 0
    reason: str | None = None


class IngestOut(BaseModel):
    results: list[IngestResultOut]
    counts: dict[str, int]


class RemovedOut(BaseModel):
    removed: list[DocumentOut]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    model: str | None = Field(description="The model that writes answers after the quotes; null: quotes only.")
    backend: str | None
    generates: bool
    auth: bool = Field(description="Whether requests to /v1 need an API key.")
    worker: int = Field(description="The answering process's id (one per `--workers`).")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    fields: list[dict[str, str]] | None = Field(None, description="Each invalid field and why (422 only).")


class ErrorOut(BaseModel):
    """The OpenAI API's error shape, for every error, so OpenAI clients show our message."""

    error: ErrorDetail


# --- the OpenAI-compatible part ---------------------------------------------------------------------
class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    # OpenAI clients send many settings (temperature, max_tokens, user, ...): accepted, and the server's own used,
    # since the answer must stay the checked, cited one.
    model_config = ConfigDict(extra="allow")

    model: str = "medassist"
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
