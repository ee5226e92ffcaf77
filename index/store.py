"""The dense store: one Chroma collection, embedded on disk by default or on a Chroma server.

Chroma's maintainers say the embedded `PersistentClient` is not safe across processes, and it shows: a
process that opened it keeps its own copy of the vector index in memory and never sees another process's
adds or deletes (its searches go on returning deleted ids and missing new ones). medassist therefore writes
from one process at a time (the home's write lock) and has every other process open a fresh client after
a write it did not make; see "Two processes on one home" in index/knowledge_base.py. A Chroma server holds
the only copy, so its clients are never stale: use it for many processes or machines.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from index.embed import Embedder



class StoreError(Exception):
    """The Chroma store cannot be opened or reached; the message says which and why."""


def open_collection(chroma_dir: Path, embedder: Embedder, chroma_url: str | None, name: str):
    """The home's collection `name`, with our embedding function and cosine distance.

    An embedded store is read as it is on disk now, by a client of its own. Chroma shares one client system
    per path within a process, and that system's index may be a stale copy (a second KnowledgeBase on the
    home would get the first one's, or a reopened client its own old one): dropping the cache makes the new
    client load anew. Clients opened before keep working on their old system, and are garbage once dropped."""
    import chromadb
    from chromadb.api.client import SharedSystemClient
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)  # nothing leaves the machine
    if chroma_url:
        url = urlparse(chroma_url if "://" in chroma_url else f"http://{chroma_url}")
        try:
            client = chromadb.HttpClient(host=url.hostname or "127.0.0.1", port=url.port or 8000,
                                         ssl=url.scheme == "https", settings=settings)
            client.heartbeat()
        except Exception as exc:
            raise StoreError(f"cannot reach the Chroma server at {chroma_url}: {exc}") from None
    else:
        chroma_dir.mkdir(parents=True, exist_ok=True)
        SharedSystemClient.clear_system_cache()
        client = chromadb.PersistentClient(path=str(chroma_dir), settings=settings)
    return client.get_or_create_collection(name, embedding_function=embedder.chroma_function(),
                                           configuration={"hnsw": {"space": "cosine"}})


def vector_store(collection):
    from llama_index.vector_stores.chroma import ChromaVectorStore

    return ChromaVectorStore(chroma_collection=collection)
