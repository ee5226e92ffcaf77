"""BM25 over the ready chunks, through llama-index's BM25Retriever (bm25s underneath).

bm25s cannot add or delete documents in place, so the index is rebuilt from the manifest whenever
the set of ready chunks changes, written to a folder named by the manifest generation, and then
switched to by replacing one small pointer file: a reader or a crash never sees half an index.
The folder and the pointer are fsynced before and after the switch, so a power cut cannot leave the
pointer naming files that never reached the disk. Older folders are deleted once the pointer moved; a
reader in another process may be loading one of them just then, so `load` follows the pointer again.
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
    for file in target.iterdir():
        _fsync(file)
    _fsync(target)
    tmp = bm25_dir / f"{POINTER}.tmp"
    tmp.write_text(str(generation))
    _fsync(tmp)
    os.replace(tmp, bm25_dir / POINTER)
    _fsync(bm25_dir)  # the rename itself
    for old in bm25_dir.iterdir():  # older generations are garbage once the pointer moved
        if old.is_dir() and old.name != str(generation):
            shutil.rmtree(old, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(bm25_dir: Path, attempts: int = 5):
    """The current BM25Retriever, or None when the index is empty."""
    for attempt in range(attempts):
        generation = current_generation(bm25_dir)
        if generation is None:
            return None
        try:
            return _load(bm25_dir / str(generation))
        except Exception:
            # A writer in another process collected this generation while we read it: take the one it published.
            if current_generation(bm25_dir) == generation or attempt == attempts - 1:
                raise


def _load(folder: Path):
    if not any(folder.iterdir()):
        return None
    from llama_index.retrievers.bm25 import BM25Retriever

    return BM25Retriever.from_persist_dir(str(folder))
