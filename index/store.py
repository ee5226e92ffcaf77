"""The dense store: one Chroma collection, embedded on disk by default or on a Chroma server."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from index.embed import Embedder

COLLECTION = "medassist"


class StoreError(Exception):
    """The Chroma store cannot be opened or reached; the message says which and why."""


def open_collection(chroma_dir: Path, embedder: Embedder, chroma_url: str | None = None):
    """The medassist collection, with our embedding function and cosine distance."""
    import chromadb
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
        client = chromadb.PersistentClient(path=str(chroma_dir), settings=settings)
    return client.get_or_create_collection(COLLECTION, embedding_function=embedder.chroma_function(),
                                           configuration={"hnsw": {"space": "cosine"}})


def vector_store(collection):
    from llama_index.vector_stores.chroma import ChromaVectorStore

    return ChromaVectorStore(chroma_collection=collection)
