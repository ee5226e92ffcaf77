"""Shared fixtures: the real MiniLM embedder (loaded once) and knowledge bases in temporary homes."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """No test may touch the real user data dir."""
    monkeypatch.setenv("MEDASSIST_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="session")
def embedder():
    from index.embed import Embedder

    return Embedder()


@pytest.fixture(scope="session")
def gemma_models(tmp_path_factory) -> Path:
    """A models folder holding Gemma-3-270M converted from the packaged GGUF (once per test run)."""
    from assistant.backends.transformers_backend import resolve_model

    home = tmp_path_factory.mktemp("gemma-home")
    resolve_model(None, home)
    return home / "models"


@pytest.fixture
def make_kb(tmp_path, embedder):
    """A factory for KnowledgeBase objects sharing the loaded embedder; the default home is per test."""
    from index import KnowledgeBase

    def make(home: Path | None = None, **kwargs):
        return KnowledgeBase(home or tmp_path / "kb", embedder=embedder, **kwargs)

    return make


def write_note(folder: Path, name: str, title: str, route: str, sections: dict[str, str]) -> Path:
    """A small Markdown reference note with front matter, as a user would write one."""
    body = "\n\n".join(f"## {heading}\n\n{textwrap.dedent(text).strip()}" for heading, text in sections.items())
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\ntitle: {title}\nroute: {route}\n---\n\n# {title}\n\n{body}\n", encoding="utf-8")
    return path


@pytest.fixture
def notes(tmp_path) -> dict[str, Path]:
    folder = tmp_path / "notes"
    return {
        "gout": write_note(folder, "gout.md", "Gout flare", "treatment", {
            "First line": "Colchicine 500 micrograms two to four times daily, or an NSAID such as naproxen, "
                          "treats an acute gout flare. Allopurinol is not started during the flare itself.",
            "Prevention": "Urate-lowering therapy with allopurinol aims for serum urate below 360 micromol/L.",
        }),
        "lithium": write_note(folder, "lithium.md", "Lithium monitoring", "medication", {
            "Levels": "Lithium serum levels are checked 12 hours after the dose, aiming for 0.4 to 1.0 mmol/L.",
            "Interactions": "Thiazide diuretics, ACE inhibitors and NSAIDs raise lithium levels and can cause toxicity.",
        }),
        "appendix": write_note(folder, "appendicitis.md", "Appendicitis", "diagnosis", {
            "Signs": "Periumbilical pain migrating to the right iliac fossa, anorexia and fever suggest appendicitis. "
                     "The Alvarado score combines symptoms, signs and the white cell count.",
        }),
    }
