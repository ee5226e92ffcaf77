"""corpus.chunk_document with the real all-MiniLM-L6-v2 tokenizer: every chunk fits the embedder's window."""

from __future__ import annotations

import json

import pytest
from fpdf import FPDF

from corpus import STARTER_DIR, Document, Section, chunk_document, load_document
from corpus.chunking import embedded_text
from index.embed import Embedder

WINDOW = 256  # all-MiniLM-L6-v2 reads 256 word pieces, [CLS] and [SEP] included
SPECIAL_TOKENS = 2

STARTER_NOTES = sorted(STARTER_DIR.glob("*.md"))

SENTENCE_TEMPLATES = [
    "Warfarin is a vitamin K antagonist used to prevent stroke in atrial fibrillation, as in patient {n}.",
    "The international normalised ratio was checked again three days after the dose change for patient {n}.",
    "Many antibiotics can raise the INR and increase the risk of bleeding, which happened to patient {n}.",
    "Unusual bruising, black stools or blood in the urine should be reported at once, we told patient {n}.",
    "A sudden change in how many green vegetables are eaten can lower the effect of the drug in patient {n}.",
    "Kidney function and a full blood count were measured before starting treatment in patient {n}.",
]


@pytest.fixture(scope="module")
def tokenize(embedder: Embedder):
    """The real word-piece tokenizer, from the suite's one loaded embedder (tests/conftest.py)."""
    return embedder.tokenize


def window_tokens(tokenize, chunk) -> int:
    """How many word pieces the embedder reads for this chunk, special tokens included."""
    return len(tokenize(embedded_text(chunk.heading, chunk.text))) + SPECIAL_TOKENS


def document(*sections: Section, title: str = "Warfarin", routes: tuple[str, ...] = ("medication",),
             doc_id: str = "d" * 64) -> Document:
    return Document(doc_id, "/notes/warfarin.md", title, "markdown", routes, list(sections))


def long_text(words: int = 3000) -> str:
    sentences, count, n = [], 0, 0
    while count < words:
        sentence = SENTENCE_TEMPLATES[n % len(SENTENCE_TEMPLATES)].format(n=n)
        sentences.append(sentence)
        count += len(sentence.split())
        n += 1
    return " ".join(sentences)


# --- the starter notes ---------------------------------------------------------------------------


@pytest.mark.parametrize("note", STARTER_NOTES, ids=lambda path: path.stem)
def test_every_starter_note_chunk_fits_the_embedder_window(tokenize, note):
    chunks = chunk_document(load_document(note), tokenize)

    assert chunks
    assert max(window_tokens(tokenize, chunk) for chunk in chunks) <= WINDOW


# --- long and pathological sections --------------------------------------------------------------


def test_long_section_is_split_into_several_chunks_that_all_fit(tokenize):
    text = long_text()
    assert len(tokenize(text)) > 10 * WINDOW  # precondition: far too long for one chunk

    chunks = chunk_document(document(Section(("Interactions",), text)), tokenize)

    assert len(chunks) >= 10
    assert all(window_tokens(tokenize, chunk) <= WINDOW for chunk in chunks)


def test_long_section_chunks_cover_every_sentence(tokenize):
    text = long_text()

    chunks = chunk_document(document(Section(("Interactions",), text)), tokenize)

    last_patient = text.rsplit("patient ", 1)[1]
    joined = " ".join(chunk.text for chunk in chunks)
    assert chunks[0].text.startswith("Warfarin is a vitamin K antagonist")
    assert chunks[-1].text.endswith("patient " + last_patient)
    assert all(f"patient {n}." in joined for n in range(int(last_patient.rstrip("."))))


def test_consecutive_chunks_overlap(tokenize):
    chunks = chunk_document(document(Section(("Interactions",), long_text())), tokenize)

    assert len(chunks) > 2
    for before, after in zip(chunks, chunks[1:]):
        tail = " ".join(before.text.split()[-4:])  # e.g. "happened to patient 17."; unique in the text
        assert tail in after.text[: len(after.text) // 2], (before.chunk_id, tail)


def test_single_huge_word_is_cut_into_fitting_chunks(tokenize):
    word = ("haemo-" * 400)[:2000]  # one whitespace-free "word" of 2,000 characters
    assert len(tokenize(word)) > WINDOW  # precondition: it cannot fit whole

    chunks = chunk_document(document(Section(("Glossary",), word)), tokenize)

    assert len(chunks) > 1
    assert all(window_tokens(tokenize, chunk) <= WINDOW for chunk in chunks)
    assert all(chunk.text in word for chunk in chunks)
    assert word.startswith(chunks[0].text) and word.endswith(chunks[-1].text)


def test_section_without_sentence_punctuation_is_cut_into_fitting_chunks(tokenize):
    words = [f"term{n}" for n in range(1500)]
    text = " ".join(f"{word} anticoagulant bleeding risk" for word in words)

    chunks = chunk_document(document(Section(("Word list",), text)), tokenize)

    assert len(chunks) > 1
    assert all(window_tokens(tokenize, chunk) <= WINDOW for chunk in chunks)
    assert set(words) <= {word for chunk in chunks for word in chunk.text.split()}


def test_short_section_stays_one_chunk_with_its_text_unchanged(tokenize):
    text = "Check the INR weekly until it is stable."

    chunks = chunk_document(document(Section(("Monitoring",), text)), tokenize)

    assert [chunk.text for chunk in chunks] == [text]


# --- identity ------------------------------------------------------------------------------------


def test_chunk_ids_are_unique(tokenize):
    doc = document(Section(("Interactions",), long_text(1500)), Section(("Monitoring",), "Check the INR weekly."))

    ids = [chunk.chunk_id for chunk in chunk_document(doc, tokenize)]

    assert len(ids) > 2
    assert len(set(ids)) == len(ids)
    assert all(chunk_id.startswith(doc.doc_id[:16]) for chunk_id in ids)


def test_chunk_ids_are_stable_for_the_same_input(tokenize):
    doc = document(Section(("Interactions",), long_text(1500)), Section(("Monitoring",), "Check the INR weekly."))

    first = [(chunk.chunk_id, chunk.text) for chunk in chunk_document(doc, tokenize)]
    second = [(chunk.chunk_id, chunk.text) for chunk in chunk_document(doc, tokenize)]

    assert first == second


def test_chunk_ids_differ_between_documents(tokenize):
    section = Section(("Monitoring",), "Check the INR weekly.")

    first = chunk_document(document(section, doc_id="a" * 64), tokenize)
    second = chunk_document(document(section, doc_id="b" * 64), tokenize)

    assert first[0].chunk_id != second[0].chunk_id


# --- provenance ----------------------------------------------------------------------------------


def test_chunks_keep_document_title_section_path_and_routes(tmp_path, tokenize):
    path = tmp_path / "warfarin.md"
    path.write_text("---\ntitle: Warfarin\nroute: [medication, treatment]\n---\n# Warfarin\n\n"
                    "## Doses\n\n### Renal impairment\n\n" + long_text(600) + "\n")
    doc = load_document(path)

    chunks = chunk_document(doc, tokenize)

    assert len(chunks) > 1
    assert {(c.title, c.section, c.routes, c.source, c.page, c.doc_id) for c in chunks} == {
        ("Warfarin", "Doses > Renal impairment", ("medication", "treatment"), str(path.resolve()), None, doc.doc_id)}
    assert chunks[0].heading == "Warfarin > Doses > Renal impairment"


def test_chunks_keep_their_pdf_page(tmp_path, tokenize):
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in ["Loading doses of warfarin.", "Target INR ranges.", "Reversal with vitamin K."]:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    pdf.output(str(tmp_path / "handbook.pdf"))

    chunks = chunk_document(load_document(tmp_path / "handbook.pdf"), tokenize)

    assert [(chunk.page, chunk.section, chunk.text) for chunk in chunks] == [
        (1, "Page 1", "Loading doses of warfarin."), (2, "Page 2", "Target INR ranges."),
        (3, "Page 3", "Reversal with vitamin K.")]


def test_chunks_keep_per_section_title_source_and_routes(tmp_path, tokenize):
    rows = [{"question": "What are the treatments for gout?", "answer": "NSAIDs, colchicine or steroids.",
             "url": "https://example.org/gout/treatment", "focus": "Gout", "qtype": "treatment"},
            {"question": "What are the symptoms of gout?", "answer": "A sudden, hot, swollen, painful joint.",
             "url": "https://example.org/gout/symptoms", "focus": "Gout", "qtype": "symptoms"}]
    path = tmp_path / "medquad.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))

    chunks = chunk_document(load_document(path), tokenize)

    assert [(c.title, c.section, c.source, c.routes) for c in chunks] == [
        ("Gout", "What are the treatments for gout?", "https://example.org/gout/treatment", ("treatment",)),
        ("Gout", "What are the symptoms of gout?", "https://example.org/gout/symptoms", ("diagnosis",)),
    ]


def test_long_section_chunks_all_keep_the_section_heading(tokenize):
    chunks = chunk_document(document(Section(("Interactions", "Antibiotics"), long_text(1500))), tokenize)

    assert len(chunks) > 1
    assert {chunk.heading for chunk in chunks} == {"Warfarin > Interactions > Antibiotics"}


# --- a chunk that starts inside a list or a table --------------------------------------------------


def item(n: int) -> str:
    return (f"Step {n}: check the airway, breathing and circulation again, record the observations on the chart "
            f"and review the plan with a senior colleague.")


def later_chunks(tokenize, text: str) -> list:
    """The chunks after the first of a one-section document: the ones cut from the middle of the text."""
    chunks = chunk_document(document(Section(("Early care",), text)), tokenize)
    assert len(chunks) > 2 and all(window_tokens(tokenize, chunk) <= WINDOW for chunk in chunks)
    return chunks[1:]


def test_a_chunk_that_starts_in_a_list_carries_the_lists_lead_in(tokenize):
    text = "**Blood pressure in people not thrombolysed:**\n" + "\n".join(f"- {item(n)}" for n in range(30))

    for chunk in later_chunks(tokenize, text):
        first, second = chunk.text.splitlines()[:2]
        assert first == "**Blood pressure in people not thrombolysed:**" and second.startswith("- Step"), chunk.text


def test_a_chunk_that_starts_in_a_nested_list_carries_the_item_it_is_under_too(tokenize):
    text = "Antibiotic choice:\n- **High severity:**\n" + "\n".join(f"  - {item(n)}" for n in range(30))

    for chunk in later_chunks(tokenize, text):
        lines = chunk.text.splitlines()
        assert lines[:2] == ["Antibiotic choice:", "- **High severity:**"], chunk.text
        assert lines[2].startswith("  - Step"), chunk.text  # its indent kept: still nested


def test_a_chunk_that_starts_in_a_table_carries_the_header_row(tokenize):
    rows = "\n".join(f"| Drug {n} | {n} mg twice daily, reduced when the kidney function falls below 30 | "
                     f"Check potassium and creatinine again after {n} weeks |" for n in range(40))
    text = f"| Drug | Usual dose | Monitoring |\n|---|---|---|\n{rows}"

    starts_in_table = [c for c in later_chunks(tokenize, text) if c.text.startswith("|")]
    assert starts_in_table
    for chunk in starts_in_table:
        assert chunk.text.splitlines()[:2] == ["| Drug | Usual dose | Monitoring |", "|---|---|---|"], chunk.text


@pytest.mark.parametrize("above, between_items", [
    ("Treat every patient as follows.\n", "\n"),  # a sentence above the list is no lead-in
    ("Before the list:\n- First item.\n\n", "\n\n"),  # a blank line between items ends the list, and its lead-in
])
def test_a_chunk_carries_nothing_that_does_not_lead_its_list(tokenize, above, between_items):
    text = above + between_items.join(f"- {item(n)}" for n in range(30))

    for chunk in later_chunks(tokenize, text):
        assert chunk.text.startswith("- Step"), chunk.text
