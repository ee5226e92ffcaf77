"""BM25 over the ready chunks: a large base index and a small delta of what was added since, searched as one.

bm25s cannot add or delete documents in place, and rebuilding over the whole corpus on every ingest grew
with it (5.2 s at 36k chunks for a one-file ingest). So the index has two parts, each an ordinary bm25s
index saved by llama-index's BM25Retriever:
  * the base, built from every ready chunk now and then, and never changed after (folder `base-<generation>`,
    with `chunk_ids.json` listing what it holds);
  * the delta, rebuilt on every change from the ready chunks the base lacks (small: tens of chunks for a
    typical ingest).
Removed chunks stay in the base until the next rebuild; searches never cite them, because every candidate
is checked against the manifest's ready chunks (index/fusion.py, ReadyOnlyRetriever), and the retriever masks
them out of BM25's own ranking (`mask`). The writer rebuilds the base once the delta plus the removed chunks
exceed DELTA_SHARE of it (below MIN_BASE chunks it always does: small indexes rebuild in a blink), so the
work over a growing corpus is amortised: each chunk is indexed a bounded number of times on average.

Scores: both parts are scored with the statistics of the whole (the document frequency of a word and the
number of chunks summed over base and delta), by rescaling each part's precomputed per-word scores by the
ratio of the global to the part's IDF, so a word rare in the base but common in a fresh delta ranks as it
would in one index. The length normalisation keeps each part's own average chunk length (chunks are capped
at the embedder's 256 word pieces, so the averages differ little). With an empty delta the scores are
exactly bm25s's. Removed chunks still in the base count in the statistics until the next rebuild, as in
Lucene's segments.

Switching is all-or-nothing, as before: a generation folder names its base (`BASE`) and holds its delta;
it is written and fsynced, then one small pointer file (`CURRENT`) is replaced. A reader or a crash never
sees half an index. Folders the pointer no longer reaches are deleted once it moved; a reader in another
process may be loading one just then, so `load` follows the pointer again.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

POINTER = "CURRENT"
DELTA_SHARE = 0.1  # rebuild the base when delta + removed chunks exceed this share of it
MIN_BASE = 5000  # below this many chunks the base is always rebuilt (~0.5 s here): exact and simple
IDS = "chunk_ids.json"


def current_generation(bm25_dir: Path) -> int | None:
    try:
        return int((bm25_dir / POINTER).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def base_ids(bm25_dir: Path) -> set[str] | None:
    """The chunk ids the current base holds, or None when there is no base to add a delta to."""
    generation = current_generation(bm25_dir)
    try:
        base = (bm25_dir / str(generation) / "BASE").read_text().strip()
        return set(json.loads((bm25_dir / base / IDS).read_text()))
    except (FileNotFoundError, ValueError):  # no index yet, or one written before the base/delta layout
        return None


def build(bm25_dir: Path, nodes: list, generation: int) -> None:
    """Index `nodes` as a new base with an empty delta, and make it current (an empty list: an empty index)."""
    bm25_dir.mkdir(parents=True, exist_ok=True)
    base = f"base-{generation}"
    _persist(bm25_dir / base, nodes)
    (bm25_dir / base / IDS).write_text(json.dumps([node.node_id for node in nodes]))
    _fsync_folder(bm25_dir / base)
    _publish(bm25_dir, generation, base, [])


def build_delta(bm25_dir: Path, nodes: list, generation: int) -> None:
    """Make the current base plus a delta of `nodes` (the ready chunks the base lacks) the current index."""
    base = (bm25_dir / str(current_generation(bm25_dir)) / "BASE").read_text().strip()
    _publish(bm25_dir, generation, base, nodes)


def _publish(bm25_dir: Path, generation: int, base: str, delta_nodes: list) -> None:
    target = bm25_dir / str(generation)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    _persist(target / "delta", delta_nodes)
    _fsync_folder(target / "delta")
    (target / "BASE").write_text(base)
    _fsync_folder(target)
    tmp = bm25_dir / f"{POINTER}.tmp"
    tmp.write_text(str(generation))
    _fsync(tmp)
    os.replace(tmp, bm25_dir / POINTER)
    _fsync(bm25_dir)  # the rename itself
    for old in bm25_dir.iterdir():  # what the pointer no longer reaches is garbage once it moved
        if old.is_dir() and old.name not in (str(generation), base):
            shutil.rmtree(old, ignore_errors=True)


def _persist(folder: Path, nodes: list) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    if nodes:
        from llama_index.retrievers.bm25 import BM25Retriever

        BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=10).persist(str(folder), show_progress=False)
    else:
        folder.mkdir()


def _fsync_folder(folder: Path) -> None:
    for file in folder.iterdir():
        if file.is_file():
            _fsync(file)
    _fsync(folder)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(bm25_dir: Path, attempts: int = 5, previous: SparseIndex | None = None) -> SparseIndex | None:
    """The current index, or None when it is empty. The base of `previous` (the index loaded before) is reused
    when it is still the current one: after a small ingest only the delta is read."""
    for attempt in range(attempts):
        generation = current_generation(bm25_dir)
        if generation is None:
            return None
        try:
            return _load(bm25_dir, bm25_dir / str(generation), previous)
        except Exception:
            # A writer in another process collected this generation while we read it: take the one it published.
            if current_generation(bm25_dir) == generation or attempt == attempts - 1:
                raise


def _load(bm25_dir: Path, folder: Path, previous: SparseIndex | None) -> SparseIndex | None:
    if not (folder / "BASE").exists():  # written before the base/delta layout: the folder is the whole index
        return SparseIndex.of(folder.name, _load_part(folder), None)
    base = (folder / "BASE").read_text().strip()
    reuse = previous is not None and previous.base_name == base
    return SparseIndex.of(base, previous.base if reuse else _load_part(bm25_dir / base), _load_part(folder / "delta"))


def _load_part(folder: Path):
    if not any(path.name != IDS for path in folder.iterdir()):
        return None
    from llama_index.retrievers.bm25 import BM25Retriever

    return BM25Retriever.from_persist_dir(str(folder))


def _idf(df, n):
    """bm25s's default ("lucene") inverse document frequency."""
    return np.log(1 + (n - df + 0.5) / (df + 0.5))


class SparseIndex:
    """The base and delta BM25 indexes searched as one (see the module docstring for how scores are merged).
    Chunks are numbered base first; `node_ids[i]` is chunk i's id."""

    def __init__(self, base_name: str, base, delta):
        """`base`, `delta`: llama-index BM25Retrievers (None when empty); `base_name` is the base's folder."""
        self.base_name, self.base = base_name, base
        self.parts = [part for part in (base, delta) if part is not None]
        self.stemmer = self.parts[0].stemmer
        self.corpus = [row for part in self.parts for row in part.corpus]
        self.node_ids = [row["node_id"] for row in self.corpus]
        self.offsets = np.cumsum([0, *(int(part.bm25.scores["num_docs"]) for part in self.parts)])
        self.num_docs = int(self.offsets[-1])
        self._vocab: set[str] | None = None

    @classmethod
    def of(cls, base_name: str, base, delta) -> SparseIndex | None:
        """The index, or None when both parts are empty."""
        return cls(base_name, base, delta) if base is not None or delta is not None else None

    def tokens(self, text: str) -> list[str]:
        """`text`'s words as BM25 sees them: lower case, English stop words out, stemmed."""
        import bm25s

        return bm25s.tokenize(text, stopwords="en", stemmer=self.stemmer, return_ids=False, show_progress=False)[0]

    def frequency(self, stem: str) -> int:
        """How many indexed chunks hold `stem` (removed chunks still in the base included)."""
        return sum(self._df(part, stem) for part in self.parts)

    @property
    def vocab(self) -> set[str]:
        if self._vocab is None:
            self._vocab = set().union(*(part.bm25.vocab_dict for part in self.parts))
        return self._vocab

    @staticmethod
    def _df(part, stem: str) -> int:
        token = part.bm25.vocab_dict.get(stem)
        if token is None:
            return 0
        indptr = part.bm25.scores["indptr"]
        return int(indptr[token + 1] - indptr[token])

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk for `query`, with the statistics of base and delta together."""
        total = np.zeros(self.num_docs, dtype=np.float32)
        for stem in self.tokens(query):
            dfs = [self._df(part, stem) for part in self.parts]
            if not any(dfs):
                continue
            overall = _idf(sum(dfs), self.num_docs)
            for part, df, start in zip(self.parts, dfs, self.offsets):
                if df:
                    token, scores = part.bm25.vocab_dict[stem], part.bm25.scores
                    begin, end = scores["indptr"][token], scores["indptr"][token + 1]
                    # bm25s stored idf_part * tf-part per (word, chunk); swap in the overall idf.
                    np.add.at(total, start + scores["indices"][begin:end],
                              scores["data"][begin:end] * (overall / _idf(df, part.bm25.scores["num_docs"])))
        return total

    def search(self, query: str, k: int, mask: np.ndarray | None = None) -> list[tuple[str, float]]:
        """The top `k` (chunk id, score) with a positive score; `mask` (bool per chunk) keeps only some chunks."""
        scores = self.scores(query)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        k = min(k, self.num_docs)
        top = np.argpartition(-scores, k - 1)[:k] if k < self.num_docs else np.arange(self.num_docs)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.node_ids[i], float(scores[i])) for i in top if scores[i] > 0]

    def mask(self, keep) -> np.ndarray:
        """A bool per chunk: `keep(corpus row)`; rows carry the chunk's metadata (`route_<name>`: 1) and node_id."""
        return np.fromiter((bool(keep(row)) for row in self.corpus), dtype=bool, count=self.num_docs)

