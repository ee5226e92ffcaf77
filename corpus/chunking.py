"""Section-aware chunking: headings (done by the loaders) first, then sentences, with overlap.

Sizes are counted in the embedder's own word pieces, because all-MiniLM-L6-v2 reads 256 of them
(special tokens included) and silently drops the rest. What gets embedded is the chunk's heading
plus its text (`Chunk.heading`, a blank line, `Chunk.text`), so the heading is part of the budget.
"""

from __future__ import annotations

from typing import Callable

from corpus.models import Chunk, Document

Tokenize = Callable[[str], list]  # text -> word pieces, without special tokens

MAX_TOKENS = 256  # the embedder's window
SPECIAL_TOKENS = 2  # [CLS] and [SEP]
TARGET_TOKENS = 200  # heading + text; leaves room so the overlap never pushes a chunk past the window
OVERLAP_TOKENS = 32
_MAX_HEADING_CHARS = 120  # a heading longer than this (a pasted paragraph as a title) is cut, not embedded whole


def embedded_text(heading: str, text: str) -> str:
    """The exact string the embedder sees for a chunk; the index builds its nodes with it too."""
    return f"{heading}\n\n{text}"


def chunk_document(doc: Document, tokenize: Tokenize, target_tokens: int = TARGET_TOKENS,
                   overlap_tokens: int = OVERLAP_TOKENS, max_tokens: int = MAX_TOKENS) -> list[Chunk]:
    """Cut every section of `doc` into chunks whose embedded text fits `max_tokens`."""
    from llama_index.core.node_parser import SentenceSplitter

    splitters: dict[int, SentenceSplitter] = {}  # one per budget; building one costs a little
    chunks: list[Chunk] = []
    for section in doc.sections:
        template = Chunk("", doc.doc_id, "", _heading_part(section.title or doc.title),
                         _heading_part(" > ".join(section.path)), section.source or doc.source,
                         section.routes or doc.routes, section.page)

        def fits(text: str, limit: int) -> bool:
            return len(tokenize(embedded_text(template.heading, text))) + SPECIAL_TOKENS <= limit

        def split_to_fit(text: str, budget: int) -> list[str]:
            if budget not in splitters:
                splitters[budget] = SentenceSplitter(chunk_size=budget, tokenizer=tokenize,
                                                     chunk_overlap=min(overlap_tokens, budget // 4))
            parts = []
            for part in splitters[budget].split_text(text):
                # The splitter counts pieces before joining them; re-tokenised joins can come out a
                # few pieces longer, so a part that still overflows is split again, tighter.
                parts.extend([part] if fits(part, max_tokens) or budget <= 16 else split_to_fit(part, budget - 16))
            return parts

        heading_tokens = len(tokenize(embedded_text(template.heading, "")))
        budget = max(16, min(target_tokens, max_tokens - SPECIAL_TOKENS) - heading_tokens)
        pieces = [section.text] if fits(section.text, target_tokens) else split_to_fit(section.text, budget)
        chunks.extend(_with_text(template, piece) for piece in pieces if piece.strip())
    return [Chunk(f"{doc.doc_id[:16]}:{i:05d}", c.doc_id, c.text, c.title, c.section, c.source, c.routes, c.page)
            for i, c in enumerate(chunks)]


def _heading_part(text: str) -> str:
    """One line, capped, with no edge whitespace (llama-index strips it, and the embedded text must match)."""
    return " ".join(text.split())[:_MAX_HEADING_CHARS].strip()


def _with_text(template: Chunk, text: str) -> Chunk:
    return Chunk("", template.doc_id, text.strip(), template.title, template.section,
                 template.source, template.routes, template.page)
