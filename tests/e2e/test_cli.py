"""The `medassist` command line, driven as a user would: exit codes, per-file reports, JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.cli import main
from conftest import write_note
from index.manifest import Manifest

MEDASSIST = str(Path(sys.executable).parent / "medassist")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A home whose starter notes count as already handled, so each test indexes only its own files."""
    home = tmp_path / "home"
    home.mkdir()
    Manifest(home / "manifest.sqlite3").set_meta("starter_ingested", "skipped by test")
    monkeypatch.setenv("MEDASSIST_HOME", str(home))
    return home


def run(*args: str):
    """The CLI in process; an exception it does not handle fails the test with its traceback (expected failures
    are one line and an exit code)."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_first_command_ingests_starter_notes_once(tmp_path):
    env = {**os.environ, "MEDASSIST_HOME": str(tmp_path / "fresh")}
    first = subprocess.run([MEDASSIST, "search", "DOAC dose reduction in renal impairment", "--json", "-k", "3"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "First run" in first.stderr
    passages = json.loads(first.stdout)
    assert len(passages) == 3
    assert {"title", "section", "source", "page", "score", "routes", "doc_id", "text"} <= passages[0].keys()
    assert any("anticoagulant" in p["title"].lower() for p in passages)

    second = subprocess.run([MEDASSIST, "sources", "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0 and "First run" not in second.stderr
    assert len(json.loads(second.stdout)) >= 40


def test_ingest_reports_each_file_and_exits_1_when_one_failed(home, notes, tmp_path):
    corrupt = tmp_path / "corrupt.pdf"
    corrupt.write_bytes(b"%PDF-1.4 this is not really a pdf")
    result = run("ingest", str(notes["gout"]), str(corrupt), str(notes["lithium"]))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert any("failed" in line and "corrupt.pdf" in line for line in lines)
    assert sum("added" in line for line in lines) >= 2
    assert "2 added, 1 failed" in result.stderr
    again = run("ingest", str(notes["gout"]))
    assert again.exit_code == 0 and "1 unchanged" in again.stderr


def test_ingest_json_prints_one_object_per_file(home, notes):
    result = run("ingest", "--json", "--route", "general", *map(str, notes.values()))
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["added"] * 3
    assert all(r["doc_id"] and r["chunks"] >= 1 for r in rows)


def test_ingest_reports_links_out_of_the_folder_and_follows_them_only_when_asked(home, notes, tmp_path):
    folder = notes["gout"].parent
    (folder / "up").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    write_note(tmp_path / "elsewhere", "diary.md", "Private diary", "general", {"Body": "Not a reference."})
    walked = run("ingest", "-r", str(folder))
    assert walked.exit_code == 0 and "3 added, 1 skipped" in walked.stderr
    assert "--follow-links" in " ".join(walked.stderr.split())
    followed = run("ingest", "-r", "--follow-links", str(folder))
    assert followed.exit_code == 0 and "1 added, 3 unchanged" in followed.stderr


def test_sources_search_and_remove(home, notes):
    run("ingest", *map(str, notes.values()))
    listed = json.loads(run("sources", "--json").stdout)
    assert sorted(d["title"] for d in listed) == ["Appendicitis", "Gout flare", "Lithium monitoring"]

    hits = json.loads(run("search", "lithium toxicity", "--route", "medication", "--json").stdout)
    assert hits and all("medication" in h["routes"] for h in hits)
    assert hits[0]["title"] == "Lithium monitoring"

    gout = next(d for d in listed if d["title"] == "Gout flare")
    assert run("remove", gout["doc_id"][:12]).exit_code == 0
    assert "Gout flare" not in run("sources").stdout
    missing = run("remove", gout["doc_id"][:12])
    assert missing.exit_code == 1 and "No document matches" in missing.stderr


def test_sources_missing_and_prune_remove_documents_whose_files_are_gone(home, notes):
    run("ingest", *map(str, notes.values()))
    assert "Nothing to prune" in run("prune").stderr
    notes["gout"].unlink()
    missing = json.loads(run("sources", "--missing", "--json").stdout)
    assert [d["title"] for d in missing] == ["Gout flare"]

    dry = run("prune", "--dry-run")
    assert dry.exit_code == 0 and "Gout flare" in dry.stdout and "dry run" in dry.stderr
    declined = CliRunner().invoke(main, ["prune"], input="n\n", catch_exceptions=False)
    assert declined.exit_code == 0 and "Remove these 1 documents" in declined.stderr
    assert "Nothing removed" in declined.stderr
    assert len(json.loads(run("sources", "--json").stdout)) == 3

    pruned = run("prune", "--yes")
    assert pruned.exit_code == 0 and "removed" in pruned.stderr and "Gout flare" in pruned.stderr
    assert sorted(d["title"] for d in json.loads(run("sources", "--json").stdout)) == ["Appendicitis",
                                                                                        "Lithium monitoring"]


def test_plain_search_output_names_title_section_and_source(home, notes):
    run("ingest", str(notes["appendix"]))
    result = run("search", "right iliac fossa pain")
    assert result.exit_code == 0
    assert "[1] Appendicitis — Signs" in result.stdout
    assert str(notes["appendix"].resolve()) in result.stdout.replace("\n", "")


def test_invalid_config_is_one_clear_line_and_exit_3(home):
    (home / "config.toml").write_text("rrf_k = [oops\n")
    result = run("search", "anything")
    assert result.exit_code == 3
    assert "config.toml" in result.stderr and "not valid TOML" in result.stderr
    (home / "config.toml").write_text("rrf_k = -5\n")
    assert "must be positive" in run("search", "anything").stderr
    (home / "config.toml").write_text("colour = 'blue'\n")
    assert "unknown setting" in run("sources").stderr


def test_unreachable_chroma_server_exits_3(home):
    result = run("--chroma-url", "http://127.0.0.1:9", "search", "anything")
    assert result.exit_code == 3 and "cannot reach the Chroma server" in result.stderr


def test_help_documents_exit_codes():
    result = run("--help")
    assert "Exit codes" in result.output and "3  bad configuration" in result.output


def test_ask_prints_the_evidence_first_and_loads_no_model_by_default(home, notes, tiny_model):
    """By default the evidence reader answers alone; with a model on, the quotes come first and stand when
    the model's text does not pass the check (the tiny random model's never does)."""
    run("ingest", str(notes["gout"]))
    alone = run("ask", "How is an acute gout flare treated?")
    assert alone.exit_code == 0, alone.output
    assert "From the sources" in alone.stdout and "Colchicine" in alone.stdout
    assert "mode: extractive" in alone.stdout and "model:" not in alone.stdout  # no model was loaded

    both = run("ask", "--model", str(tiny_model), "--generate", "always", "How is an acute gout flare treated?")
    assert both.exit_code == 0, both.output
    evidence, _, rest = both.stdout.partition("did not pass the citation check")
    assert "From the sources" in evidence and "Colchicine" in evidence and rest  # the quotes came before the verdict
    rest = " ".join(rest.split())  # the status line may wrap at the runner's 80 columns
    assert "mode: extractive" in rest and f"model: {tiny_model}" in rest, rest


def test_brackets_in_titles_paths_and_questions_are_printed_as_written(home, tmp_path):
    """Rich read `[draft notes]` as a style (the words vanished) and crashed on `[/INST]`: what documents and
    users write is printed as text, never as markup."""
    title = "Gout [draft notes] [/INST]"
    note = write_note(tmp_path / "[notes]", "gout [v2].md", title, "treatment", {
        "First line [/b]": "Colchicine 500 micrograms two to four times daily treats an acute gout flare."})
    assert "gout [v2].md" in run("ingest", str(note)).stderr
    listed = run("sources").stdout
    assert all(word in listed for word in title.split())  # the table wraps the title at 80 columns
    assert f"[1] {title} — First line [/b]" in run("search", "colchicine for a gout flare").stdout
    assert title in run("ask", "what does [/b] mean for colchicine in a gout flare?").stdout
    doc_id = json.loads(run("sources", "--json").stdout)[0]["doc_id"]
    assert title in run("remove", doc_id).stderr
    assert "[/b] [x y]?" in run("route", "what does [/b] [x y]?").stdout


def test_control_characters_in_file_names_never_reach_the_terminal(home, tmp_path):
    """A file named with an escape sequence would retitle (or clear) the terminal of whoever lists it."""
    note = write_note(tmp_path / "notes", "gout\x1b]0;owned\x07.md", "Gout", "treatment", {
        "First line": "Colchicine 500 micrograms two to four times daily treats an acute gout flare."})
    ingested = run("ingest", str(note)).stderr
    assert "gout?]0;owned?.md" in ingested and "\x1b" not in ingested
    listed = run("sources").stdout
    assert "\x1b" not in listed and "\x07" not in listed and "Gout" in listed
    for output in (run("search", "colchicine gout flare").stdout, run("ask", "colchicine dose for a gout flare?").stdout):
        assert "\x1b" not in output and "\x07" not in output and "gout?]0;owned?.md" in output


def test_a_question_too_long_to_be_one_is_refused_in_one_line(home):
    result = run("ask", "x" * 5000)
    assert result.exit_code == 3
    assert result.stderr.strip() == "error: the question is 5,000 characters long; at most 4,000 are read: ask it in fewer words"


def test_a_malformed_server_url_is_one_line_that_never_shows_the_key(home):
    (home / "config.toml").write_text('api_key = "sk-cli-0123-SECRET"\n')
    result = run("ask", "--no-rag", "--backend", "openai", "--base-url", "http://x:abc/v1", "What is gout?")
    assert result.exit_code == 3 and "base_url 'http://x:abc/v1' is not a valid URL" in result.stderr
    assert "sk-cli-0123-SECRET" not in result.output


def test_a_folder_that_is_not_a_model_is_one_clear_line(home, tmp_path):
    """Transformers says so with a ValueError, which used to reach the user as a traceback."""
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "nonsense"}')
    result = run("ask", "--no-rag", "--model", str(folder), "What is gout?")
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: cannot load model {folder}: ")
