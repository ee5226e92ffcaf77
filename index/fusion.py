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
                hits_by_id.setdefault(node_id, hit)
                own_scores.setdefault(node_id, {})[which] = hit.score
                fused[node_id] = fused.get(node_id, 0.0) + 1.0 / (self.rrf_k + rank + 1)
        ranked = sorted(fused, key=fused.get, reverse=True)
        for node_id in ranked:
            hits_by_id[node_id].score = fused[node_id]
            hits_by_id[node_id].node.metadata["_own_scores"] = own_scores[node_id]
        return [hits_by_id[node_id] for node_id in ranked]


class PositiveScoreRetriever(BaseRetriever):
    """BM25 pads its top-k with zero-score chunks (no term shared with the query): drop those."""

    def __init__(self, inner: BaseRetriever):
        super().__init__()
        self.inner = inner

    def _retrieve(self, query_bundle):
        return [hit for hit in self.inner.retrieve(query_bundle) if (hit.score or 0.0) > 0.0]



class RouteFilterRetriever(BaseRetriever):
    """Dense candidates for one route, filtered here rather than by Chroma's `where`.

    Chroma applies `where` by scanning metadata before its vector search: at 100k chunks that cost
    ~120 ms against ~4 ms unfiltered (docs/benchmarks.md). So this asks Chroma for the `fetch` nearest
    ids and distances only, keeps those whose chunk carries the route (`routes_of`, an in-memory map
    from the manifest), and reads the nodes of the first `keep` through llama-index's vector store.
    When fewer than `keep` survive, `fallback` (the `where` query) answers instead.
    """

    def __init__(self, vector_store, routes_of: dict[str, tuple[str, ...]], route: str, fetch: int, keep: int,
                 fallback: BaseRetriever):
        super().__init__()
        self.vector_store, self.routes_of, self.route = vector_store, routes_of, route
        self.fetch, self.keep, self.fallback = fetch, keep, fallback

    def _retrieve(self, query_bundle):
        from llama_index.core.schema import NodeWithScore

        found = self.vector_store.client.query(query_embeddings=[query_bundle.embedding], n_results=self.fetch,
                                               include=["distances"])
        kept = [(chunk_id, distance) for chunk_id, distance in zip(found["ids"][0], found["distances"][0])
                if self.route in self.routes_of.get(chunk_id, ())][:self.keep]
        if len(kept) < self.keep:
            return self.fallback.retrieve(query_bundle)
        nodes = {node.node_id: node for node in self.vector_store.get_nodes(node_ids=[i for i, _ in kept])}
        # The score ChromaVectorStore gives its own hits, so both paths rank and report alike.
        return [NodeWithScore(node=nodes[i], score=math.exp(-distance)) for i, distance in kept if i in nodes]
