"""llama-index retriever pieces used by `index.retrieve`; imported only when a search runs,
because llama-index costs seconds to import and most commands never search."""

from __future__ import annotations

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
