"""Hybrid retrieval: dense (Chroma) and sparse (BM25) candidates fused by reciprocal rank.

`Retriever.retrieve(query, k, route, mode) -> list[Passage]` is the whole public surface.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Literal

from corpus import Chunk
from corpus.chunking import embedded_text

Mode = Literal["hybrid", "dense", "sparse"]
RRF_K = 60  # see docs/benchmarks.md: k in 10..100 changes recall@5 by under a point here
CANDIDATES = 40  # per retriever, before fusion
# A route filter on the dense side over-fetches unfiltered candidates (CANDIDATES * 1.5 / the route's share of
# chunks, then this many if too few carried the route) and filters them in Python; a route too rare for that
# uses Chroma's own `where` filter, which is slow at scale. See RouteFilterRetriever.
POST_FILTER_MAX_FETCH = 3000  # ~20 ms ids-only at 100k chunks, against ~150 ms for `where`


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with its scores; `score` orders passages, the others explain it."""

    chunk: Chunk
    score: float
    dense_score: float | None = None  # cosine similarity of query and chunk, -1..1
    sparse_score: float | None = None  # BM25 score, 0 when the chunk shares no term with the query

    def as_dict(self) -> dict:
        return {**asdict(self.chunk), "routes": list(self.chunk.routes), "score": self.score,
                "dense_score": self.dense_score, "sparse_score": self.sparse_score}


def chunk_to_node(chunk: Chunk):
    """A llama-index node whose embedded content is exactly `embedded_text(heading, text)`."""
    from llama_index.core.schema import TextNode

    metadata = {"heading": chunk.heading, "title": chunk.title, "section": chunk.section, "source": chunk.source,
                "doc_id": chunk.doc_id, "routes": ",".join(chunk.routes), "ingested_at": chunk.ingested_at or "",
                **{f"route_{r}": 1 for r in chunk.routes}}  # ints: llama-index filters take no bools
    if chunk.page is not None:
        metadata["page"] = chunk.page
    node = TextNode(id_=chunk.chunk_id, text=chunk.text, metadata=metadata,
                    excluded_embed_metadata_keys=[k for k in metadata if k != "heading"],
                    excluded_llm_metadata_keys=[k for k in metadata if k != "heading"],
                    metadata_template="{value}", text_template="{metadata_str}\n\n{content}")
    if node.get_content("embed") != embedded_text(chunk.heading, chunk.text):  # one embedded format, everywhere
        raise ValueError(f"chunk {chunk.chunk_id}: llama-index would embed a different text than embedded_text()")
    return node


class Retriever:
    def __init__(self, collection, embedder, bm25, rrf_k: float = RRF_K, candidates: int = CANDIDATES,
                 chunk_routes: dict[str, tuple[str, ...]] | None = None, *,
                 ready: Callable[[list[str]], dict[str, Chunk]]):
        """`chunk_routes`: the routes of each ready chunk (Manifest.chunk_routes), for filtering by route.
        `ready(ids)`: the chunks among `ids` whose document is ready now (Manifest.ready_chunks_by_id); only those
        are candidates, and passages carry the manifest's copy of the chunk."""
        self.collection = collection
        self.ready = ready
        self.embedder = embedder
        self.bm25 = bm25
        self.rrf_k = rrf_k
        self.candidates = candidates
        self.chunk_routes = chunk_routes or {}
        self.route_counts: dict[str, int] = {}
        for routes in self.chunk_routes.values():
            for route in routes:
                self.route_counts[route] = self.route_counts.get(route, 0) + 1
        self._sparse_by_route: dict[str | None, object] = {}

    def retrieve(self, query: str, k: int = 5, route: str | None = None, mode: Mode = "hybrid") -> list[Passage]:
        if not query.strip():
            return []
        from llama_index.core.llms import MockLLM
        from llama_index.core.schema import QueryBundle

        from index.fusion import RankFusionRetriever, ReadyOnlyRetriever

        chunks: dict[str, Chunk] = {}  # the ready chunks among either retriever's candidates
        parts = [(name, ReadyOnlyRetriever(retriever, self.ready, chunks))
                 for name, retriever in (("dense", self._dense(route)), ("sparse", self._sparse(route)))
                 if mode in (name, "hybrid") and retriever is not None]
        if not parts:
            return []
        names = [name for name, _ in parts]
        # One query, no rewriting: MockLLM only keeps llama-index from resolving its default (remote) LLM.
        fusion = RankFusionRetriever([retriever for _, retriever in parts], llm=MockLLM(), mode="reciprocal_rerank",
                                     num_queries=1, use_async=False, similarity_top_k=k, rrf_k=self.rrf_k)
        # The embedding is computed here so that it sees a length-capped query while BM25 sees all of it.
        bundle = QueryBundle(query, embedding=self.embedder.embed_query(query) if "dense" in names else None)
        hits = fusion.retrieve(bundle)
        passages = []
        for hit in hits:
            own = {names[i]: score for i, score in hit.node.metadata.pop("_own_scores").items()}
            dense = own.get("dense")
            passages.append(Passage(
                chunks[hit.node.node_id], hit.score,
                # ChromaVectorStore reports exp(-cosine distance); turn it back into cosine similarity.
                1.0 + math.log(dense) if dense else None,
                own.get("sparse", 0.0) if "sparse" in names else None))
        return passages

    def document_frequencies(self, text: str) -> dict[str, int]:
        """How many indexed chunks hold each word of `text`, the words as BM25 sees them (lower case, English
        stop words out, stemmed): {"impetigo": 0, "apixaban": 12}. A typo or an uncovered topic gets 0."""
        if self.bm25 is None:
            return {}
        return {stem: self.bm25.frequency(stem) for stem in self.bm25.tokens(text)}

    def near(self, stem: str) -> tuple[str, int] | None:
        """The indexed word closest to an unknown `stem`, with its frequency, when `stem` reads as a typo of it
        ("opiod" -> "opioid")."""
        import difflib

        vocab = self.bm25.vocab if self.bm25 is not None else []
        close = difflib.get_close_matches(stem, vocab, n=3, cutoff=0.8) if len(stem) >= 5 else []
        # A typo is one slip (two in a long word); a near ratio alone maps "toddler" to "toler" (tolerance). And it
        # keeps the first letter: "croup" is no typo of "group", and read as one it hid that no note covers croup.
        close = [word for word in close if _edits(stem, word) <= (1 if len(stem) < 8 else 2) and word[0] == stem[0]]
        # ... or an indexed word is the stem with another ending: "hypomanic" is stemmed "hypoman", and the notes say
        # "hypomania" (not any longer word: "nephrotic" is no "nephrotoxic").
        close = close or [word for word in (stem + end for end in ("ia", "a", "e", "y", "ic", "is", "us"))
                          if len(stem) >= 6 and word in vocab][:1]
        return (close[0], self.bm25.frequency(close[0])) if close else None

    @property
    def chunk_count(self) -> int:
        return self.bm25.num_docs if self.bm25 is not None else 0

    def _dense(self, route: str | None):
        from index.fusion import DenseIdRetriever

        if route is None:  # a second, wider fetch when unpublished chunks crowd out the ready ones
            fetches = [self.candidates, POST_FILTER_MAX_FETCH] if self.chunk_routes else []
            return DenseIdRetriever(self.collection, self.candidates, None, self.chunk_routes, fetches)
        share = self.route_counts.get(route, 0) / max(len(self.chunk_routes), 1)
        fetch = math.ceil(self.candidates * 1.5 / share) if share else POST_FILTER_MAX_FETCH + 1
        fetches = sorted({fetch, POST_FILTER_MAX_FETCH}) if fetch <= POST_FILTER_MAX_FETCH else []
        return DenseIdRetriever(self.collection, self.candidates, route, self.chunk_routes, fetches)

    def _sparse(self, route: str | None):
        """A BM25 retriever for `route`, cached: building its mask walks the whole corpus. The mask keeps the
        ready chunks (of the route): the base index may still hold removed ones (index/sparse.py), which would
        otherwise take candidates' places before ReadyOnlyRetriever drops them."""
        if self.bm25 is None:
            return None
        if route not in self._sparse_by_route:
            from index.fusion import SparseIdRetriever

            routes = self.chunk_routes
            mask = self.bm25.mask(lambda row: route in routes.get(row["node_id"], ()) if route
                                  else row["node_id"] in routes)
            self._sparse_by_route[route] = SparseIdRetriever(self.bm25, self.candidates, mask) if mask.any() else None
        return self._sparse_by_route[route]


def _edits(a: str, b: str) -> int:
    """Levenshtein distance, with a swap of two neighbours counting as one edit ("waht")."""
    previous, current = None, list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        before, previous, current = previous, current, [i] + [0] * len(b)
        for j, y in enumerate(b, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y))
            if before is not None and i > 1 and j > 1 and x == b[j - 2] and a[i - 2] == y:
                current[j] = min(current[j], before[j - 2] + 1)
    return current[-1]
