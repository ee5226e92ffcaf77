"""The same knowledge base against a real Chroma server on loopback (`chroma run`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port, wait_for_port


@pytest.fixture
def chroma_server(tmp_path):
    chroma = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    port = free_port()
    proc = subprocess.Popen([chroma, "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_for_port(port, proc)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_ingest_and_search_through_a_chroma_server(make_kb, notes, chroma_server):
    kb = make_kb(chroma_url=chroma_server)
    assert {r.status for r in kb.ingest(notes.values())} == {"added"}
    assert kb.search("serum urate target", k=1)[0].chunk.title == "Gout flare"
    assert kb.verify()["consistent"]
    import chromadb

    port = int(chroma_server.rsplit(":", 1)[1])
    remote = chromadb.HttpClient(host="127.0.0.1", port=port).get_collection(kb.collection.name)
    assert remote.count() == kb.verify()["manifest"]  # the vectors really live on the server


def test_two_homes_on_one_server_keep_apart(make_kb, notes, chroma_server, tmp_path):
    """Every home once used the one collection name: a second home's search cited the first home's chunks."""
    first = make_kb(tmp_path / "one", chroma_url=chroma_server)
    second = make_kb(tmp_path / "two", chroma_url=chroma_server)
    first.ingest([notes["gout"]])
    second.ingest([notes["lithium"]])
    assert {p.chunk.title for p in second.search("gout flare colchicine", k=5, mode="dense")} == {"Lithium monitoring"}
    assert first.verify()["consistent"] and second.verify()["consistent"]


def test_unreachable_server_is_a_clear_error(make_kb):
    from index.store import StoreError

    kb = make_kb(chroma_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreError, match="cannot reach the Chroma server"):
        kb.search("anything")
