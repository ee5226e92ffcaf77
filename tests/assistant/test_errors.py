"""Failures that are not bugs are one line naming the cause (the CLI exits 3 with it, the chat shows it)."""

from __future__ import annotations

import sqlite3

import pytest

from assistant.errors import describe, expected


def test_a_database_another_process_holds_is_expected_and_says_so(tmp_path):
    path = tmp_path / "manifest.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(sqlite3.OperationalError) as caught:
        sqlite3.connect(path, timeout=0).execute("SELECT * FROM t")
    holder.close()
    assert expected(caught.value)
    assert "database is locked" in describe(caught.value) and "another medassist process" in describe(caught.value)


def test_chroma_errors_are_expected_and_bugs_are_not():
    from chromadb.errors import NotFoundError

    assert expected(NotFoundError("Collection medassist does not exist"))
    assert describe(NotFoundError("gone")) == "NotFoundError: gone"
    assert not expected(ValueError("a bug")) and not expected(KeyError("a bug"))
