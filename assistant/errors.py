"""Failures a user can meet that are not bugs (a model server down or failing mid-answer, a database another
process holds, a Chroma error), each in one line: the CLI prints it and exits 3, the chat shows it and goes on.
Our own errors already say what to do; the others are named by their type."""

from __future__ import annotations

import sqlite3
import sys


def expected(exc: BaseException) -> bool:
    from assistant.backends.base import BackendError
    from assistant.config import ConfigError
    from assistant.safety import QuestionError
    from index.store import StoreError

    chroma = sys.modules.get("chromadb.errors")  # not imported: not a Chroma error (importing it costs seconds)
    return (isinstance(exc, (BackendError, ConfigError, QuestionError, StoreError, sqlite3.OperationalError))
            or (chroma is not None and isinstance(exc, chroma.ChromaError)))


def describe(exc: BaseException) -> str:
    from assistant.backends.base import BackendError
    from assistant.config import ConfigError
    from assistant.safety import QuestionError
    from index.store import StoreError

    if isinstance(exc, (BackendError, ConfigError, QuestionError, StoreError)):
        return str(exc)
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return f"{exc}: another medassist process (an ingest?) is writing to it; try again when it is done"
    return f"{type(exc).__name__}: {exc}"
