"""Two processes on one home: a chat open while `medassist ingest` or `remove` runs in another terminal.

The other process is real (a Python subprocess driving its own KnowledgeBase); the reader is the test's own
KnowledgeBase, long-lived as a chat's is. See "Two processes on one home" in index/knowledge_base.py.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import write_note

# A writer process taking commands on stdin: "ingest PATH" / "remove KEY", answering "done ..." after each.
WRITER = textwrap.dedent("""
    import sys
    from index import KnowledgeBase
    kb = KnowledgeBase(sys.argv[1])
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "ingest":
            progress = lambda p: p.chunks_total and print("progress", p.chunks_done, p.chunks_total, flush=True)
            print("done", *(r.status for r in kb.ingest([argument], on_progress=progress)), flush=True)
        elif command == "remove":
            print("done", len(kb.remove(argument)), flush=True)
""")

# A reader process that searches once (dense only) and prints what it found and how long the search took.
READER = textwrap.dedent("""
    import json, sys, time
    from index import KnowledgeBase
    kb = KnowledgeBase(sys.argv[1])
    kb.embedder.embed_query("warm up")  # loading the model is not the search
    start = time.perf_counter()
    passages = kb.search(sys.argv[2], k=10, mode="dense")
    print(json.dumps({"seconds": time.perf_counter() - start, "titles": [p.chunk.title for p in passages]}))
""")


class Writer:
    """The other terminal: a process with its own KnowledgeBase on the same home."""

    def __init__(self, home):
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, str(home)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        assert self.proc.stdout.readline().strip() == "ready"

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def lines(self):
        for line in self.proc.stdout:
            yield line.split()

    def run(self, command: str) -> list[str]:
        self.send(command)
        for words in self.lines():
            if words[0] == "done":
                return words[1:]
        raise AssertionError(f"writer exited during {command!r}")

    def stop_mid_ingest(self, path, sig) -> None:
        """Start ingesting `path` (a big note) and send `sig` once part of it is in Chroma, before it is ready."""
        self.send(f"ingest {path}")
        for words in self.lines():
            if words[0] == "progress" and int(words[2]) > 300 and int(words[1]) >= 256:
                self.proc.send_signal(sig)
                return
        raise AssertionError("the writer never got half way")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def writer(tmp_path):
    started = []

    def start(home):
        started.append(Writer(home))
        return started[-1]

    yield start
    for w in started:
        w.close()


def big_note(folder):
    # About 700 chunks, all about renal dosing: several embedding batches, and the nearest chunks to such a query.
    sections = {f"Topic {i}": " ".join(f"Sentence {j} of topic {i} discusses renal dosing of drug {i * 7 + j}."
                                       for j in range(60)) for i in range(100)}
    return write_note(folder, "big.md", "Big reference", "medication", sections)


def titles(kb, query, **kwargs) -> set[str]:
    return {p.chunk.title for p in kb.search(query, k=10, **kwargs)}


def test_search_neither_waits_for_nor_cites_another_processs_unfinished_ingest(make_kb, notes, tmp_path, writer):
    """A search once took the writer lock to recover, so it waited out another process's whole ingest; and
    Chroma already holds the chunks of a document still `pending`, which dense search must not cite."""
    home = tmp_path / "kb"
    make_kb(home).ingest(notes.values())
    other = writer(home)
    other.stop_mid_ingest(big_note(tmp_path / "big"), signal.SIGSTOP)  # it holds the write lock, paused

    reader = subprocess.run([sys.executable, "-c", READER, str(home), "renal dosing of a drug"],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "TQDM_DISABLE": "1"})
    assert reader.returncode == 0, reader.stderr
    found = json.loads(reader.stdout)
    assert found["seconds"] < 5, found  # it did not wait for the writer
    assert found["titles"] and "Big reference" not in found["titles"]  # the pending chunks are not cited


def test_reingest_after_another_process_was_killed_mid_ingest(make_kb, notes, tmp_path, writer):
    """A chat that had searched (and so recovered) before another process was killed mid-ingest found that
    process's `pending` row on its next ingest of the same file: IntegrityError, and the chat crashed."""
    home = tmp_path / "kb"
    kb = make_kb(home)
    kb.ingest(notes.values())
    assert titles(kb, "serum urate target") >= {"Gout flare"}
    big = big_note(tmp_path / "big")
    writer(home).stop_mid_ingest(big, signal.SIGKILL)
    time.sleep(0.5)  # the kernel releases the dead writer's lock

    assert "Big reference" not in titles(kb, "renal dosing of a drug")
    (result,) = kb.ingest([big])
    assert result.status == "added" and result.chunks > 300
    check = kb.verify()
    assert check["consistent"] and kb.manifest.documents("pending") == [], check


def test_a_long_running_reader_sees_another_processs_ingest_and_removal(make_kb, notes, tmp_path, writer):
    """A chat kept its retriever (Chroma client, BM25 with its own copy of the text, route map) from its first
    search: it missed documents another process added and went on citing the ones it removed."""
    home = tmp_path / "kb"
    kb = make_kb(home)
    kb.ingest([notes["gout"], notes["lithium"]])
    assert "Lithium monitoring" in titles(kb, "lithium serum levels")  # opens and caches every store
    other = writer(home)

    assert other.run(f"ingest {notes['appendix']}") == ["added"]
    second = make_kb(home)  # a second KnowledgeBase in this process: Chroma once handed it the first's stale copy
    assert "Appendicitis" in titles(second, "pain in the right iliac fossa", mode="dense")
    for mode in ("dense", "sparse", "hybrid"):
        assert "Appendicitis" in titles(kb, "pain in the right iliac fossa", mode=mode), mode
    assert "Appendicitis" in titles(kb, "pain in the right iliac fossa", route="diagnosis", mode="dense")
    assert kb.retriever.document_frequencies("alvarado")["alvarado"] > 0  # the agent's word counts see it too

    assert other.run(f"remove {notes['lithium']}") == ["1"]
    for mode in ("dense", "sparse", "hybrid"):
        assert "Lithium monitoring" not in titles(kb, "lithium serum levels", mode=mode), mode
    assert "Lithium monitoring" not in titles(kb, "lithium serum levels", route="medication")
    assert kb.retriever.document_frequencies("lithium")["lithium"] == 0


def test_an_ingest_that_must_wait_for_another_processs_write_says_so(notes, tmp_path):
    """Writers do wait for each other (one at a time per home); `medassist ingest` once waited in silence."""
    import fcntl
    import select

    from index.manifest import Manifest

    home = tmp_path / "home"
    home.mkdir()
    Manifest(home / "manifest.sqlite3").set_meta("starter_ingested", "skipped by test")
    with open(home / "write.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process is writing
        proc = subprocess.Popen([str(Path(sys.executable).parent / "medassist"), "ingest", str(notes["gout"])],
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "MEDASSIST_HOME": str(home)})
        said, deadline = "", time.monotonic() + 120
        while "waiting" not in said and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stderr], [], [], 1)[0]:
                said += proc.stderr.readline()
        assert "waiting for it to finish" in said
    rest = proc.communicate(timeout=300)[1]  # the lock is free: it goes on
    assert proc.returncode == 0 and "added" in rest


def test_a_second_process_migrating_a_new_manifest_at_the_same_time_does_not_fail():
    """Two commands started at once on a new home both saw version 0 and both ran the first migration:
    'table documents already exists'. The version is read again inside the migration's write transaction."""
    from index import manifest

    class RacingConnection:
        """A connection whose first read of the schema version lets another process migrate right after it."""

        def __init__(self, db, other):
            self.db, self.other, self.raced = db, other, False

        def execute(self, sql, *args):
            result = self.db.execute(sql, *args).fetchall()
            if "user_version" in sql and not self.raced:
                self.raced = True
                manifest.migrate(self.other, manifest.MIGRATIONS)
            return FetchedRows(result)

    class FetchedRows(list):
        def fetchone(self):
            return self[0] if self else None

    def connect(path):
        return sqlite3.connect(path, isolation_level=None, timeout=5)

    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/manifest.sqlite3"
        first, second = connect(path), connect(path)
        manifest.migrate(RacingConnection(first, second), manifest.MIGRATIONS)
        assert first.execute("PRAGMA user_version").fetchone()[0] == len(manifest.MIGRATIONS)


def test_manifest_reads_do_not_wait_for_a_writer(tmp_path):
    """In rollback-journal mode a reader waits while a writer commits (an exclusive lock); WAL lets it read."""
    from index.manifest import Manifest

    reader = Manifest(tmp_path / "manifest.sqlite3")
    assert reader.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    writer = sqlite3.connect(tmp_path / "manifest.sqlite3", isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("UPDATE meta SET value = '7' WHERE key = 'generation'")
    reader.db.execute("PRAGMA busy_timeout = 200")  # instead of 30 s: fail fast where it would wait
    assert reader.generation == 0  # the last committed state, at once
    writer.execute("COMMIT")
    assert reader.generation == 7


def test_history_reads_do_not_wait_for_a_writer_either(tmp_path):
    """The chat and `medassist ask` in another terminal both write the conversation history."""
    from assistant.history import History

    assert History(tmp_path / "history.sqlite3").db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def node(chunk_id: str, text: str):
    from corpus import Chunk
    from index.retrieve import chunk_to_node

    return chunk_to_node(Chunk(chunk_id, chunk_id.split(":")[0], text, "Title", "Section", "/notes/n.md",
                               ("general",), None, None))


def test_bm25_load_survives_a_writer_collecting_the_generation_it_was_reading(tmp_path, monkeypatch):
    """A writer switches the pointer and deletes older generations while a reader may be loading one of them."""
    from llama_index.retrievers.bm25 import BM25Retriever

    from index import sparse

    folder = tmp_path / "bm25"
    sparse.build(folder, [node("a:1", "gout flare colchicine")], 1)
    real_load = BM25Retriever.from_persist_dir.__func__
    raced = []

    def racing_load(cls, path, **kwargs):
        if not raced:  # the reader has read pointer 1; the writer now publishes 2 and collects 1
            raced.append(path)
            sparse.build(folder, [node("a:1", "gout flare colchicine"), node("b:1", "lithium levels")], 2)
        return real_load(cls, path, **kwargs)

    monkeypatch.setattr(BM25Retriever, "from_persist_dir", classmethod(racing_load))
    loaded = sparse.load(folder)
    assert raced and len(loaded.corpus) == 2  # it loaded the new generation instead of failing on the old


def test_bm25_pointer_reaches_the_disk_before_it_replaces_the_old_one(tmp_path, monkeypatch):
    """The pointer (and the index it names) must be on disk before the rename, or a power cut can leave
    CURRENT naming a folder whose files never reached the disk."""
    from index import sparse

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
                        or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", str(a))) or real_replace(a, b))
    folder = tmp_path / "bm25"
    sparse.build(folder, [node("a:1", "gout flare colchicine")], 3)

    pointer = str(folder / "CURRENT.tmp")
    switched = events.index(("replace", pointer))
    synced_before = {path for kind, path in events[:switched] if kind == "fsync"}
    assert pointer in synced_before
    assert any(path.startswith(str(folder / "3") + "/") for path in synced_before)  # the index's own files
    assert ("fsync", str(folder)) in events[switched:]  # and the rename itself


@pytest.mark.slow
def test_a_writer_looping_over_ingest_edit_remove_against_a_searching_and_asking_reader(tmp_path):
    """The short run of benchmarks/two_process.py (its longer run is in docs/benchmarks.md): no removed or stale
    citation, no miss, no error, no lost document, and searches that never wait out a write."""
    benchmark = Path(__file__).parents[2] / "benchmarks" / "two_process.py"
    out = tmp_path / "two_process.json"
    run = subprocess.run([sys.executable, str(benchmark), "--base", "none", "--drugs", "6", "--seconds", "15",
                          "--baseline", "10", "--out", str(out)], capture_output=True, text=True, timeout=480,
                         env={**os.environ, "TMPDIR": str(tmp_path), "TQDM_DISABLE": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["checks"] == {"removed": 0, "stale": 0, "missed": 0, "errors": 0, "lost": 0}, results
    assert results["operations"]["ingest"] >= 3 and results["operations"]["remove"] >= 1, results["operations"]
    assert results["reader_calls"]["search"] >= 10
    assert results["latency_ms"]["search, writer running"]["p95"] < 5000, results["latency_ms"]
