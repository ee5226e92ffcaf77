"""Reading reference documents and cutting them into provenance-carrying chunks.

Public API: `load_document`, `LoadError`, `chunk_document`, `Document`, `Section`, `Chunk`,
`ROUTES`, `STARTER_DIR`. Nothing here knows about models, indexes or the UI.
"""

from corpus.chunking import chunk_document
from corpus.loaders import SUPPORTED_SUFFIXES, LoadError, load_document
from corpus.models import ROUTES, STARTER_DIR, Chunk, Document, Section

__all__ = [
    "ROUTES",
    "STARTER_DIR",
    "SUPPORTED_SUFFIXES",
    "Chunk",
    "Document",
    "LoadError",
    "Section",
    "chunk_document",
    "load_document",
]
