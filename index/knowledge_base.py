"""`KnowledgeBase`: ingest, remove, list and search documents, keeping Chroma, BM25 and the manifest in step.

All-or-nothing ingest, in four committed steps (the manifest is the source of truth):
  1. the manifest records the new document and its chunks as `pending`;
  2. the chunks are embedded and added to Chroma;
  3. one manifest transaction makes the document `ready` and marks the one it replaces `removing`;
  4. the replaced document's chunks leave Chroma and the manifest; BM25 catches up once per batch (index/sparse.py).
If the process dies anywhere, whoever next takes the home's write lock deletes what `pending` documents
left in Chroma, finishes `removing` ones, and rebuilds a stale BM25 index (`_catch_up`).
llama-index's docstore de-duplication is not used: it cannot make a change atomic across the three stores.

Two processes on one home (a chat open while `medassist ingest` runs in another terminal):
  * One writer at a time: ingest, remove and recovery hold `write.lock` (an flock; two ingests wait in turn).
  * Readers never wait for it. A search reads the manifest's generation (one SQLite read; WAL, so never
    blocked by a commit) and the BM25 pointer; when either moved, it reloads what changed: the BM25 index, the
    route map, and, if the lock is free (tried without waiting), a fresh Chroma client. Chroma's embedded
    `PersistentClient` never sees another process's writes (index/store.py), so it is reopened only between
    writes, never while one is loading files a writer is changing.
  * Every candidate, dense or BM25, is checked against the manifest (`Manifest.ready_chunks_by_id`) and its
    text read from there: a `pending` document's chunks already in Chroma, or a removed one's still in a
    reader's Chroma view or BM25 index, are never cited. During another process's write a reader sees the
    documents ready before it (minus any it removes); after the write, everything.
  * With a Chroma server there is one copy of the vectors and nothing to reopen; each home has its own
    collection (its name is in the manifest).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal

from corpus import STARTER_DIR, SUPPORTED_SUFFIXES, LoadError, chunk_document, load_document
from corpus.loaders import DEFAULT_MAX_BYTES, READER_VERSION
from index import sparse
from index.embed import Embedder
from index.manifest import DocumentRecord, Manifest
from index.retrieve import RRF_K, Mode, Passage, Retriever, chunk_to_node

Status = Literal["added", "unchanged", "replaced", "failed", "skipped"]
EMBED_BATCH = 256  # chunks embedded and written to Chroma per step; also the progress granularity


@dataclass(frozen=True)
class IngestResult:
    path: str
    status: Status
    doc_id: str | None = None
    title: str | None = None
    chunks: int = 0
    reason: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class IngestProgress:
    files_done: int
    files_total: int
    path: str  # the file being worked on
    chunks_done: int  # of that file
    chunks_total: int


Progress = Callable[[IngestProgress], None]


def find_files(paths: Iterable[Path | str], recursive: bool = False,
               follow_links: bool = False) -> Iterator[tuple[Path, str | None]]:
    """(file, why it is skipped or None) for files named directly and files inside named directories.

    Hidden files and folders are left out, and so are files of unsupported types found in a folder. A walk
    stays inside the folder it was given: a symlink found there whose target lies outside it (a link to the
    parent, or to ~) would pull unrelated, perhaps private, files into the index, so it is skipped and
    reported unless `follow_links`. Followed links are walked once each: a link back up cannot loop the walk.
    """
    for path in map(Path, paths):
        if not path.is_dir():
            yield path, None  # named by the user, link or not; missing files and loops are reported by the loader
            continue
        root = os.path.realpath(path)
        seen: set[str] = set()
        for folder, dirs, files in os.walk(path, followlinks=follow_links):
            real = os.path.realpath(folder)
            if real in seen:
                dirs.clear()
                continue
            seen.add(real)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
            if not follow_links:  # os.walk does not enter linked folders then; say so for those leading out
                yield from ((link, reason) for link in (Path(folder) / d for d in dirs)
                            if link.is_symlink() and (reason := _leaves(link, root)))
            for name in sorted(f for f in files if not f.startswith(".")):
                file = Path(folder) / name
                if not follow_links and file.is_symlink() and (reason := _leaves(file, root)):
                    yield file, reason
                elif file.suffix.lower() not in SUPPORTED_SUFFIXES:
                    # A folder may hold images or notes of other kinds; say so, but it is not a failure.
                    yield file, f"unsupported file type {file.suffix!r}"
                else:
                    yield file, None


def _is_gone(source: str) -> bool:
    """Whether a document's file no longer exists (a source that is not a local path never counts as gone)."""
    return Path(source).is_absolute() and not Path(source).exists()


def _leaves(link: Path, root: str) -> str | None:
    """Why a symlink found under `root` is not followed, or None when its target stays inside."""
    target = os.path.realpath(link)
    if os.path.commonpath([root, target]) == root:
        return None
    return f"symlink to {target}, outside {root}; not followed (ingest --follow-links follows it)"


class KnowledgeBase:
    def __init__(self, home: Path | str, chroma_url: str | None = None, embed_model: str | None = None,
                 max_file_bytes: int = DEFAULT_MAX_BYTES, rrf_k: float = RRF_K, embedder: Embedder | None = None,
                 compute_dtype: str | None = None):
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.chroma_url = chroma_url
        self.max_file_bytes = max_file_bytes
        self.rrf_k = rrf_k
        self.manifest = Manifest(self.home / "manifest.sqlite3")
        # Pass `embedder` to share a loaded model between bases.
        self.embedder = embedder or Embedder(embed_model, compute_dtype=compute_dtype)
        self.bm25_dir = self.home / "bm25"
        # The stores as this process sees them (see "Two processes on one home" above). `_view`: the manifest
        # generation our Chroma client has seen everything up to; `_lock` lets one thread at a time swap them.
        self._lock = threading.RLock()
        self._collection = self._vector_store_ = self._retriever = self._retriever_key = self._view = None
        self._bm25: tuple[int | None, object] | None = None  # (generation, sparse.SparseIndex) last loaded
        self.on_wait: Callable[[], None] | None = None  # called when a write must wait for another process's

    # --- the stores, opened on first use and refreshed after another process's writes ----------
    @property
    def collection(self):
        with self._lock:
            if self._collection is None:
                self._open_collection()
            return self._collection

    @property
    def _vector_store(self):
        self.collection  # noqa: B018  (opens it, and the vector store with it)
        return self._vector_store_

    def _open_collection(self) -> None:
        from index.store import open_collection, vector_store

        # Read before opening: a write that lands meanwhile bumps the generation again, so it is not missed.
        view = self.manifest.generation
        self._collection = open_collection(self.home / "chroma", self.embedder, self.chroma_url,
                                           self.manifest.collection_name)
        self._vector_store_, self._view = vector_store(self._collection), view

    @property
    def retriever(self) -> Retriever:
        """The retriever over what is ready now; a change made since the last call, by any process, is loaded
        first (checking costs a SQLite read and a small file read)."""
        with self._lock:
            if self._view != self.manifest.generation:  # someone else wrote, or we never caught up
                with self._write_lock(wait=False):
                    pass  # taking it catches up (recovery, a fresh Chroma client); busy: read what is ready
            generation, bm25_generation = self.manifest.generation, sparse.current_generation(self.bm25_dir)
            key = (generation, bm25_generation, id(self.collection))
            if key != self._retriever_key:
                if self._bm25 is None or self._bm25[0] != bm25_generation:  # the base is reused when unchanged
                    self._bm25 = (bm25_generation, sparse.load(self.bm25_dir, previous=self._bm25 and self._bm25[1]))
                self._retriever = Retriever(self.collection, self.embedder, self._bm25[1], rrf_k=self.rrf_k,
                                            chunk_routes=self.manifest.chunk_routes(),
                                            ready=self.manifest.ready_chunks_by_id)
                self._retriever_key = key
            return self._retriever

    @contextmanager
    def _write_lock(self, wait: bool = True) -> Iterator[bool]:
        """Hold the home's write lock (yields True), or with `wait=False` yield False at once if it is taken.

        One writer at a time per home, across processes and threads (two ingests in two terminals wait in
        turn). Whoever takes it first catches up with what other processes did (`_catch_up`); when it is let
        go, our Chroma client has seen every change made meanwhile, since we made them."""
        with open(self.home / "write.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    yield False
                    return
                if self.on_wait:
                    self.on_wait()  # a wait the user did not ask for is said, not silent
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                with self._lock:
                    self._catch_up()
                yield True
            finally:
                if self._collection is not None:
                    self._view = self.manifest.generation
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _catch_up(self) -> None:
        """Under the write lock: reopen a stale embedded Chroma client, then undo half-done ingests and finish
        half-done removals left by a killed writer, and bring BM25 up to date."""
        if self._collection is not None and self.chroma_url is None and self._view != self.manifest.generation:
            self._open_collection()
        for record in self.manifest.documents("pending") + self.manifest.documents("removing"):
            self._drop(record.doc_id)
        self._sync_bm25()

    # --- reading ------------------------------------------------------------------------------
    def documents(self) -> list[DocumentRecord]:
        return self.manifest.documents()

    def search(self, query: str, k: int = 5, route: str | None = None, mode: Mode = "hybrid") -> list[Passage]:
        return self.retriever.retrieve(query, k=k, route=route, mode=mode)

    def verify(self) -> dict:
        """Compare the chunk ids each store holds; `consistent` is what a crash must not break."""
        self.recover()  # and a fresh view
        manifest_ids = {c.chunk_id for c in self.manifest.ready_chunks()}
        chroma_ids = set(self.collection.get(include=[])["ids"])
        bm25 = sparse.load(self.bm25_dir)
        bm25_ids = set(bm25.node_ids) if bm25 else set()
        # BM25's base may hold removed chunks until it is rebuilt (index/sparse.py); searches mask them out.
        return {"manifest": len(manifest_ids), "chroma": len(chroma_ids), "bm25": len(bm25_ids & manifest_ids),
                "bm25_removed_until_rebuild": len(bm25_ids - manifest_ids),
                "consistent": manifest_ids == chroma_ids and manifest_ids <= bm25_ids}

    # --- writing ------------------------------------------------------------------------------
    def recover(self) -> None:
        """Undo half-done ingests and finish half-done removals left by a crash; refresh BM25 (waits for a writer)."""
        with self._write_lock():
            pass  # taking the lock does it

    def ingest(self, paths: Iterable[Path | str], route: str | None = None, recursive: bool = False,
               on_result: Callable[[IngestResult], None] | None = None,
               on_progress: Progress | None = None, follow_links: bool = False) -> list[IngestResult]:
        """Ingest files and directories; each file is reported, and one failure does not stop the rest."""
        results = []
        files = list(find_files(paths, recursive, follow_links))
        with self._write_lock():
            try:
                for number, (path, skip) in enumerate(files):
                    def report(done: int, total: int, path=path, number=number) -> None:
                        if on_progress:
                            on_progress(IngestProgress(number, len(files), str(path), done, total))

                    if skip:
                        result = IngestResult(str(path), "skipped", reason=skip)
                    else:
                        result = self._ingest_file(path, route, report)
                    results.append(result)
                    if on_result:
                        on_result(result)
                    if on_progress:
                        on_progress(IngestProgress(number + 1, len(files), str(path), 0, 0))
            finally:  # BM25 follows what was committed, even when the batch is interrupted
                self._sync_bm25()
        return results

    def remove(self, key: str) -> list[DocumentRecord]:
        """Remove the documents whose id (or an 8+ character prefix) or source path is `key`."""
        # Sources are stored resolved and absolute; resolve() needs no file, so a deleted one is found too.
        matches = self.manifest.find(key) or self.manifest.find(str(Path(key).expanduser().resolve()))
        with self._write_lock():
            self._remove(matches)
        return matches

    def missing(self) -> list[DocumentRecord]:
        """Documents whose source file is gone (deleted or moved since it was ingested)."""
        return [d for d in self.documents() if _is_gone(d.source)]

    def prune(self, documents: list[DocumentRecord] | None = None) -> list[DocumentRecord]:
        """Remove `documents` (by default every one `missing()` lists) whose files are still gone."""
        with self._write_lock():  # checked again under the lock: a file may have come back since it was listed
            gone = [d for d in (self.missing() if documents is None else documents)
                    if _is_gone(d.source) and self.manifest.document(d.doc_id)]
            self._remove(gone)
        return gone

    def _remove(self, records: list[DocumentRecord]) -> None:
        for record in records:
            self.manifest.mark_removing(record.doc_id)
            self._drop(record.doc_id)
        self._sync_bm25()

    def starter_pending(self) -> bool:
        """Whether `ensure_starter` has work: a new home, or one holding starter notes that changed (or are read
        differently) since they were indexed."""
        if self.manifest.get_meta("starter_version") == _starter_version():
            return False
        return not self.manifest.get_meta("starter_ingested") or bool(self._starter_held())

    def _starter_held(self) -> list[Path]:
        """The starter notes this home still holds."""
        held = {d.source for d in self.manifest.documents()}
        return [path for path in _starter_notes() if str(path.resolve()) in held]

    def ensure_starter(self, on_result=None, on_progress=None) -> list[IngestResult] | None:
        """Ingest the built-in starter notes the first time a home directory is used. After an upgrade that changed
        them, or how files are read, the notes still indexed are read again: a home kept the old chunks for good,
        and no fix to a note reached it. A note the user removed stays removed."""
        if not self.starter_pending():
            return None
        notes = self._starter_held() if self.manifest.get_meta("starter_ingested") else _starter_notes()
        results = self.ingest(notes, on_result=on_result, on_progress=on_progress)
        self.manifest.set_meta("starter_ingested", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        self.manifest.set_meta("starter_version", _starter_version())
        return results

    def _ingest_file(self, path: Path, route: str | None, report: Callable[[int, int], None]) -> IngestResult:
        try:
            doc = load_document(path, route=route, max_bytes=self.max_file_bytes)
        except LoadError as exc:
            return IngestResult(str(path), "failed", reason=exc.reason)
        existing = self.manifest.document(doc.doc_id)
        replaced = [d.doc_id for d in self.manifest.find(doc.source) if d.doc_id != doc.doc_id]
        if existing:  # the content is indexed already (doc_id is its hash), from this file or another
            same = None if existing.source == doc.source else f"same content as {existing.source}"
            if not replaced:
                return IngestResult(str(path), "unchanged", doc.doc_id, existing.title, existing.n_chunks, same)
            # The file was edited to match another indexed file: that copy stands for it, its old version goes.
            self.manifest.publish(existing.doc_id, replaced)
            for old in replaced:
                self._drop(old)
            return IngestResult(str(path), "replaced", doc.doc_id, existing.title, 0,
                                f"{same}, indexed once; this file's old version is removed")
        chunks = chunk_document(doc, self.embedder.tokenize)
        ingested_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.manifest.add_pending(doc, chunks, ingested_at)
        try:
            for start in range(0, len(chunks), EMBED_BATCH):
                batch = chunks[start:start + EMBED_BATCH]
                nodes = [chunk_to_node(c) for c in batch]
                for node in nodes:
                    node.metadata["ingested_at"] = ingested_at
                embeddings = self.embedder.embed([node.get_content("embed") for node in nodes])
                for node, embedding in zip(nodes, embeddings):
                    node.embedding = embedding
                self._vector_store.add(nodes)
                report(start + len(batch), len(chunks))
            self.manifest.publish(doc.doc_id, replaced)
        except BaseException as exc:
            self._drop(doc.doc_id)  # nothing of a failed document stays behind
            if not isinstance(exc, Exception):
                raise  # Ctrl-C stops the batch, after cleaning up
            return IngestResult(str(path), "failed", doc.doc_id, doc.title, reason=f"{type(exc).__name__}: {exc}")
        for old in replaced:
            self._drop(old)
        return IngestResult(str(path), "replaced" if replaced else "added", doc.doc_id, doc.title, len(chunks))

    def _drop(self, doc_id: str) -> None:
        """Delete a document's chunks from Chroma, then its manifest rows (safe to repeat after a crash)."""
        ids = self.manifest.chunk_ids(doc_id)
        for start in range(0, len(ids), 5000):
            self.collection.delete(ids=ids[start:start + 5000])
        self.manifest.delete(doc_id)

    def _sync_bm25(self) -> None:
        """Bring BM25 to the manifest's generation: a delta of the ready chunks the base lacks, or a new base once
        those and the removed ones pass sparse.DELTA_SHARE of it (index/sparse.py says why)."""
        generation = self.manifest.generation
        if sparse.current_generation(self.bm25_dir) == generation:
            return
        in_base = sparse.base_ids(self.bm25_dir)
        if in_base is not None and len(in_base) >= sparse.MIN_BASE:
            ready = set(self.manifest.chunk_routes())
            new, removed = sorted(ready - in_base), in_base - ready
            if len(new) + len(removed) <= sparse.DELTA_SHARE * len(in_base):
                chunks = [chunk for start in range(0, len(new), 5000)  # SQLite caps the parameters of one query
                          for chunk in self.manifest.ready_chunks_by_id(new[start:start + 5000]).values()]
                sparse.build_delta(self.bm25_dir, [chunk_to_node(c) for c in chunks], generation)
                return
        sparse.build(self.bm25_dir, [chunk_to_node(c) for c in self.manifest.ready_chunks()], generation)


def _starter_notes() -> list[Path]:
    """The built-in starter notes, in a fixed order."""
    return sorted(STARTER_DIR.glob("*.md"))


def _starter_version() -> str:
    """The starter notes' bytes and the file reader's version, hashed: what a home's starter chunks were made from."""
    digest = hashlib.sha256(f"reader={READER_VERSION}".encode())
    for path in _starter_notes():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
