"""Reader training rows shown as the agent shows passages to the model (`agent.focused_sources`).

`medassist finetune reader-data` (finetune/reader_data.py) builds rows with whole passages; the agent hands
the model only the lines the evidence reader scores best. This rewrites each row's passages the same way,
so that the reader is trained on what it will read. It lives here, not in finetune/, because it needs the
assistant's evidence reader and the index's embedder (finetune depends on nothing of ours).

An answerable row always keeps the lines that hold its answer (in place of the lowest-scored others, each
in the place its score gives it): the answer must stay copyable (at inference the evidence reader's best
lines hold the answer for most questions; where they do not, no reader could copy it). Its target and
reasoning line are unchanged: they name passage numbers, which are kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from assistant.agent import CITATION, FOCUS_UNITS, focused_sources
from assistant.evidence import EvidenceReader, contains
from assistant.grounding import split_sentences


def focus_row(row: dict, reader: EvidenceReader, keep: int = FOCUS_UNITS) -> dict:
    """One row (finetune/reader_data.py's shape) with each passage cut to the lines the model would read."""
    passages = [(s["number"], *_title_section(s["heading"]), s["text"]) for s in row["sources"]]
    scored = reader.scored(row["Question"], passages)  # no index here, so no rare words: drug names mark the subject
    answering = frozenset()  # indices of the oracle's units that hold the answer
    if row.get("oracle"):
        answer = split_sentences(CITATION.sub("", row["Response"]))
        answering = frozenset(i for i, (unit, _) in enumerate(scored)
                              if unit.n == row["oracle"] and any(contains(unit.text, s) for s in answer))
    sources = focused_sources(passages, scored, keep, always=answering)
    return {**row, "sources": [{"number": s.number, "heading": s.heading, "text": s.text} for s in sources]}


def focus_rows(source: Path, target: Path, reader: EvidenceReader, keep: int = FOCUS_UNITS,
               say: Callable[[str], None] = print) -> int:
    """Rewrite every row of the JSONL file `source` into `target` (replaced only once all rows are written);
    returns the number of rows."""
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with partial.open("w", encoding="utf-8") as out:
            for done, row in enumerate(rows, start=1):
                out.write(json.dumps(focus_row(row, reader, keep), ensure_ascii=False) + "\n")
                if done % 200 == 0 or done == len(rows):
                    say(f"{source.name}: {done}/{len(rows)} rows")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return len(rows)


def _title_section(heading: str) -> tuple[str, str]:
    """"Title > Section" as the agent's (title, section); a prose heading is a title alone."""
    title, _, section = heading.partition(" > ")
    return title, section
