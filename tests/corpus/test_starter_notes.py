"""The starter notes shipped in corpus/starter: enough of them, all loadable, all labelled and routed."""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest

from corpus import ROUTES, STARTER_DIR, Document, load_document

NOTES = sorted(STARTER_DIR.glob("*.md"))


@lru_cache(maxsize=None)
def load(path: Path) -> Document:
    return load_document(path)


def test_there_are_at_least_40_starter_notes():
    assert len(NOTES) >= 40


@pytest.mark.parametrize("note", NOTES, ids=lambda path: path.stem)
def test_starter_note_loads_with_title_routes_and_updated_date(note):
    doc = load(note)

    assert doc.title.strip()
    assert doc.routes
    assert set(doc.routes) <= set(ROUTES)
    assert doc.updated is not None and re.fullmatch(r"\d{4}-\d{2}-\d{2}", doc.updated)
    assert doc.sections


@pytest.mark.parametrize("note", NOTES, ids=lambda path: path.stem)
def test_starter_note_carries_the_educational_notice(note):
    raw = note.read_text(encoding="utf-8")

    assert "Educational note written for medassist" in raw
    assert "check" in raw


@pytest.mark.parametrize("route", ["diagnosis", "treatment", "medication"])
def test_starter_notes_cover_each_clinical_route_at_least_ten_times(route):
    counts = Counter(r for note in NOTES for r in load(note).routes)

    assert counts[route] >= 10, counts
