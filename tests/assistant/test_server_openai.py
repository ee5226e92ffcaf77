"""Scale-out on loopback, as the README describes it: the model on an OpenAI-compatible server (llama.cpp's,
serving the packaged Gemma GGUF), the vectors on a Chroma server, `medassist serve` in front, with an API key.
Clients: the real `openai` package (chat completions) and medassist's own remote client (`ask/chat --server`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import openai
import pytest
from conftest import free_port, wait_for_port, write_note
from live_server import LiveServer
from test_llamacpp import server_url  # noqa: F401  (llama.cpp's server with the packaged Gemma, per module)

from assistant.backends.base import BackendError
from assistant.config import Secret, load_config
from assistant.remote import RemoteAgent
from assistant.server.keys import KeyStore
from index.manifest import Manifest

QUESTION = "Which drugs raise lithium levels?"


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory):
    chroma = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    port = free_port()
    proc = subprocess.Popen([chroma, "run", "--path", str(tmp_path_factory.mktemp("chroma")), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def team(server_url, chroma_url, embedder, tmp_path_factory):  # noqa: F811
    """medassist serve in front of both servers; the notes are uploaded through its API."""
    from assistant.server.app import create_app
    from index import KnowledgeBase

    home = tmp_path_factory.mktemp("team") / "home"
    home.mkdir()
    Manifest(home / "manifest.sqlite3").set_meta("starter_ingested", "skipped by test")
    (home / "config.toml").write_text(f'backend = "openai"\nbase_url = "{server_url}"\nchroma_url = "{chroma_url}"\n'
                                      'generate = "always"\nmax_new_tokens = 64\nmax_think_tokens = 24\n')
    config = load_config(home)
    kb = KnowledgeBase(home, chroma_url=chroma_url, embedder=embedder)
    _, key = KeyStore(home).add("tests")
    notes = tmp_path_factory.mktemp("notes")
    paths = [write_note(notes, "lithium.md", "Lithium monitoring", "medication", {
                 "Levels": "Lithium serum levels are checked 12 hours after the dose, aiming for 0.4 to 1.0 mmol/L.",
                 "Interactions": "Thiazide diuretics, ACE inhibitors and NSAIDs raise lithium levels and can cause "
                                 "toxicity."}),
             write_note(notes, "gout.md", "Gout flare", "treatment", {
                 "First line": "Colchicine 500 micrograms two to four times daily, or an NSAID such as naproxen, "
                               "treats an acute gout flare."})]
    with LiveServer(create_app(config, kb=kb)) as live:
        live.key, live.kb = key, kb
        agent = RemoteAgent(live.url, Secret(key))
        assert {r.status for r in agent.kb.ingest(paths)} == {"added"}
        yield live


@pytest.fixture(scope="module")
def client(team):
    return openai.OpenAI(base_url=f"{team.url}/v1", api_key=team.key, max_retries=0)


def test_the_openai_client_gets_a_cited_answer_with_its_sources(client, team):
    assert [m.id for m in client.models.list()] == ["medassist"]
    completion = client.chat.completions.create(model="medassist", messages=[
        {"role": "system", "content": "You are helpful."}, {"role": "user", "content": QUESTION}])
    text = completion.choices[0].message.content
    assert "[1]" in text and "Sources:\n[1] Lithium monitoring" in text and "not a diagnosis" in text
    answer = completion.model_extra["medassist"]
    assert answer["citations"][0]["title"] == "Lithium monitoring"
    assert answer["backend"] == "openai" and answer["model"] == "gemma-test"  # the model wrote after the quotes
    assert completion.choices[0].finish_reason == "stop"


def test_the_openai_client_streams_the_reasoning_then_the_checked_text(client):
    stream = client.chat.completions.create(model="medassist", stream=True,
                                            messages=[{"role": "user", "content": QUESTION}])
    reasoning, content, final = [], [], None
    for chunk in stream:
        delta = chunk.choices[0].delta
        reasoning.append((delta.model_extra or {}).get("reasoning_content") or "")
        content.append(delta.content or "")
        final = chunk
    assert "".join(reasoning).strip()  # the model's thinking, as it was written
    assert "Sources:\n[1] Lithium monitoring" in "".join(content)
    assert final.choices[0].finish_reason == "stop"
    greedy = client.chat.completions.create(model="medassist", messages=[{"role": "user", "content": QUESTION}])
    assert "".join(content) == greedy.choices[0].message.content  # temperature 0: the same answer either way


def test_bad_keys_and_bad_requests_are_errors_the_openai_client_shows(team):
    wrong = openai.OpenAI(base_url=f"{team.url}/v1", api_key="mda_nope_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="invalid API key"):
        wrong.chat.completions.create(model="medassist", messages=[{"role": "user", "content": QUESTION}])
    right = openai.OpenAI(base_url=f"{team.url}/v1", api_key=team.key, max_retries=0)
    with pytest.raises(openai.UnprocessableEntityError, match="no text to answer"):
        right.chat.completions.create(model="medassist", messages=[{"role": "assistant", "content": "hi"}])


def test_the_remote_client_streams_evidence_reasoning_and_the_checked_answer(team):
    agent = RemoteAgent(team.url, Secret(team.key))
    assert agent.generate and agent.backend.model_name == "gemma-test"
    seen = []
    answer = agent.ask(QUESTION, on_evidence=lambda evidence: seen.append(("evidence", evidence.mode)),
                       on_text=lambda phase, piece: seen.append((phase, piece)))
    assert seen[0] == ("evidence", "extractive")
    assert {phase for phase, _ in seen[1:]} == {"reasoning", "answer"}
    assert answer.citations[0].title == "Lithium monitoring" and answer.model == "gemma-test"
    assert answer.mode in ("generated", "extractive") and answer.sentences

    cancel, pieces = threading.Event(), []

    def stop_soon(phase, piece):
        pieces.append(piece)
        cancel.set()

    stopped = agent.ask(QUESTION, on_text=stop_soon, cancel=cancel)
    assert len(pieces) == 1 and stopped.mode == "extractive"  # what was shown stands

    with pytest.raises(BackendError, match="needs an API key"):
        RemoteAgent(team.url)
    with pytest.raises(BackendError, match="invalid API key"):
        RemoteAgent(team.url, Secret("mda_nope_nope")).ask(QUESTION)


def test_the_vectors_live_on_the_chroma_server(team, chroma_url):
    import chromadb

    port = int(chroma_url.rsplit(":", 1)[1])
    remote = chromadb.HttpClient(host="127.0.0.1", port=port).get_collection(team.kb.collection.name)
    assert remote.count() == team.kb.verify()["manifest"] > 0
