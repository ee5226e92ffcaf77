"""The types every package shares: a loaded `Document`, its `Section`s, and the `Chunk`s cut from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROUTES = ("diagnosis", "treatment", "medication", "general")
STARTER_DIR = Path(__file__).parent / "starter"


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path (or one PDF page).

    `title`, `source` and `routes` override the document's own when one file holds many
    independent items, e.g. a MedQuAD JSONL line whose answer has its own URL and route.
    """

    path: tuple[str, ...]
    text: str
    page: int | None = None
    title: str | None = None
    source: str | None = None
    routes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Document:
    doc_id: str  # sha256 of the file's bytes (and of a --route override): the content's identity
    source: str  # absolute path, or URL for public-source items
    title: str
    kind: str  # markdown, text, pdf, html, docx, medquad, openfda
    routes: tuple[str, ...]
    sections: list[Section] = field(default_factory=list)
    updated: str | None = None
    reference: str | None = None  # where the content originally comes from (front matter `source:`)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document small enough for the embedder, with everything a citation needs."""

    chunk_id: str
    doc_id: str
    text: str
    title: str
    section: str  # heading path joined with " > "
    source: str
    routes: tuple[str, ...]
    page: int | None = None
    ingested_at: str | None = None  # set by the index when the chunk is stored

    @property
    def heading(self) -> str:
        """What is embedded in front of the text, so a chunk keeps its context ("Warfarin > Interactions")."""
        return f"{self.title} > {self.section}" if self.section else self.title
