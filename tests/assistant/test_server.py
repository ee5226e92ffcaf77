"""`medassist serve`'s HTTP API, through a real uvicorn server on loopback over a copy of the starter home (the
evidence reader answers: no model)."""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner
from conftest import write_note
from live_server import LiveServer, copy_home
from test_tui import SIZE, ask, until

from assistant.cli import main

from assistant.config import load_config
from assistant.server.keys import KeyStore

QUESTION = "What is the apixaban dose in atrial fibrillation?"


@pytest.fixture(scope="module")
def server(starter_home, embedder, tmp_path_factory):
    from assistant.server.app import create_app
    from index import KnowledgeBase

    home = copy_home(starter_home, tmp_path_factory.mktemp("serve") / "home")
    kb = KnowledgeBase(home, embedder=embedder)
    with LiveServer(create_app(load_config(home), kb=kb)) as live:
        live.home, live.kb = home, kb
        yield live


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def events(response) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a server-sent event stream."""
    found, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            found.append((name, json.loads(line[len("data: "):])))
    return found


def test_health_and_openapi_schema(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model"] is None and health["generates"] is False
    assert health["auth"] is False  # loopback, no key yet
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/ask", "/v1/search", "/v1/sources", "/v1/ingest", "/v1/sources/{key}", "/v1/chat/completions"):
        assert path in paths


def test_ask_gives_the_answer_json_and_the_same_answer_streamed(client):
    answer = client.post("/v1/ask", json={"question": QUESTION}).json()
    assert answer["mode"] == "extractive" and answer["route"] == "medication"
    assert "[1]" in answer["answer"] and answer["citations"][0]["n"] == 1
    assert {"n", "doc_id", "title", "source", "section", "page", "text", "score"} <= set(answer["citations"][0])
    assert answer["safety"]["disclaimer"] and all(s["supported"] for s in answer["sentences"])

    with client.stream("POST", "/v1/ask", json={"question": QUESTION, "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        streamed = events(response)
    assert [name for name, _ in streamed] == ["route", "sources", "evidence", "final"]
    assert streamed[0][1] == {"route": "medication", "confidence": answer["route_confidence"]}
    assert [c["doc_id"] for c in streamed[1][1]] == [c["doc_id"] for c in answer["citations"]]
    assert streamed[-1][1]["answer"] == answer["answer"]


def test_an_abstained_answer_streams_its_route_then_the_final_answer(client):
    with client.stream("POST", "/v1/ask", json={"question": "Who won the 1966 football world cup?",
                                               "stream": True}) as response:
        streamed = events(response)
    assert [name for name, _ in streamed] == ["route", "final"]
    assert streamed[-1][1]["abstained"] and streamed[-1][1]["citations"] == []


def test_search_and_sources(client):
    passages = client.get("/v1/search", params={"q": "warfarin INR target", "k": 3}).json()
    assert len(passages) == 3 and passages[0]["title"] == "Warfarin" and passages[0]["score"] > 0
    only = client.get("/v1/search", params={"q": "warfarin", "route": "diagnosis"}).json()
    assert only and all("diagnosis" in p["routes"] for p in only)
    documents = client.get("/v1/sources").json()
    assert len(documents) >= 50 and {"doc_id", "title", "source", "n_chunks"} <= set(documents[0])


def test_upload_ingest_search_and_remove(client, server):
    note = (b"---\ntitle: Zorblax dosing\nroute: medication\n---\n\n# Zorblax dosing\n\n## Adults\n\n"
            b"Zorblax is given as 40 mg once daily with food; halve the dose when eGFR is below 30.\n")
    files = [("files", ("zorblax.md", note, "text/markdown")),
             ("files", ("../../escape/attempt.md", b"# Escape\n\nA note whose name points out of the folder.\n",
                        "text/markdown")),
             ("files", ("broken.pdf", b"%PDF-1.4 not really a pdf", "application/pdf"))]
    report = client.post("/v1/ingest", files=files).json()
    statuses = {r["path"]: r["status"] for r in report["results"]}
    assert statuses == {"zorblax.md": "added", "attempt.md": "added", "broken.pdf": "failed"}
    assert report["counts"] == {"added": 2, "failed": 1}
    assert next(r for r in report["results"] if r["status"] == "failed")["reason"]
    assert (server.home / "uploads" / "attempt.md").exists()  # kept inside the uploads folder, whatever its name said
    assert not (server.home.parent / "escape").exists()

    again = client.post("/v1/ingest", files=files[:1]).json()
    assert again["results"][0]["status"] == "unchanged"

    hit = client.get("/v1/search", params={"q": "zorblax dose eGFR", "k": 1}).json()[0]
    assert hit["title"] == "Zorblax dosing" and "40 mg" in hit["text"]
    doc_id = report["results"][0]["doc_id"]
    removed = client.delete(f"/v1/sources/{doc_id[:10]}").json()["removed"]
    assert [d["doc_id"] for d in removed] == [doc_id]
    assert all(p["title"] != "Zorblax dosing" for p in client.get("/v1/search", params={"q": "zorblax"}).json())
    assert client.delete("/v1/sources/attempt.md").json()["removed"][0]["title"]  # by the uploaded file's name
    missing = client.delete(f"/v1/sources/{doc_id[:10]}")
    assert missing.status_code == 404 and "no document matches" in missing.json()["error"]["message"]


@pytest.mark.parametrize("body, field", [
    ({"question": QUESTION, "k": 0}, "body.k"),
    ({"question": ""}, "body.question"),
    ({"question": "x" * 4001}, "body.question"),
    ({"question": QUESTION, "route": "surgery"}, "body.route"),
    ({"question": QUESTION, "colour": "blue"}, "body.colour"),
    ({}, "body.question"),
])
def test_bad_input_is_a_json_error_naming_the_field(client, body, field):
    response = client.post("/v1/ask", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == field
    assert field in error["message"] and error["fields"][0]["reason"]
    assert "x" * 100 not in response.text  # the input is not echoed back


def test_not_json_and_wrong_method_are_json_errors(client):
    response = client.post("/v1/ask", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"]["fields"]
    assert client.get("/v1/ask").json()["error"]["type"] == "method_not_allowed"
    assert client.get("/v1/nothing-here").json()["error"]["type"] == "not_found"


def test_bodies_over_the_limit_are_refused_before_they_are_read(client, server):
    from assistant.server.app import JSON_LIMIT

    response = client.post("/v1/ask", content=b"x" * (JSON_LIMIT + 1), headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["type"] == "request_too_large"

    def chunked():  # no Content-Length: counted as it arrives
        for _ in range(JSON_LIMIT // 2**16 + 2):
            yield b" " * 2**16

    response = client.post("/v1/ask", content=chunked(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    limit = load_config(server.home).max_file_mb * 2**20 + 2**20
    big = [("files", ("big.md", b"a" * (limit + 1), "text/markdown"))]
    assert client.post("/v1/ingest", files=big).status_code == 413
    assert not (server.home / "uploads" / "big.md").exists()


def test_an_unexpected_failure_is_logged_not_shown(client, server, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("internal detail /secret/path")

    monkeypatch.setattr(server.kb, "search", broken)
    response = client.get("/v1/search", params={"q": "warfarin"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "server_error" and "logged on the server as" in error["message"]
    assert "secret" not in response.text and "Traceback" not in response.text
    assert "/secret/path" in caplog.text  # the server's log has it
    with client.stream("POST", "/v1/ask", json={"question": QUESTION, "stream": True}) as streamed:
        name, data = events(streamed)[-1]
    assert name == "error" and data["type"] == "server_error" and "secret" not in json.dumps(data)


def test_keys_are_required_once_one_exists_and_revoking_one_takes_effect_at_once(client, server):
    store = KeyStore(server.home)
    record, key = store.add("ward 7")
    try:
        assert key.startswith("mda_") and key not in (server.home / "api_keys.json").read_text()
        refused = client.get("/v1/sources")
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
        assert refused.headers["www-authenticate"] == "Bearer"
        assert client.get("/v1/sources", headers={"Authorization": f"Bearer {key}x"}).status_code == 401
        assert client.get("/v1/sources", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert client.get("/healthz").json()["auth"] is True  # health needs no key
        store.revoke(record.id)
        assert client.get("/v1/sources", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    finally:
        (server.home / "api_keys.json").unlink()
    assert client.get("/v1/sources").status_code == 200


def test_ask_with_server_prints_the_servers_answer(client, server, tmp_path):
    local = tmp_path / "laptop"  # nothing indexed here: the server answers
    expected = client.post("/v1/ask", json={"question": QUESTION}).json()
    result = CliRunner().invoke(main, ["--home", str(local), "ask", "--server", server.url, "--json", QUESTION],
                                catch_exceptions=False)
    assert result.exit_code == 0
    printed = json.loads(result.stdout)
    assert printed["answer"] == expected["answer"] and printed["citations"] == expected["citations"]
    plain = CliRunner().invoke(main, ["--home", str(local), "ask", "--server", server.url, QUESTION])
    assert "Sources" in plain.stdout and "[1]" in plain.stdout and "not a diagnosis" in plain.stdout
    assert not (local / "manifest.sqlite3").exists()
    mixed = CliRunner().invoke(main, ["--home", str(local), "ask", "--server", server.url, "--model", "x", QUESTION])
    assert mixed.exit_code == 2 and "drop --backend" in mixed.output
    down = CliRunner().invoke(main, ["--home", str(local), "ask", "--server", "http://127.0.0.1:9", QUESTION])
    assert down.exit_code == 3 and "cannot reach the medassist server" in down.output


async def test_chat_with_server_answers_and_ingests_through_it(server, tmp_path):
    from assistant.tui.app import MedassistApp

    note = write_note(tmp_path / "mine", "kawasaki.md", "Kawasaki disease", "diagnosis", {
        "Criteria": "Kawasaki disease is diagnosed by fever for five days or more with four of five principal "
                    "features: conjunctival injection, oral changes, rash, extremity changes and cervical lymph nodes."})
    app = MedassistApp(load_config(tmp_path / "laptop", server=server.url))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.agent is not None)
        assert "via medassist serve" in app.chat.query_one("StatusBar").model
        answer = await ask(pilot, app, QUESTION)
        assert answer["route"] == "medication" and "[1]" in answer["answer"]
        assert app.chat.query_one("#source-list").option_count == len(answer["citations"])
        await pilot.press("f4")
        app.screen.query_one("#ingest-path").value = str(note.parent)
        await pilot.press("enter")
        await until(pilot, lambda: any(line.startswith("done:") for line in app.ingest_lines))
        assert any("added" in line and "kawasaki.md" in line for line in app.ingest_lines)
        await pilot.press("escape")
        answer = await ask(pilot, app, "How is Kawasaki disease diagnosed?")
        assert answer["citations"][0]["title"] == "Kawasaki disease"
    assert (server.home / "uploads" / "kawasaki.md").exists()  # it went to the server
    assert not (tmp_path / "laptop" / "manifest.sqlite3").exists()
    assert (tmp_path / "laptop" / "history.sqlite3").exists()  # the chats stay on the laptop
