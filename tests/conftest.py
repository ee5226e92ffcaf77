"""Shared fixtures: the real MiniLM embedder (loaded once) and knowledge bases in temporary homes."""

from __future__ import annotations

import os
import socket
import textwrap
import time
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
def gemma_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gemma-home")


@pytest.fixture(scope="session")
def gemma_gguf(gemma_home) -> Path:
    """The packaged Gemma-3-270M GGUF, assembled once per test run."""
    from assistant.backends.gguf_convert import packaged_gguf

    return packaged_gguf(gemma_home)


@pytest.fixture(scope="session")
def gemma_models(gemma_home, gemma_gguf) -> Path:
    """A models folder holding Gemma-3-270M converted from the packaged GGUF (once per test run)."""
    from assistant.backends.transformers_backend import resolve_model

    resolve_model(None, gemma_home)
    return gemma_home / "models"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random Llama-architecture model folder (tests/tiny_model.py), for fast tests of mechanics."""
    from tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process, timeout: float = 60) -> None:
    """Return once something listens on loopback `port`; fail the test if `process` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with code {process.returncode} before listening on port {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    process.kill()
    pytest.fail(f"no server listening on port {port} after {timeout:.0f} s")


@pytest.fixture(scope="session")
def starter_home(tmp_path_factory, embedder):
    """A home with the starter notes indexed, built once per session: copy it before changing it."""
    from index import KnowledgeBase

    home = tmp_path_factory.mktemp("starter-home")
    KnowledgeBase(home, embedder=embedder).ensure_starter()
    return home


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
