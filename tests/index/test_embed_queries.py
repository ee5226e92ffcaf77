"""Embedder.embed_queries: many queries a batch at a time, as embed_query gives each (used to save the passages
of thousands of evaluation questions)."""

from __future__ import annotations

import pytest


def test_batched_queries_match_one_at_a_time_and_are_cut_alike(embedder):
    vignette = " ".join(f"day {i} of fever and cough" for i in range(40))  # longer than the query cap
    queries = ["fever", "first-line drug for high blood pressure", vignette, vignette + " with crushing chest pain"]
    batched = embedder.embed_queries(queries)
    assert len(batched) == len(queries)
    for query, vector in zip(queries, batched):
        # padding a short query beside a long one changes the arithmetic a little, not the embedding
        assert vector == pytest.approx(embedder.embed_query(query), abs=3e-3)
    assert batched[2] == pytest.approx(batched[3], abs=1e-6)  # both cut to the same first word pieces
