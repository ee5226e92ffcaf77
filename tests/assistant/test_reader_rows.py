"""What the model reads: retrieved passages cut to the lines that can answer (agent.focused_sources), at
inference (the agent's prompt) and in the reader's training rows (assistant/reader_rows.py), with the real
MiniLM embedder and a real knowledge base; and how its checked answer is shown with the quotes."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from assistant.agent import Agent, SentenceCheck, led_by_the_model
from assistant.cli import main
from assistant.evidence import EvidenceReader, Quote
from assistant.reader_rows import focus_row
from conftest import write_note
from test_evidence import DOAC_TABLE, ScriptedBackend

COUNSELLING = "\n".join(f"- {line}" for line in (
    "Keep the tablets in the original pack at room temperature.",
    "Carry an anticoagulant alert card when travelling abroad.",
    "Tell the dentist before any extraction or deep cleaning.",
    "Report black stools, blood in the urine or heavy bruising at once.",
    "Avoid contact sports that risk a head injury while on treatment.",
    "Bring every repeat prescription request a week before running out.",
    "Pharmacists can check new over-the-counter remedies for interactions.",
    "A leaflet in large print is available on request from the clinic.",
    "Wear a medical alert bracelet if you live alone.",
    "Keep a list of your medicines in your wallet or phone.",
    "Ask before starting herbal remedies such as St John's wort.",
    "Book the annual review with the practice nurse.",
))


def sources_in(prompt: str) -> dict[int, tuple[str, list[str]]]:
    """The prompt's numbered sources: number -> (heading, its lines)."""
    block = prompt.split("### Sources:\n", 1)[1].split("\n### Question:", 1)[0]
    found = {}
    for part in re.split(r"^\[(\d+)\] ", block, flags=re.M)[1:]:
        if part.isdigit():
            number = int(part)
        else:
            heading, *lines = part.strip().splitlines()
            found[number] = (heading, lines)
    return found


def test_the_model_reads_only_the_lines_that_can_answer_and_never_another_drugs_rule(make_kb, tmp_path):
    folder = tmp_path / "notes"
    kb = make_kb()
    kb.ingest([
        write_note(folder, "metformin.md", "Metformin", "medication", {
            "Renal impairment": "eGFR 30–44: review the dose, usually limiting it to 1 g/day.\n\n"
                                "eGFR below 30: stop it.",
        }),
        write_note(folder, "doac.md", "DOAC dosing", "medication", {
            "Renal adjustment": DOAC_TABLE, "Counselling": COUNSELLING}),
    ])
    backend = ScriptedBackend("", "Apixaban 2.5 mg twice daily [1].")
    answer = Agent(kb, lambda: backend).ask("apixaban dose with eGFR 25?")
    shown = sources_in(backend.prompts[0])
    lines = [line for _, texts in shown.values() for line in texts]
    renal = next(texts for heading, texts in shown.values() if heading == "DOAC dosing > Renal adjustment")
    assert renal[0].startswith("- Apixaban — Standard: 5 mg twice daily; Reduced dose: 2.5 mg"), renal  # best first
    assert all(line.startswith("- ") for line in lines)
    assert len(lines) == 8  # FOCUS_UNITS of the 14 units the DOAC note has
    assert "1 g/day" not in backend.prompts[0]  # metformin's rule never reaches the model: another drug's
    by_number = {c.n: c for c in answer.citations}  # each source keeps its citation's number and heading
    assert shown and all(heading == f"{by_number[n].title} > {by_number[n].section}"
                         for n, (heading, _) in shown.items())


def row(answer_line: str) -> dict:
    oracle = "\n".join(f"- {line}" for line in (
        "Quarry lung is a lung disease caused by breathing in silica dust over many years.",
        "Cough and breathlessness come on slowly and get worse after exposure stops.",
        answer_line,
        "Smoking makes the disease progress faster and should stop.",
        "A chest X-ray shows small nodules in the upper parts of both lungs.",
    ))
    return {"Question": "How is quarry lung treated?", "Complex_CoT": "Source [2] (Quarry lung > Treatment) answers.",
            "Response": f"{answer_line} [2]", "oracle": 2, "answerable": True, "sources": [
                {"number": 1, "heading": "Asthma > Triggers", "text": "- Cold air and exercise can trigger asthma."},
                {"number": 2, "heading": "Quarry lung > Treatment", "text": oracle},
                {"number": 3, "heading": "Hay fever", "text": "Pollen counts peak in early summer in most places."}]}


def test_a_training_row_keeps_the_line_that_holds_its_answer_and_its_numbering(embedder):
    answer_line = "There is no cure; oxygen and pulmonary rehabilitation ease symptoms."
    original = row(answer_line)
    focused = focus_row(original, EvidenceReader(embedder), keep=2)
    shown = {s["number"]: s for s in focused["sources"]}
    assert shown[2]["heading"] == "Quarry lung > Treatment"
    assert f"- {answer_line}" in shown[2]["text"].splitlines()
    assert sum(len(s["text"].splitlines()) for s in focused["sources"]) == 2  # the answer's line and the best other
    assert {k: v for k, v in focused.items() if k != "sources"} == {k: v for k, v in original.items() if k != "sources"}

    every_line = [s["number"] for s in focus_row(original, EvidenceReader(embedder))["sources"]]  # all 7 lines
    assert every_line[0] == 2 and sorted(every_line) == [1, 2, 3]  # the passage holding the best line comes first


def test_the_rows_command_rewrites_both_files_and_names_a_bad_one(tmp_path, embedder):
    rows_in, rows_out = tmp_path / "in", tmp_path / "out"
    rows_in.mkdir()
    (rows_in / "train.jsonl").write_text(json.dumps(row("Oxygen eases breathlessness at rest.")) + "\n")
    (rows_in / "heldout.jsonl").write_text(json.dumps(row("Rehabilitation helps exercise tolerance.")) + "\n")
    args = ["--home", str(tmp_path / "home"), "eval", "reader-rows", "--in", str(rows_in), "--out", str(rows_out),
            "--units", "3"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for name in ("train.jsonl", "heldout.jsonl"):
        rewritten = [json.loads(line) for line in (rows_out / name).read_text().splitlines()]
        assert len(rewritten) == 1 and sum(len(s["text"].splitlines()) for s in rewritten[0]["sources"]) == 3

    (rows_in / "train.jsonl").write_text('{"Question": "no sources here"}\n')
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "train.jsonl: not reader rows" in result.output
    assert "Traceback" not in result.output


def test_the_models_answer_leads_and_the_quotes_it_did_not_restate_stay_under_it():
    quotes = [Quote(1, "Thiazide diuretics, ACE inhibitors and NSAIDs raise lithium levels.", "Lithium › Interactions",
                    1.2),
              Quote(2, "Levels are checked 12 hours after the dose.", "Lithium › Levels", 1.1)]
    model = [SentenceCheck("Thiazide diuretics, ACE inhibitors and NSAIDs raise lithium levels [1].", [1], True)]
    text, sentences = led_by_the_model(model, quotes)
    lead, rest = text.split("\n\nAlso in the sources:\n\n")
    assert lead == model[0].text
    assert rest == "- **Lithium › Levels:** Levels are checked 12 hours after the dose. [2]"  # the restated one once
    assert [s.citations for s in sentences] == [[1], [2]] and all(s.supported for s in sentences)

    everything = [SentenceCheck(f"{q.text[:-1]} [{q.n}].", [q.n], True) for q in quotes]
    assert led_by_the_model(everything, quotes)[0] == " ".join(s.text for s in everything)  # nothing left to add

    cut_short = [SentenceCheck("Thiazide diuretics, ACE inhibitors and NSAIDs [1].", [1], True)]  # the quote, cut short
    text, sentences = led_by_the_model(cut_short, quotes[:1])
    assert text.endswith("- **Lithium › Interactions:** " + quotes[0].text + " [1]") and len(sentences) == 2

    # A bare line (a band, a table cell) is shown under what its source is about, as the quotes are.
    band = [SentenceCheck("16–20: moderate to severe [2].", [2], True)]
    about_source = {2: "Stroke and TIA — recognition › NIHSS", 1: "Lithium › Interactions"}
    assert led_by_the_model(band, [], about_source)[0] == "**Stroke and TIA — recognition › NIHSS:** " + band[0].text
    assert led_by_the_model(model, quotes[:1], about_source)[0] == model[0].text  # it names lithium itself
