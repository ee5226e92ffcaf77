"""BM25 over the ready chunks, through llama-index's BM25Retriever (bm25s underneath).

bm25s cannot add or delete documents in place, so the index is rebuilt from the manifest whenever
the set of ready chunks changes, written to a folder named by the manifest generation, and then
switched to by replacing one small pointer file: a reader or a crash never sees half an index.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

POINTER = "CURRENT"


def current_generation(bm25_dir: Path) -> int | None:
    try:
        return int((bm25_dir / POINTER).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def build(bm25_dir: Path, nodes: list, generation: int) -> None:
    """Index `nodes` and make them the current BM25 index (an empty list makes an empty index)."""
    bm25_dir.mkdir(parents=True, exist_ok=True)
    target = bm25_dir / str(generation)
    shutil.rmtree(target, ignore_errors=True)
    if nodes:
        from llama_index.retrievers.bm25 import BM25Retriever

        BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=10).persist(str(target), show_progress=False)
    else:
        target.mkdir()
    tmp = bm25_dir / f"{POINTER}.tmp"
    tmp.write_text(str(generation))
    os.replace(tmp, bm25_dir / POINTER)
    for old in bm25_dir.iterdir():  # older generations are garbage once the pointer moved
        if old.is_dir() and old.name != str(generation):
            shutil.rmtree(old, ignore_errors=True)


def load(bm25_dir: Path):
    """The current BM25Retriever, or None when the index is empty."""
    generation = current_generation(bm25_dir)
    folder = bm25_dir / str(generation)
    if generation is None or not any(folder.iterdir()):
        return None
    from llama_index.retrievers.bm25 import BM25Retriever

    return BM25Retriever.from_persist_dir(str(folder))
