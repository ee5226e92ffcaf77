"""Section-aware chunking: headings (done by the loaders) first, then sentences, with overlap.

Sizes are counted in the embedder's own word pieces, because all-MiniLM-L6-v2 reads 256 of them
(special tokens included) and silently drops the rest. What gets embedded is the chunk's heading
plus its text (`Chunk.heading`, a blank line, `Chunk.text`), so the heading is part of the budget.

A chunk that starts inside a list or a table is read without the lines above it, in the chunk before: the list's
lead-in ("**Blood pressure:**" over "- Keep it below 180/105 mmHg for 24 hours.") or the table's header row. Those
lines are carried to the top of the chunk (`carried_lines`), so the chunk says what its items and rows are about to
the embedder, to BM25, and in every quote and source shown. llama-index's splitter knows sentences, not Markdown
lists and tables, so this is ours.
"""

from __future__ import annotations

import re
from typing import Callable

from corpus.models import Chunk, Document

Tokenize = Callable[[str], list]  # text -> word pieces, without special tokens

MAX_TOKENS = 256  # the embedder's window
SPECIAL_TOKENS = 2  # [CLS] and [SEP]
TARGET_TOKENS = 200  # heading + text; leaves room so the overlap never pushes a chunk past the window
OVERLAP_TOKENS = 32
_MAX_HEADING_CHARS = 120  # a heading longer than this (a pasted paragraph as a title) is cut, not embedded whole

LIST_MARK = re.compile(r"^(?:[-•*]|\d{1,2}[.)])\s+")  # a list item's marker: "- ", "• ", "2. ", "3) "
TABLE_RULE = re.compile(r"^\|?[\s:|-]+\|?$")  # a Markdown table's header rule: |---|:---:|


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
        at = 0
        for piece in (part.strip() for part in pieces if part.strip()):
            found = section.text.find(piece, at)  # the splitter returns pieces of the text, in order
            at = max(at, found + 1)
            line_start = section.text.rfind("\n", 0, max(found, 0)) + 1
            before_on_its_line = section.text[line_start:found]
            if found > 0 and (not before_on_its_line.strip() or before_on_its_line.lstrip().startswith("|")):
                # It starts a line (with its indent, which nests an item) or a table row: the row is taken whole.
                whole = before_on_its_line + piece
                carried = carried_lines(section.text[:line_start].splitlines(), whole.splitlines()[0])
                with_context = "\n".join([*carried, whole])
                # The room TARGET_TOKENS leaves holds them; a chunk they would push past the window goes without.
                piece = with_context if carried and fits(with_context, max_tokens) else piece
            chunks.append(_with_text(template, piece))
    return [Chunk(f"{doc.doc_id[:16]}:{i:05d}", c.doc_id, c.text, c.title, c.section, c.source, c.routes, c.page)
            for i, c in enumerate(chunks)]


def carried_lines(above: list[str], first: str) -> list[str]:
    """The lines above a chunk that its `first` line reads on from, given the section's lines above it: the table's
    header row and rule when it starts in a table; when it starts in a list, the items it is nested under and the
    list's lead-in ("Blood pressure:" or "**If the person is unconscious**", as `assistant.evidence.units` reads a
    list; a sentence above a list is no lead-in). A blank line between items ends a list, as it does there."""
    if first.lstrip().startswith("|"):
        top = len(above)
        while top and above[top - 1].lstrip().startswith("|"):
            top -= 1
        header = above[top:top + 2]
        return header if len(header) == 2 and TABLE_RULE.match(header[1].strip()) else []
    if not LIST_MARK.match(first.lstrip()):
        return []
    carried, indent, blank = [], indent_of(first), False
    for line in reversed(above):
        if not line.strip():
            blank = True
        elif not LIST_MARK.match(line.strip()):  # the line that opens the list
            return [line, *carried] if leads_a_list(line) else carried
        elif blank:
            return carried
        elif indent_of(line) < indent:  # an item the chunk's items are nested under
            carried, indent = [line, *carried], indent_of(line)
    return carried


def leads_a_list(line: str) -> bool:
    """Whether a line above a list is its lead-in ("Blood pressure:", "**If the person is unconscious**"), not a
    sentence or a heading."""
    return not line.lstrip().startswith("#") and not line.rstrip("*_ ").endswith((".", "!", "?"))


def indent_of(line: str) -> int:
    """How far a line is indented (an item's nesting depth in a list)."""
    return len(line) - len(line.lstrip())


def _heading_part(text: str) -> str:
    """One line, capped, with no edge whitespace (llama-index strips it, and the embedded text must match)."""
    return " ".join(text.split())[:_MAX_HEADING_CHARS].strip()


def _with_text(template: Chunk, text: str) -> Chunk:
    return Chunk("", template.doc_id, text.strip(), template.title, template.section,
                 template.source, template.routes, template.page)
