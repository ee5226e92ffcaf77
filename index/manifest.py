"""The manifest: a SQLite record of every document and chunk, and the source of truth for the index.

Chroma and BM25 are derived from it. A document moves pending -> ready (or ready -> removing ->
gone) in committed steps, so after a crash `KnowledgeBase` can finish or undo whatever was half
done and the three stores agree again. Chunk texts live here too: BM25 is rebuilt from them.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from corpus import Chunk, Document

# Numbered migrations: append, never edit, so an old home directory upgrades in place.
MIGRATIONS = [
    """
    CREATE TABLE documents (
        doc_id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        title TEXT NOT NULL,
        kind TEXT NOT NULL,
        routes TEXT NOT NULL,
        updated TEXT,
        reference TEXT,
        n_chunks INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'ready', 'removing')),
        ingested_at TEXT NOT NULL
    );
    CREATE INDEX documents_source ON documents (source);
    CREATE TABLE chunks (
        chunk_id TEXT PRIMARY KEY,
        doc_id TEXT NOT NULL REFERENCES documents (doc_id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        text TEXT NOT NULL,
        title TEXT NOT NULL,
        section TEXT NOT NULL,
        source TEXT NOT NULL,
        routes TEXT NOT NULL,
        page INTEGER
    );
    CREATE INDEX chunks_doc ON chunks (doc_id);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta VALUES ('generation', '0');
    """,
    # The Chroma collection's name, one per home: two homes on one Chroma server once shared "medassist" and
    # cited each other's chunks. A home that already holds documents keeps the old name (its vectors are there).
    """
    INSERT INTO meta SELECT 'collection', CASE WHEN EXISTS (SELECT 1 FROM documents) THEN 'medassist'
                                               ELSE 'medassist-' || lower(hex(randomblob(8))) END;
    """,
]


@dataclass(frozen=True)
class DocumentRecord:
    doc_id: str
    source: str
    title: str
    kind: str
    routes: tuple[str, ...]
    updated: str | None
    reference: str | None
    n_chunks: int
    state: str
    ingested_at: str

    def as_dict(self) -> dict:
        return {**self.__dict__, "routes": list(self.routes)}


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One explicit transaction on a connection opened with isolation_level=None."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def connect(path: Path | str) -> sqlite3.Connection:
    """A connection to one of the home's SQLite files, as every process on the home must open it."""
    # isolation_level=None: we issue BEGIN ourselves, so each state change is one explicit transaction.
    # check_same_thread=False: the chat app opens the index in one worker thread and searches or
    # ingests from others; SQLite itself serialises access to the connection.
    db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    db.execute("PRAGMA foreign_keys = ON")
    # WAL: a read in one process never waits while another process commits (in the default rollback
    # journal a commit locks readers out). Set once, it stays with the file; it needs the home on a local
    # disk (README, "Two processes on one home").
    if db.execute("PRAGMA journal_mode").fetchone()[0] not in ("wal", "memory"):
        db.execute("PRAGMA journal_mode = WAL")
    return db


def migrate(db: sqlite3.Connection, migrations: list[str]) -> None:
    """Apply the numbered `migrations` the database has not seen (its version is PRAGMA user_version)."""
    if db.execute("PRAGMA user_version").fetchone()[0] >= len(migrations):
        return  # the usual case, without taking the write lock
    with transaction(db):
        # Read again under the write lock: two commands started at once on a new home both saw version 0.
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(migrations[version:], start=version + 1):
            # executescript() would COMMIT on its own; statements one by one stay in our transaction.
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")


class Manifest:
    def __init__(self, path: Path):
        self.path = path
        self.db = connect(path)
        self.db.execute("PRAGMA synchronous = FULL")  # a committed state change survives power loss
        self._migrate()

    def _migrate(self) -> None:
        migrate(self.db, MIGRATIONS)

    def transaction(self):
        return transaction(self.db)

    # --- reading -------------------------------------------------------------------------------
    _COLUMNS = "doc_id, source, title, kind, routes, updated, reference, n_chunks, state, ingested_at"

    def documents(self, state: str = "ready") -> list[DocumentRecord]:
        rows = self.db.execute(f"SELECT {self._COLUMNS} FROM documents WHERE state = ? ORDER BY source, doc_id",
                               (state,))
        return [self._record(row) for row in rows]

    def document(self, doc_id: str) -> DocumentRecord | None:
        row = self.db.execute(f"SELECT {self._COLUMNS} FROM documents WHERE doc_id = ? AND state = 'ready'",
                              (doc_id,)).fetchone()
        return self._record(row) if row else None

    @staticmethod
    def _record(row) -> DocumentRecord:
        return DocumentRecord(*row[:4], tuple(row[4].split(",")), *row[5:])

    def find(self, key: str) -> list[DocumentRecord]:
        """Ready documents whose doc_id starts with `key` (at least 8 characters) or whose source is `key`."""
        return [d for d in self.documents() if d.source == key or (len(key) >= 8 and d.doc_id.startswith(key))]

    def chunk_ids(self, doc_id: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT chunk_id FROM chunks WHERE doc_id = ? ORDER BY position", (doc_id,))]

    _READY_CHUNKS = ("SELECT c.chunk_id, c.doc_id, c.text, c.title, c.section, c.source, c.routes, c.page, "
                     "d.ingested_at FROM chunks c JOIN documents d USING (doc_id) WHERE d.state = 'ready'")

    def ready_chunks(self) -> Iterator[Chunk]:
        for row in self.db.execute(f"{self._READY_CHUNKS} ORDER BY c.doc_id, c.position"):
            yield self._chunk(row)

    def ready_chunks_by_id(self, chunk_ids: list[str]) -> dict[str, Chunk]:
        """The chunks among `chunk_ids` whose document is ready now: what a search may cite."""
        marks = ",".join("?" * len(chunk_ids))
        return {row[0]: self._chunk(row)
                for row in self.db.execute(f"{self._READY_CHUNKS} AND c.chunk_id IN ({marks})", chunk_ids)}

    @staticmethod
    def _chunk(row) -> Chunk:
        return Chunk(*row[:6], tuple(row[6].split(",")), row[7], row[8])

    def count_ready_chunks(self) -> int:
        return self.db.execute("SELECT count(*) FROM chunks JOIN documents USING (doc_id) "
                               "WHERE state = 'ready'").fetchone()[0]

    def chunk_routes(self) -> dict[str, tuple[str, ...]]:
        """Routes of every ready chunk, by chunk id."""
        rows = self.db.execute("SELECT c.chunk_id, c.routes FROM chunks c JOIN documents d USING (doc_id) "
                               "WHERE d.state = 'ready'")
        return {chunk_id: tuple(routes.split(",")) for chunk_id, routes in rows}

    @property
    def generation(self) -> int:
        """Bumped by every committed change to the documents (pending, ready, removing, gone): BM25 is stale when
        its generation differs, and a process whose generation is behind knows another one wrote."""
        return int(self.get_meta("generation", "0"))

    @property
    def collection_name(self) -> str:
        return self.get_meta("collection", "medassist")

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # --- state changes, each one committed transaction ----------------------------------------
    def add_pending(self, doc: Document, chunks: list[Chunk], ingested_at: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                       (doc.doc_id, doc.source, doc.title, doc.kind, ",".join(doc.routes), doc.updated,
                        doc.reference, len(chunks), ingested_at))
            db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           [(c.chunk_id, c.doc_id, i, c.text, c.title, c.section, c.source, ",".join(c.routes), c.page)
                            for i, c in enumerate(chunks)])
            self._bump(db)  # its chunks are about to reach Chroma: other processes must reopen their view after

    def publish(self, doc_id: str, replaces: list[str]) -> None:
        """Make `doc_id` ready and mark the documents it replaces for removal, in one step."""
        with self.transaction() as db:
            db.execute("UPDATE documents SET state = 'ready' WHERE doc_id = ?", (doc_id,))
            db.executemany("UPDATE documents SET state = 'removing' WHERE doc_id = ?", [(d,) for d in replaces])
            self._bump(db)

    def mark_removing(self, doc_id: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE documents SET state = 'removing' WHERE doc_id = ?", (doc_id,))
            self._bump(db)

    def delete(self, doc_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
            self._bump(db)  # its chunks just left Chroma

    @staticmethod
    def _bump(db: sqlite3.Connection) -> None:
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    def close(self) -> None:
        self.db.close()
