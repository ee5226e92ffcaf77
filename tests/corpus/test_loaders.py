"""corpus.load_document: every supported format, route handling, document identity, and every expected failure."""

from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path

import docx
import pytest
from fpdf import FPDF
from pypdf import PdfWriter

from corpus import LoadError, load_document

# --- helpers -------------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    return write(path, "".join(json.dumps(row) + "\n" for row in rows))


def make_pdf(path: Path, pages: list[str], title: str | None = None) -> Path:
    pdf = FPDF()
    if title:
        pdf.set_title(title)
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    pdf.output(str(path))
    return path


def load_error(path: Path, **kwargs) -> LoadError:
    """Load `path`, expecting a LoadError that names the file; return it for checks on the reason."""
    with pytest.raises(LoadError) as info:
        load_document(path, **kwargs)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    return info.value


def effective_routes(doc) -> list[tuple[str, ...]]:
    """The routes each section's chunks will carry: its own, else the document's."""
    return [section.routes or doc.routes for section in doc.sections]


NOTE_WITH_FRONT_MATTER = """\
---
title: Metformin
route: [medication, treatment]
source: https://example.org/metformin
updated: 2025-01-02
---

> **Educational note.** Check it against current guidance before use.

# Metformin

First-line oral drug for type 2 diabetes.

## Doses
Start low and titrate.

### Renal
Review the dose when eGFR falls below 45.

## Asthma/COPD overlap
No specific interaction.
"""

MEDQUAD_ROWS = [
    {"question": "What are the treatments for gout?", "answer": "NSAIDs, colchicine or steroids.",
     "source": "NIHSeniorHealth", "url": "https://example.org/gout/treatment", "focus": "Gout", "qtype": "treatment"},
    {"question": "What are the symptoms of gout?", "answer": "A sudden, hot, swollen and painful joint.",
     "source": "NIHSeniorHealth", "url": "https://example.org/gout/symptoms", "focus": "Gout", "qtype": "symptoms"},
    {"question": "What is (are) Gout?", "answer": "A form of inflammatory arthritis caused by urate crystals.",
     "source": "NIHSeniorHealth", "url": "https://example.org/gout", "focus": "Gout", "qtype": "information"},
]


# --- Markdown ------------------------------------------------------------------------------------


def test_markdown_front_matter_sets_title_routes_reference_and_updated(tmp_path):
    doc = load_document(write(tmp_path / "metformin.md", NOTE_WITH_FRONT_MATTER))

    assert doc.kind == "markdown"
    assert doc.title == "Metformin"
    assert doc.routes == ("medication", "treatment")
    assert doc.reference == "https://example.org/metformin"
    assert doc.updated == "2025-01-02"
    assert doc.source == str((tmp_path / "metformin.md").resolve())


def test_markdown_front_matter_route_may_be_a_single_string(tmp_path):
    doc = load_document(write(tmp_path / "n.md", "---\ntitle: Gout\nroute: diagnosis\n---\n# Gout\n\nHot joint.\n"))

    assert doc.routes == ("diagnosis",)


def test_markdown_without_front_matter_is_general_and_titled_by_its_heading(tmp_path):
    doc = load_document(write(tmp_path / "gout-notes.md", "# Gout\n\nHot swollen joint.\n\n## Tests\nUrate.\n"))

    assert doc.title == "Gout"
    assert doc.routes == ("general",)
    assert doc.updated is None
    assert doc.reference is None


def test_markdown_sections_carry_their_heading_path_without_the_title(tmp_path):
    doc = load_document(write(tmp_path / "metformin.md", NOTE_WITH_FRONT_MATTER))

    by_path = {section.path: section.text for section in doc.sections}
    assert by_path[()] == "First-line oral drug for type 2 diabetes."
    assert by_path[("Doses",)] == "Start low and titrate."
    assert by_path[("Doses", "Renal")] == "Review the dose when eGFR falls below 45."
    assert all("Metformin" not in section.path for section in doc.sections)


def test_markdown_leading_blockquote_notice_is_not_a_section(tmp_path):
    doc = load_document(write(tmp_path / "metformin.md", NOTE_WITH_FRONT_MATTER))

    assert all("Educational note" not in section.text for section in doc.sections)
    assert len(doc.sections) == 4


def test_markdown_heading_with_a_slash_stays_whole(tmp_path):
    doc = load_document(write(tmp_path / "metformin.md", NOTE_WITH_FRONT_MATTER))

    assert ("Asthma/COPD overlap",) in [section.path for section in doc.sections]
    assert not any(part in ("Asthma", "COPD overlap") for section in doc.sections for part in section.path)


def test_markdown_first_of_several_sibling_headings_is_not_dropped_from_paths(tmp_path):
    text = ("---\ntitle: Metformin\n---\n\n## Doses\nStart low.\n\n### Renal\nReview below eGFR 45.\n\n"
            "## Side effects\nGI upset.\n")
    doc = load_document(write(tmp_path / "metformin.md", text))

    assert [section.path for section in doc.sections] == [("Doses",), ("Doses", "Renal"), ("Side effects",)]


# --- plain text ----------------------------------------------------------------------------------


def test_utf8_text_file_is_one_general_section_titled_by_file_name(tmp_path):
    doc = load_document(write(tmp_path / "renal-dosing_notes.txt", "Reduce the dose when eGFR < 30 — see BNF.\n"))

    assert doc.kind == "text"
    assert doc.title == "renal dosing notes"
    assert doc.routes == ("general",)
    assert [section.text for section in doc.sections] == ["Reduce the dose when eGFR < 30 — see BNF."]


def test_latin1_text_file_is_decoded_correctly(tmp_path):
    path = tmp_path / "vertigo.txt"
    path.write_bytes("Ménière's disease café".encode("latin-1"))

    text = load_document(path).sections[0].text

    assert "Ménière" in text
    assert "café" in text


@pytest.mark.parametrize("encoding, bom", [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff")])
def test_utf16_text_file_with_bom_is_decoded(tmp_path, encoding, bom):
    path = tmp_path / "vertigo.txt"
    path.write_bytes(bom + "Ménière's disease — vertigo and tinnitus".encode(encoding))

    assert load_document(path).sections[0].text == "Ménière's disease — vertigo and tinnitus"


# --- PDF -----------------------------------------------------------------------------------------


def test_pdf_pages_become_sections_numbered_from_one(tmp_path):
    pages = ["Warfarin loading doses.", "INR targets by indication.", "Reversal with vitamin K."]
    doc = load_document(make_pdf(tmp_path / "handbook.pdf", pages))

    assert doc.kind == "pdf"
    assert [section.page for section in doc.sections] == [1, 2, 3]
    assert [section.text for section in doc.sections] == pages


def test_pdf_title_comes_from_metadata(tmp_path):
    doc = load_document(make_pdf(tmp_path / "handbook.pdf", ["Some text."], title="Anticoagulation handbook"))

    assert doc.title == "Anticoagulation handbook"


def test_pdf_without_metadata_title_is_named_after_the_file(tmp_path):
    doc = load_document(make_pdf(tmp_path / "handbook.pdf", ["Some text."]))

    assert doc.title == "handbook"


# --- HTML ----------------------------------------------------------------------------------------

SEPSIS_HTML = """<!doctype html>
<html><head><title>Sepsis guide</title>
<style>.alert { color: red }</style>
<script>var tracker = "SCRIPT-CONTENT";</script></head>
<body>
<nav><a href="/">NAV-CONTENT home</a></nav>
<h1>Sepsis guide</h1>
<p>Sepsis is a life-threatening response to infection.</p>
<h2>Recognition</h2>
<p>Look for fever, tachycardia and confusion.</p>
<h3>Lactate</h3>
<p>Measure serum lactate.</p>
<h2>Treatment</h2>
<ul><li>Give antibiotics within one hour.</li><li>Give intravenous fluids.</li></ul>
</body></html>
"""


def test_html_title_element_becomes_the_document_title(tmp_path):
    doc = load_document(write(tmp_path / "sepsis.html", SEPSIS_HTML))

    assert doc.kind == "html"
    assert doc.title == "Sepsis guide"


def test_html_script_style_and_nav_are_removed(tmp_path):
    doc = load_document(write(tmp_path / "sepsis.html", SEPSIS_HTML))

    everything = " ".join(section.text for section in doc.sections)
    assert "Measure serum lactate." in everything
    assert "SCRIPT-CONTENT" not in everything
    assert "color: red" not in everything
    assert "NAV-CONTENT" not in everything


def test_html_headings_become_section_paths(tmp_path):
    doc = load_document(write(tmp_path / "sepsis.html", SEPSIS_HTML))

    by_path = {section.path: section.text for section in doc.sections}
    assert by_path == {
        (): "Sepsis is a life-threatening response to infection.",
        ("Recognition",): "Look for fever, tachycardia and confusion.",
        ("Recognition", "Lactate"): "Measure serum lactate.",
        ("Treatment",): "Give antibiotics within one hour.\nGive intravenous fluids.",
    }


# --- DOCX ----------------------------------------------------------------------------------------


def make_docx(path: Path, title: str | None = None) -> Path:
    document = docx.Document()
    if title:
        document.core_properties.title = title
    document.add_heading("Heart failure", 1)
    document.add_paragraph("A syndrome of breathlessness, fatigue and fluid retention.")
    document.add_heading("Diagnosis", 1)
    document.add_paragraph("Measure NT-proBNP.")
    document.add_heading("Echocardiography", 2)
    document.add_paragraph("Arrange an echo within two weeks if NT-proBNP is high.")
    document.add_heading("Treatment", 1)
    document.add_paragraph("Start an ACE inhibitor and a beta-blocker.")
    document.save(path)
    return path


def test_docx_heading_paragraphs_become_section_paths(tmp_path):
    doc = load_document(make_docx(tmp_path / "heart-failure.docx"))

    assert doc.kind == "docx"
    assert doc.title == "heart-failure"
    assert [(section.path, section.text) for section in doc.sections] == [
        (("Heart failure",), "A syndrome of breathlessness, fatigue and fluid retention."),
        (("Diagnosis",), "Measure NT-proBNP."),
        (("Diagnosis", "Echocardiography"), "Arrange an echo within two weeks if NT-proBNP is high."),
        (("Treatment",), "Start an ACE inhibitor and a beta-blocker."),
    ]


def test_docx_core_title_becomes_document_title_and_leaves_section_paths(tmp_path):
    doc = load_document(make_docx(tmp_path / "hf.docx", title="Heart failure"))

    assert doc.title == "Heart failure"
    assert doc.sections[0].path == ()
    assert all("Heart failure" not in section.path for section in doc.sections)


# --- MedQuAD JSONL -------------------------------------------------------------------------------


def test_medquad_rows_become_sections_with_their_own_url_and_focus(tmp_path):
    doc = load_document(write_jsonl(tmp_path / "medquad.jsonl", MEDQUAD_ROWS))

    assert doc.kind == "medquad"
    assert [section.path for section in doc.sections] == [(row["question"],) for row in MEDQUAD_ROWS]
    assert [section.text for section in doc.sections] == [row["answer"] for row in MEDQUAD_ROWS]
    assert [section.source for section in doc.sections] == [row["url"] for row in MEDQUAD_ROWS]
    assert [section.title for section in doc.sections] == ["Gout", "Gout", "Gout"]


def test_medquad_routes_come_from_the_question_type(tmp_path):
    doc = load_document(write_jsonl(tmp_path / "medquad.jsonl", MEDQUAD_ROWS))

    assert [section.routes for section in doc.sections] == [("treatment",), ("diagnosis",), ("general",)]


# --- openFDA -------------------------------------------------------------------------------------


def test_openfda_jsonl_label_sections_are_medication(tmp_path):
    rows = [{"drug": "METFORMIN", "section": "Warnings", "text": "Lactic acidosis has been reported."},
            {"drug": "METFORMIN", "section": "Dosage and Administration", "text": "500 mg twice daily."}]
    doc = load_document(write_jsonl(tmp_path / "labels.jsonl", rows))

    assert doc.kind == "openfda"
    assert doc.routes == ("medication",)
    assert set(effective_routes(doc)) == {("medication",)}
    assert [section.path for section in doc.sections] == [("Warnings",), ("Dosage and Administration",)]
    assert [section.title for section in doc.sections] == ["Metformin", "Metformin"]


def test_openfda_json_api_response_is_read_label_by_label(tmp_path):
    response = {"meta": {"results": {"total": 1}},
                "results": [{"openfda": {"generic_name": ["METFORMIN"]},
                             "indications_and_usage": ["Adjunct to diet and exercise in type 2 diabetes."],
                             "warnings": ["Lactic acidosis has been reported."],
                             "spl_id": ["not-a-section"]}]}
    path = tmp_path / "metformin.json"
    path.write_text(json.dumps(response))

    doc = load_document(path)

    assert doc.kind == "openfda"
    assert doc.title == "Metformin"
    assert doc.routes == ("medication",)
    assert [(section.path, section.text) for section in doc.sections] == [
        (("Indications and Usage",), "Adjunct to diet and exercise in type 2 diabetes."),
        (("Warnings",), "Lactic acidosis has been reported."),
    ]


# --- route override ------------------------------------------------------------------------------


def test_route_override_wins_over_front_matter(tmp_path):
    doc = load_document(write(tmp_path / "metformin.md", NOTE_WITH_FRONT_MATTER), route="diagnosis")

    assert doc.routes == ("diagnosis",)
    assert set(effective_routes(doc)) == {("diagnosis",)}


def test_route_override_wins_over_per_row_routes(tmp_path):
    doc = load_document(write_jsonl(tmp_path / "medquad.jsonl", MEDQUAD_ROWS), route="medication")

    assert effective_routes(doc) == [("medication",)] * len(MEDQUAD_ROWS)


def test_unknown_route_override_is_refused(tmp_path):
    path = write(tmp_path / "metformin.md", NOTE_WITH_FRONT_MATTER)

    assert "unknown route" in load_error(path, route="surgery").reason


# --- document identity ---------------------------------------------------------------------------


def test_doc_id_is_the_same_for_identical_content_in_different_files(tmp_path):
    first = load_document(write(tmp_path / "a.md", NOTE_WITH_FRONT_MATTER))
    second = load_document(write(tmp_path / "b.md", NOTE_WITH_FRONT_MATTER))

    assert first.doc_id == second.doc_id


def test_doc_id_differs_for_different_content(tmp_path):
    first = load_document(write(tmp_path / "a.md", NOTE_WITH_FRONT_MATTER))
    second = load_document(write(tmp_path / "b.md", NOTE_WITH_FRONT_MATTER.replace("45", "30")))

    assert first.doc_id != second.doc_id


def test_doc_id_differs_with_a_route_override(tmp_path):
    path = write(tmp_path / "a.md", NOTE_WITH_FRONT_MATTER)

    ids = {load_document(path).doc_id, load_document(path, route="treatment").doc_id,
           load_document(path, route="medication").doc_id}

    assert len(ids) == 3


def test_doc_id_changes_when_the_way_files_are_read_changes(tmp_path, monkeypatch):
    """Ingesting a file again after the reader changed must read it anew, not keep the old chunks as unchanged."""
    import corpus.loaders

    path = write(tmp_path / "a.md", NOTE_WITH_FRONT_MATTER)
    before = load_document(path).doc_id
    monkeypatch.setattr(corpus.loaders, "READER_VERSION", corpus.loaders.READER_VERSION + 1)

    assert load_document(path).doc_id != before


def test_markdown_bold_initials_stay_part_of_their_word(tmp_path):
    """"**A**ge 75 or over" was searched and read as "A" and "ge": no question about age found the line."""
    doc = load_document(write(tmp_path / "score.md", "# Score\n\n- **C**onfusion;\n- **A**ge 75 or over: 2\n"
                                                      "- **S**ex **c**ategory female: 1\n- **BE-FAST** adds two.\n"))
    text = doc.sections[0].text

    assert "- Confusion;" in text and "- Age 75 or over: 2" in text and "- Sex category female: 1" in text
    assert "**BE-FAST** adds two." in text  # a whole word in bold is a label, and keeps its bold


# --- failures ------------------------------------------------------------------------------------


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.md"
    path.write_bytes(b"")

    assert "empty" in load_error(path).reason


def test_binary_junk_in_a_text_file_is_refused(tmp_path):
    path = tmp_path / "junk.txt"
    path.write_bytes(b"\x00\xff" + os.urandom(4096) + b"\x00" * 16)  # \xff is never UTF-8; NULs mark binary

    assert "binary" in load_error(path).reason


def test_corrupt_pdf_is_refused(tmp_path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\n" + b"this is not really a PDF body " * 40)

    assert "not a readable PDF" in load_error(path).reason


def test_a_damaged_pdf_that_pypdf_repairs_logs_nothing(tmp_path, caplog):
    """Found by the fuzz test: pypdf logs what it works around at ERROR level, which interleaved with the ingest
    report on stderr; the loader reports failures itself."""
    path = make_pdf(tmp_path / "font.pdf", ["Colchicine treats a gout flare."])
    path.write_bytes(path.read_bytes().replace(b"/WinAnsiEncoding", b"/WinAnsiEncoxing"))

    with caplog.at_level(logging.DEBUG):
        assert load_document(path).sections
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]


def test_encrypted_pdf_is_refused(tmp_path):
    plain = make_pdf(tmp_path / "plain.pdf", ["Confidential dosing table."])
    writer = PdfWriter(clone_from=str(plain))
    writer.encrypt("secret")
    path = tmp_path / "locked.pdf"
    writer.write(str(path))

    assert "encrypted" in load_error(path).reason


def test_corrupt_docx_is_refused(tmp_path):
    path = tmp_path / "broken.docx"
    path.write_bytes(b"This is plain text saved with a .docx name, not a zip archive.")

    assert "not a valid DOCX" in load_error(path).reason


def add_member(path: Path, name: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return path


def test_docx_zip_bomb_is_refused_before_parsing(tmp_path):
    """A DOCX is a zip: 20 MiB of zeros pack into a few KB, and python-docx would hold every part in memory."""
    bomb = add_member(make_docx(tmp_path / "bomb.docx"), "word/media/padding.bin", bytes(20 * 2**20))
    assert bomb.stat().st_size < 200_000

    reason = load_error(bomb).reason
    assert "zip bomb" in reason and "MiB" in reason


def test_docx_zip_bomb_lying_about_its_sizes_is_refused(tmp_path):
    """The sizes a zip declares are the attacker's to write; the guard trusts them because zipfile never unpacks
    more than a member declares (it cuts there and the CRC check fails), which this checks."""
    bomb = add_member(make_docx(tmp_path / "liar.docx"), "word/media/padding.bin", bytes(20 * 2**20))
    data = bytearray(bomb.read_bytes())
    at = 0
    while (at := data.find(b"PK\x01\x02", at)) >= 0:  # each central-directory entry now claims 1 byte unpacked
        data[at + 24:at + 28] = (1).to_bytes(4, "little")
        at += 4
    bomb.write_bytes(bytes(data))

    assert "not a valid DOCX" in load_error(bomb).reason


def test_docx_with_large_incompressible_media_still_loads(tmp_path):
    """The ratio guard must not refuse a real document whose pictures do not compress."""
    path = add_member(make_docx(tmp_path / "photos.docx"), "word/media/photo.jpg", os.urandom(3 * 2**20))

    assert load_document(path).sections


def test_file_over_max_bytes_is_refused_with_the_limit(tmp_path):
    path = write(tmp_path / "big.txt", "Long reference text. " * 100)

    assert "limit" in load_error(path, max_bytes=1000).reason
    assert load_document(path, max_bytes=10_000).sections  # the same file loads under a higher limit


def test_front_matter_that_is_not_valid_yaml_is_refused(tmp_path):
    path = write(tmp_path / "bad.md", "---\ntitle: [unclosed\n---\n# Gout\n\nHot joint.\n")

    assert "not valid YAML" in load_error(path).reason


def test_control_characters_are_taken_out_of_what_a_document_says(tmp_path):
    """Found by the fuzz test: titles and passages are printed to the terminal (sources, search, the chat), and an
    escape sequence in a document ("\\x1b]0;...", "\\x1b[2J") would be obeyed by it."""
    path = write(tmp_path / "page.html", "<html><head><title>Gout\x1b]0;pwned\x07</title></head><body>"
                                         "<h2>Flare\x9b2J</h2><p>Colchicine\x1b[2J treats\x00 a flare.\r\nRest.</p>")
    doc = load_document(path)

    texts = [doc.title, *(h for s in doc.sections for h in s.path), *(s.text for s in doc.sections)]
    assert doc.title == "Gout]0;pwned" and doc.sections[0].path == ("Flare2J",)
    assert doc.sections[0].text == "Colchicine[2J treats a flare. Rest."
    assert all(c in "\t\n" or c.isprintable() for text in texts for c in text)


def test_a_reason_is_one_printable_line(tmp_path):
    """Found by the fuzz test: PyYAML's message spans two lines, and parsers may quote the file's control bytes;
    the CLI prints one line per file."""
    path = write(tmp_path / "nul.md", "---\n\x00\x1b[2J\n---\n")

    reason = load_error(path).reason
    assert "not valid YAML" in reason and reason.isprintable()


def test_front_matter_without_closing_line_is_refused(tmp_path):
    path = write(tmp_path / "open.md", "---\ntitle: Gout\nroute: diagnosis\n\n# Gout\n\nHot joint.\n")

    assert "no closing" in load_error(path).reason


def test_front_matter_with_unknown_route_is_refused(tmp_path):
    path = write(tmp_path / "surgery.md", "---\ntitle: Hernia\nroute: [treatment, surgery]\n---\n# Hernia\n\nRepair.\n")

    reason = load_error(path).reason
    assert "unknown route" in reason
    assert "surgery" in reason


def test_unsupported_suffix_is_refused(tmp_path):
    path = write(tmp_path / "notes.xyz", "Plain words in an unknown format.")

    reason = load_error(path).reason
    assert "unsupported file type" in reason
    assert ".xyz" in reason


def test_symlink_loop_is_refused(tmp_path):
    path = tmp_path / "loop.md"
    os.symlink(path, path)

    assert "symlink loop" in load_error(path).reason


def test_missing_file_is_refused(tmp_path):
    assert "no such file" in load_error(tmp_path / "absent.md").reason


def test_jsonl_with_an_invalid_line_names_the_line(tmp_path):
    path = write(tmp_path / "medquad.jsonl", json.dumps(MEDQUAD_ROWS[0]) + "\n{question: not json}\n")

    reason = load_error(path).reason
    assert "line 2" in reason
    assert "not valid JSON" in reason


def test_jsonl_of_unknown_shape_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "other.jsonl", [{"id": 1, "name": "aspirin"}, {"id": 2, "name": "heparin"}])

    assert "unrecognised JSONL shape" in load_error(path).reason
