"""BM25 as a base plus a delta (index/sparse.py): what an ingest adds goes to the delta, scores are merged with
the statistics of the whole, removed chunks are never found, and the base is rebuilt once the delta grows."""

from __future__ import annotations

import numpy as np
import pytest

from index import sparse


def node(chunk_id: str, text: str, route: str = "general"):
    from corpus import Chunk
    from index.retrieve import chunk_to_node

    return chunk_to_node(Chunk(chunk_id, chunk_id.split(":")[0], text, "Title", "Section", "/notes/n.md",
                               (route,), None, None))


# Texts of one length (5 words after stop words), so both parts have the same average length and a merged
# score must equal the single index's exactly.
TEXTS = ["gout flare colchicine naproxen allopurinol", "lithium levels thiazide toxicity monitoring",
         "apixaban dose renal impairment bleeding", "gout urate allopurinol target prevention",
         "sepsis lactate fluids antibiotics hour", "asthma inhaler steroid step wheeze",
         "colchicine diarrhoea dose reduce renal", "warfarin inr bleeding vitamin dose"]


def test_a_delta_is_scored_with_the_statistics_of_base_and_delta_together(tmp_path):
    nodes = [node(f"d{i}:1", text) for i, text in enumerate(TEXTS)]
    sparse.build(tmp_path / "one", nodes, 1)
    sparse.build(tmp_path / "two", nodes[:5], 1)
    sparse.build_delta(tmp_path / "two", nodes[5:], 2)
    one, two = sparse.load(tmp_path / "one"), sparse.load(tmp_path / "two")
    assert len(two.parts) == 2 and two.node_ids == one.node_ids
    for query in ["colchicine dose", "gout allopurinol", "bleeding renal dose", "wheeze"]:
        # "colchicine" is in one base chunk and one delta chunk: scored alone, the delta's idf would differ.
        np.testing.assert_allclose(two.scores(query), one.scores(query), rtol=1e-5)
    assert two.frequency("colchicin") == one.frequency("colchicin") == 2
    assert two.search("colchicine dose", k=3) == one.search("colchicine dose", k=3)


def test_an_ingest_into_a_large_index_writes_only_a_delta_and_removed_chunks_are_never_found(make_kb, notes,
                                                                                             monkeypatch):
    monkeypatch.setattr(sparse, "MIN_BASE", 1)  # the notes are a few chunks; a real base holds thousands
    monkeypatch.setattr(sparse, "DELTA_SHARE", 1.0)
    kb = make_kb()
    kb.ingest([notes["gout"], notes["appendix"]])
    base = (kb.bm25_dir / str(sparse.current_generation(kb.bm25_dir)) / "BASE").read_text()
    base_files = {p.name: p.stat().st_mtime_ns for p in (kb.bm25_dir / base).iterdir()}

    kb.ingest([notes["lithium"]])
    index = sparse.load(kb.bm25_dir)
    assert index.base_name == base and len(index.parts) == 2  # the base was left as it was
    assert {p.name: p.stat().st_mtime_ns for p in (kb.bm25_dir / base).iterdir()} == base_files
    assert kb.search("thiazide lithium toxicity", k=1, mode="sparse")[0].chunk.title == "Lithium monitoring"
    assert kb.verify()["consistent"]

    kb.remove(str(notes["appendix"]))  # its chunks stay in the base until it is rebuilt
    check = kb.verify()
    assert check["consistent"] and check["bm25_removed_until_rebuild"] > 0
    assert all(p.chunk.title != "Appendicitis" for p in kb.search("Alvarado appendicitis", k=5, mode="sparse"))
    assert kb.retriever._sparse("diagnosis") is None  # the route's only chunks are removed ones: no candidates


def test_the_base_is_rebuilt_once_the_delta_passes_its_share(make_kb, notes, monkeypatch):
    monkeypatch.setattr(sparse, "MIN_BASE", 1)
    monkeypatch.setattr(sparse, "DELTA_SHARE", 0.5)
    kb = make_kb()
    kb.ingest([notes["gout"]])
    first = sparse.load(kb.bm25_dir).base_name
    kb.ingest([notes["lithium"], notes["appendix"]])  # more new chunks than half the base
    index = sparse.load(kb.bm25_dir)
    assert index.base_name != first and len(index.parts) == 1
    assert not (kb.bm25_dir / first).exists()  # collected once the pointer moved
    assert kb.verify() | {"bm25_removed_until_rebuild": 0} == kb.verify() and kb.verify()["consistent"]


def test_a_reader_reuses_the_base_it_loaded_and_reads_only_the_new_delta(tmp_path, monkeypatch):
    from llama_index.retrievers.bm25 import BM25Retriever

    folder = tmp_path / "bm25"
    sparse.build(folder, [node("a:1", "gout flare colchicine")], 1)
    before = sparse.load(folder)
    sparse.build_delta(folder, [node("b:1", "lithium levels")], 2)
    loaded = []
    real = BM25Retriever.from_persist_dir.__func__
    monkeypatch.setattr(BM25Retriever, "from_persist_dir",
                        classmethod(lambda cls, path, **kw: loaded.append(path) or real(cls, path, **kw)))
    after = sparse.load(folder, previous=before)
    assert after.base is before.base and loaded == [str(folder / "2" / "delta")]
    assert after.node_ids == ["a:1", "b:1"]


def test_an_index_written_before_the_delta_layout_still_loads_and_is_replaced_by_a_full_build(tmp_path):
    from llama_index.retrievers.bm25 import BM25Retriever

    folder = tmp_path / "bm25"
    (folder / "7").parent.mkdir(parents=True)
    BM25Retriever.from_defaults(nodes=[node("a:1", "gout flare colchicine")], similarity_top_k=1).persist(
        str(folder / "7"), show_progress=False)
    (folder / "CURRENT").write_text("7")
    assert sparse.load(folder).node_ids == ["a:1"] and sparse.base_ids(folder) is None  # no delta on top of it
    with pytest.raises(FileNotFoundError):
        sparse.build_delta(folder, [node("b:1", "lithium")], 8)
