"""The knowledge base: embeddings, the Chroma collection, BM25, the ingest manifest, hybrid retrieval.

Public API: `KnowledgeBase` (ingest, remove, documents, search) and `Passage`.
Heavy libraries (llama-index, chromadb, sentence-transformers) are imported when first needed,
so commands that only read the manifest start quickly.
"""

from index.knowledge_base import IngestResult, KnowledgeBase
from index.retrieve import Passage

__all__ = ["IngestResult", "KnowledgeBase", "Passage"]
