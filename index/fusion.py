"""llama-index retriever pieces used by `index.retrieve`; imported only when a search runs,
because llama-index costs seconds to import and most commands never search."""

from __future__ import annotations

import math

from llama_index.core.retrievers import BaseRetriever, QueryFusionRetriever


class RankFusionRetriever(QueryFusionRetriever):
    """llama-index's QueryFusionRetriever with two changes to its reciprocal-rank fusion:
    k is a parameter (upstream fixes it at 60; MedRAG uses 100), and nodes are matched by id, not
    by content hash, because the Chroma and BM25 copies of one chunk carry slightly different
    metadata and would otherwise count as two. Each retriever's own score is kept on the node."""

    def __init__(self, *args, rrf_k: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.rrf_k = rrf_k

    def _reciprocal_rerank_fusion(self, results):
        fused, hits_by_id, own_scores = {}, {}, {}
        for (_query, which), hits in results.items():
            for rank, hit in enumerate(sorted(hits, key=lambda h: h.score or 0.0, reverse=True)):
                node_id = hit.node.node_id
                hits_by_id.setdefault(node_id, hit)  # either copy: the passage's chunk comes from the manifest
                own_scores.setdefault(node_id, {})[which] = hit.score
                fused[node_id] = fused.get(node_id, 0.0) + 1.0 / (self.rrf_k + rank + 1)
        ranked = sorted(fused, key=fused.get, reverse=True)
        for node_id in ranked:
            hits_by_id[node_id].score = fused[node_id]
            hits_by_id[node_id].node.metadata["_own_scores"] = own_scores[node_id]
        return [hits_by_id[node_id] for node_id in ranked]


class SparseIdRetriever(BaseRetriever):
    """BM25 candidates (index.sparse.SparseIndex) as ids and scores only, among the chunks `mask` keeps; like
    DenseIdRetriever, their text comes from the manifest. Chunks that share no word with the query (score 0)
    are never candidates."""

    def __init__(self, index, keep: int, mask):
        super().__init__()
        self.index, self.keep, self.mask = index, keep, mask

    def _retrieve(self, query_bundle):
        from llama_index.core.schema import NodeWithScore, TextNode

        return [NodeWithScore(node=TextNode(id_=chunk_id, text=""), score=score)
                for chunk_id, score in self.index.search(query_bundle.query_str, self.keep, self.mask)]


class ReadyOnlyRetriever(BaseRetriever):
    """Keeps the candidates whose document is ready now, by one manifest lookup (`ready(ids) -> {id: Chunk}`),
    and puts their chunks in `chunks`. Chroma holds a `pending` document's chunks before it is published, and a
    reader's Chroma client or BM25 index may still hold a document another process has just removed."""

    def __init__(self, inner: BaseRetriever, ready, chunks: dict):
        super().__init__()
        self.inner, self.ready, self.chunks = inner, ready, chunks

    def _retrieve(self, query_bundle):
        hits = self.inner.retrieve(query_bundle)
        found = self.ready([hit.node.node_id for hit in hits]) if hits else {}
        self.chunks.update(found)
        return [hit for hit in hits if hit.node.node_id in found]


class DenseIdRetriever(BaseRetriever):
    """Dense candidates from Chroma as ids and scores only; their text comes from the manifest, read for the
    ready ones only (`ReadyOnlyRetriever`).

    Why not llama-index's VectorIndexRetriever: it fetches every candidate's text and metadata and rebuilds
    40 nodes per query, a third of a search at 100k chunks (docs/benchmarks.md). Route filters are done
    here too: Chroma applies `where` by scanning metadata before its vector search (135 ms against 11 ms
    unfiltered at 100k chunks), so for a route it asks for more neighbours (`fetches`: growing sizes,
    tried in turn) and keeps those whose chunk carries the route (`routes_of`, from the manifest). The
    survivors are exactly the route's nearest chunks, in order, so fewer than `keep` is a shorter list,
    not a wrong one (the route's other chunks are further away than the largest fetch); only when none
    survives does the `where` query answer (or when `fetches` is empty: a route too rare to over-fetch).
    Without a route the same over-fetch keeps ready chunks only: Chroma holds a pending document's chunks before
    the manifest publishes it, and a large ingest in another process can fill all the nearest places.
    """

    def __init__(self, collection, keep: int, route: str | None = None, routes_of: dict | None = None,
                 fetches: list[int] | None = None):
        super().__init__()
        self.collection, self.keep, self.route, self.routes_of = collection, keep, route, routes_of or {}
        self.fetches = fetches or []

    def _accepts(self, chunk_id: str) -> bool:
        """A ready chunk (`routes_of` holds every ready chunk), of the route when there is one."""
        routes = self.routes_of.get(chunk_id)
        return routes is not None and (self.route is None or self.route in routes)

    def _nearest(self, embedding, n: int, where: dict | None = None) -> list[tuple[str, float]]:
        found = self.collection.query(query_embeddings=[embedding], n_results=n, where=where, include=["distances"])
        return list(zip(found["ids"][0], found["distances"][0]))

    def _retrieve(self, query_bundle):
        from llama_index.core.schema import NodeWithScore, TextNode

        embedding = query_bundle.embedding
        kept = self._nearest(embedding, self.keep) if self.route is None and not self.fetches else []
        for fetch in self.fetches:
            nearest = self._nearest(embedding, fetch)
            kept = [(i, d) for i, d in nearest if self._accepts(i)][:self.keep]
            if len(kept) >= self.keep or len(nearest) < fetch:  # enough, or nothing further to fetch
                break
        if not kept and self.route is not None:
            kept = self._nearest(embedding, self.keep, where={f"route_{self.route}": 1})
        # exp(-cosine distance): the score ChromaVectorStore gives, so callers convert it the same way.
        return [NodeWithScore(node=TextNode(id_=chunk_id, text=""), score=math.exp(-distance))
                for chunk_id, distance in kept]
