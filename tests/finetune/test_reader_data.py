"""Grounded-answer rows for the reader (finetune/reader_data.py) and the data.sources column that trains on them.

The inputs are tiny files written here, in the shapes of the real ones (../shared/data/SOURCES.md).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.cli import main
from finetune.config import DataSection, FinetuneError
from finetune.data import DataReport, clean, read_rows, tokenize, write_jsonl
from finetune.prompt import SourceText, build_prompt
from finetune.reader_data import MAX_PROMPT_WORDS, NOT_IN_SOURCES, BuildOptions, build

FOCI = ["Brindle fever", "Corvid anemia", "Pellmore disease", "Quarry lung", "Tessel palsy", "Vantor ataxia",
        "Wexley myopathy", "Yarrow nephritis", "Zomber dermatitis", "Ostrin neuropathy", "Harlan colitis",
        "Ember retinopathy"]
ORGANS = ["liver", "blood", "kidney", "lung", "face", "brain", "muscle", "kidney", "skin", "nerve", "colon", "eye"]
TEST_ONLY = "zebrafishtestonly"  # only in the PubMedQA row of the official test split


def _medquad_rows() -> list[dict]:
    rows = []
    for n, (focus, organ) in enumerate(zip(FOCI, ORGANS)):
        answers = {
            "information": f"{focus} is a rare condition of the {organ}. It mostly affects adults over forty. "
                           f"Doctors confirm {focus} with a blood test and imaging.",
            "symptoms": f"Key Points\n- People with {focus} have pain in the {organ} and tiredness.\n"
                        f"People with {focus} have pain in the {organ} and tiredness. Symptoms often start in "
                        "childhood. Some people also have joint pain.",
            "treatment": f"{focus} is treated with drug number {n} taken daily. Physical therapy helps many "
                         f"people. Surgery is rarely needed, unlike in {FOCI[n - 1]}.",  # names another topic
        }
        for qtype, answer in answers.items():
            question = {"information": f"What is (are) {focus} ?", "symptoms": f"What are the symptoms of {focus} ?",
                        "treatment": f"What are the treatments for {focus} ?"}[qtype]
            rows.append({"id": f"c/{n}-{qtype}", "doc_id": f"doc{n}", "collection": "c", "source": "test",
                         "url": f"https://example.org/{n}", "focus": focus, "focus_category": None,
                         "focus_cuis": [], "qtype": qtype, "question": question, "answer": answer})
    rows += [  # nothing to learn from: skipped, and never a passage
        {"doc_id": "doc90", "focus": "Boiler plate", "qtype": "treatment", "question": "How to treat Boiler plate?",
         "answer": "These resources address the diagnosis or management of Boiler plate: - Gene Review - Registry"},
        {"doc_id": "doc91", "focus": "Key only", "qtype": "information", "question": "What is Key only?",
         "answer": "Key Points"},
        {"doc_id": "doc92", "focus": "Studied thing", "qtype": "research", "question": "What research on it?",
         "answer": "The institute supports research on many disorders of the nerves and the brain."},
    ]
    return rows


def _pubmedqa_rows() -> list[dict]:
    rows = [{"pubid": str(1000 + n), "question": f"Does marker {w} predict kidney outcome in trial {n}?",
             "contexts": [f"Marker {w} is measured in blood. Its value for kidney outcome is unclear.",
                          f"In {100 + n} patients, higher marker {w} predicted kidney failure within two years."],
             "labels": ["BACKGROUND", "RESULTS"], "long_answer": f"Marker {w} predicts kidney outcome. "
             "It may guide follow up.", "final_decision": "yes", "official_split": "train_dev"}
            for n, w in enumerate(["alpha", "beta", "gamma", "delta"])]
    rows.append({"pubid": "9999", "question": f"Does {TEST_ONLY} predict kidney outcome?",
                 "contexts": [f"The {TEST_ONLY} marker was measured in kidney patients."],
                 "labels": ["RESULTS"], "long_answer": f"{TEST_ONLY} predicts kidney outcome.",
                 "final_decision": "yes", "official_split": "test"})
    rows.append({**rows[0], "pubid": "9998", "question": "A row without a split about kidney outcome?",
                 "official_split": None})
    return rows


def _openfda_rows() -> list[dict]:
    return [
        {"id": "metformin:dose", "drug": "metformin", "section": "Dosage and Administration",
         "text": "Dosage and Administration: Start metformin at 500 mg twice daily with meals. Increase by 500 mg "
                 "weekly ( 2.1 , 2.2 ). The maximum dose is 2550 mg per day."},
        {"id": "metformin:ci", "drug": "metformin", "section": "Contraindications",
         "text": "Metformin is contraindicated in severe renal impairment with eGFR below 30. It is also "
                 "contraindicated in metabolic acidosis."},
        {"id": "warfarin:ci", "drug": "warfarin", "section": "Contraindications",
         "text": "Warfarin is contraindicated in pregnancy except in women with mechanical heart valves. Do not "
                 "use it in patients with active bleeding."},
        {"id": "warfarin:ar", "drug": "warfarin", "section": "Adverse Reactions",
         "text": "Bleeding is the most common adverse reaction to warfarin. Skin necrosis occurs rarely. To report "
                 "SUSPECTED ADVERSE REACTIONS, contact FDA at 1-800-FDA-1088 or www.fda.gov/medwatch."},
    ]


def _o1_rows() -> list[dict]:
    rows = [{"Question": f"A {30 + n}-year-old man presents with fever and a rash on the {part}. Most likely "
                         "diagnosis?", "Complex_CoT": "long reasoning", "Response": f"Answer {n}."}
            for n, part in enumerate(["arm", "leg", "back", "chest"])]
    rows.append({"Question": "word " * 1000 + "?", "Complex_CoT": "r", "Response": "Too long to ask."})
    return rows


def write_inputs(folder: Path, skip: tuple[str, ...] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"medquad_qa_corpus.jsonl": _medquad_rows(), "pubmedqa_pqal.jsonl": _pubmedqa_rows(),
             "openfda_drug_label_sections_sample.jsonl": _openfda_rows(), "medical_o1_sft_en.jsonl": _o1_rows()}
    for name, rows in files.items():
        if name not in skip:
            lines = [json.dumps(r) for r in rows]
            if name == "pubmedqa_pqal.jsonl":
                lines.insert(1, "{not json")  # a broken line is counted, not fatal
            (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


OPTIONS = BuildOptions(seed=7, medquad=10)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader")
    report = build(write_inputs(root / "in"), root / "out", OPTIONS, say=lambda line: None)
    rows = {part: [json.loads(line) for line in (root / "out" / f"{part}.jsonl").read_text().splitlines()]
            for part in ("train", "heldout")}
    return root, report, rows


def all_rows(built) -> list[dict]:
    return built[2]["train"] + built[2]["heldout"]


def oracle_of(row: dict) -> dict:
    return next(s for s in row["sources"] if s["number"] == row["oracle"])


def focus_of(question: str) -> str | None:
    return next((f for f in FOCI if f in question), None)


def test_pubmedqa_test_split_rows_never_reach_the_output(built):
    root, report, _ = built
    for name in ("train.jsonl", "heldout.jsonl"):
        assert TEST_ONLY not in (root / "out" / name).read_text().lower()
    assert "PubMed abstract 9999" not in (root / "out" / "train.jsonl").read_text()
    assert report.skipped["pubmedqa_not_train_dev"] == 2  # the test row and the row without a split
    assert report.skipped["pubmedqa_unreadable_line"] == 1
    assert {r["origin"] for r in all_rows(built)} == {"medquad", "pubmedqa", "openfda", "medical_o1"}


def test_every_answerable_answer_cites_its_oracle_and_only_it(built):
    answerable = [r for r in all_rows(built) if r["answerable"]]
    assert {r["origin"] for r in answerable} == {"medquad", "pubmedqa", "openfda"}
    for row in answerable:
        numbers = [s["number"] for s in row["sources"]]
        assert numbers == list(range(1, len(numbers) + 1)) and 4 <= len(numbers) <= 5
        oracle = oracle_of(row)
        assert set(re.findall(r"\[(\d+)\]", row["Response"])) == {str(row["oracle"])}
        assert row["Complex_CoT"] == f"Source [{row['oracle']}] ({oracle['heading']}) answers the question."
        sentences = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", row["Response"]) if len(s.split()) >= 3]
        assert sentences and all(s.endswith(f"[{row['oracle']}].") for s in sentences), row["Response"]
        if row["origin"] == "pubmedqa":
            assert row["Response"].startswith("Yes. ")
            pubid = oracle["heading"].removeprefix("PubMed abstract ")
            assert f"trial {int(pubid) - 1000}?" in row["Question"]
        else:  # extracted answers: every cited sentence is in the oracle passage, word for word
            for sentence in sentences:
                assert sentence.replace(f" [{row['oracle']}]", "") in oracle["text"]
        if row["origin"] == "medquad":
            assert oracle["heading"].startswith(focus_of(row["Question"]))


def test_no_distractor_comes_from_the_oracles_document(built):
    for row in all_rows(built):
        others = [s for s in row["sources"] if s["number"] != row["oracle"]]
        if row["origin"] == "medquad" and row["style"] == "prose":
            assert not any(s["heading"].startswith(focus_of(row["Question"])) for s in others)
        if row["origin"] == "medquad" and row["style"] == "note":  # only other sections of its note: see below
            same = [s for s in others if s["heading"].startswith(focus_of(row["Question"]) + " > ")]
            assert row["answerable"] or not same
            assert all(s["heading"] not in (oracle_of(row)["heading"], f"{focus_of(row['Question'])} > Overview")
                       for s in same)
        if row["origin"] == "medquad" and not row["answerable"]:  # a passage naming the topic might answer it
            assert not any(focus_of(row["Question"]) in s["text"] for s in others)
        if row["answerable"]:
            assert all(s["heading"] != oracle_of(row)["heading"] for s in others)
            assert all(s["text"] != oracle_of(row)["text"] for s in others)


def test_unanswerable_rows_have_no_oracle_and_say_so(built):
    unanswerable = [r for r in all_rows(built) if not r["answerable"]]
    assert {r["origin"] for r in unanswerable} == {"medquad", "medical_o1"}
    assert 0.1 <= len(unanswerable) / len(all_rows(built)) <= 0.3
    for row in unanswerable:
        assert row["oracle"] is None and row["Response"].startswith(NOT_IN_SOURCES + " None of them covers ")
        assert row["Complex_CoT"] == "None of the sources answers the question."
        assert 4 <= len(row["sources"]) <= 5 and not re.search(r"\[\d+\]", row["Response"])
    medquad = [r for r in unanswerable if r["origin"] == "medquad"]
    assert medquad and all(focus_of(r["Question"]) in r["Response"] for r in medquad)
    answered_foci = {focus_of(r["Question"]) for r in all_rows(built) if r["answerable"] and r["origin"] == "medquad"}
    assert not answered_foci & {focus_of(r["Question"]) for r in medquad}  # a topic is either answered or not


def test_skipped_rows_are_counted_and_prompts_stay_short(built, tmp_path):
    root, report, _ = built
    text = json.dumps(all_rows(built))
    for absent in ("Boiler plate", "Key only", "Studied thing", "Key Points", "2.1", "medwatch"):
        assert absent not in text
    assert report.skipped["medquad_boilerplate_answer"] == 2 and report.skipped["medquad_boilerplate_qtype"] == 1
    words = [len(build_prompt(r["Question"], [SourceText(**s) for s in r["sources"]]).split())
             for r in all_rows(built)]
    assert max(words) <= MAX_PROMPT_WORDS and report.prompt_words_max == max(words)

    every_o1 = build(root / "in", tmp_path / "out", BuildOptions(seed=7, medquad=10, unanswerable_share=0.5,
                                                                  o1_share=1.0), say=lambda line: None)
    assert every_o1.skipped["medical_o1_prompt_too_long"] == 1  # the 1,000-word question
    assert every_o1.rows["medical_o1 train"] + every_o1.rows["medical_o1 heldout"] == 4
    assert all(r["Question"].endswith("?") and " ?" not in r["Question"] and "(are)" not in r["Question"]
               for r in all_rows(built))


def test_held_out_rows_share_no_document_with_training_rows(built):
    _, _, rows = built
    assert rows["heldout"] and rows["train"]

    def documents(part):
        keys = set()
        for r in rows[part]:
            if r["origin"] == "medquad":
                keys.add(focus_of(r["Question"]))
            elif r["origin"] in ("pubmedqa", "openfda"):
                keys.add(oracle_of(r)["heading"].split(" label")[0].split(" > ")[0].title())
            else:
                keys.add(r["Question"])
        return keys

    assert not documents("train") & documents("heldout")
    assert {r["origin"] for r in rows["heldout"]} == {"medquad", "pubmedqa", "openfda", "medical_o1"}


def test_same_seed_same_files_and_another_seed_moves_the_oracles(tmp_path, built):
    root, _, rows = built
    again = tmp_path / "again"
    # Another process with another hash seed: set iteration order must not leak into the files.
    code = (f"from finetune.reader_data import build, BuildOptions; build({str(root / 'in')!r}, {str(again)!r}, "
            f"BuildOptions(seed=7, medquad=10), say=lambda line: None)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2],
                   env={**os.environ, "PYTHONHASHSEED": "12345"})
    for name in ("train.jsonl", "heldout.jsonl", "report.json"):
        assert (again / name).read_bytes() == (root / "out" / name).read_bytes(), name

    other = tmp_path / "other"
    build(root / "in", other, BuildOptions(seed=8, medquad=10), say=lambda line: None)
    by_question = {r["Question"]: r["oracle"] for r in all_rows(built) if r["answerable"]}
    moved = [r["Question"] for part in ("train", "heldout")
             for r in map(json.loads, (other / f"{part}.jsonl").read_text().splitlines())
             if r["answerable"] and r["Question"] in by_question and r["oracle"] != by_question[r["Question"]]]
    assert len(moved) >= 5


def test_a_missing_required_file_is_a_clear_error_and_optional_ones_are_skipped(tmp_path):
    folder = write_inputs(tmp_path / "in", skip=("medquad_qa_corpus.jsonl",))
    with pytest.raises(FinetuneError, match=r"medquad_qa_corpus\.jsonl: file not found \(MedQuAD is required\)"):
        build(folder, tmp_path / "out", OPTIONS, say=lambda line: None)
    assert not (tmp_path / "out").exists()

    result = CliRunner().invoke(main, ["finetune", "reader-data", "--data-dir", str(folder), "--out",
                                       str(tmp_path / "out")])
    assert result.exit_code == 3 and "error:" in result.stderr and "medquad_qa_corpus.jsonl" in result.stderr
    assert "Traceback" not in result.output + result.stderr

    (folder / "medquad_qa_corpus.jsonl").write_bytes(b"\xff\xfe not utf-8\n")
    with pytest.raises(FinetuneError, match=r"medquad_qa_corpus\.jsonl: cannot read it"):
        build(folder, tmp_path / "out", OPTIONS, say=lambda line: None)

    partial = write_inputs(tmp_path / "partial", skip=("openfda_drug_label_sections_sample.jsonl",
                                                       "medical_o1_sft_en.jsonl"))
    result = CliRunner().invoke(main, ["finetune", "reader-data", "--data-dir", str(partial), "--out",
                                       str(tmp_path / "partial-out"), "--medquad", "10"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "partial-out" / "report.json").read_text())
    assert report["missing_inputs"] == ["openfda_drug_label_sections_sample.jsonl", "medical_o1_sft_en.jsonl"]
    assert "openfda train" not in report["rows"] and report["rows"]["medquad train"] > 0
    assert "not found" in result.stderr


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_sources_column_round_trips_and_trains_on_the_inference_prompt(built, tmp_path, tokenizer):
    root = built[0]
    cfg = DataSection(path=str(root / "out" / "train.jsonl"), sources="sources")
    examples = clean(read_rows(cfg, DataReport()), cfg, DataReport())
    assert len(examples) == len(built[2]["train"]) and all(4 <= len(e.sources) <= 5 for e in examples)
    assert isinstance(examples[0].sources[0], SourceText)

    write_jsonl(tmp_path / "heldout.jsonl", examples, cfg)
    again = DataSection(path=str(tmp_path / "heldout.jsonl"), sources="sources")
    assert clean(read_rows(again, DataReport()), again, DataReport()) == examples

    example = examples[0]
    row = tokenize([example], tokenizer, 8192, "drop", DataReport())[0]
    start = row["completion_mask"].index(1)
    prompt = build_prompt(example.question, list(example.sources))
    assert "### Sources:" in prompt and example.sources[-1].text in prompt
    assert row["input_ids"][:start] == tokenizer(prompt)["input_ids"]

    plain_cfg = DataSection(path=cfg.path)  # without data.sources the same file trains on the question alone
    plain = clean(read_rows(plain_cfg, DataReport()), plain_cfg, DataReport())[0]
    assert plain.sources == () and plain.question == example.question
    assert len(tokenize([plain], tokenizer, 8192, "drop", DataReport())[0]["input_ids"]) < len(row["input_ids"])


def test_malformed_sources_are_counted_and_skipped(tmp_path):
    good = {"Question": "Q0?", "Complex_CoT": "r", "Response": "a [1].",
            "sources": [{"number": 1, "heading": "H", "text": "T"}]}
    bad = [{**good, "Question": "Q1?", "sources": "not a list"},
           {**good, "Question": "Q2?", "sources": [{"number": 1, "heading": "H"}]},  # no text
           {**good, "Question": "Q3?", "sources": [{"number": 1, "heading": "H", "text": "a"},
                                                   {"number": 1, "heading": "H", "text": "b"}]},  # number twice
           {**good, "Question": "Q4?", "sources": [{"number": True, "heading": "H", "text": "a"}]},
           {key: value for key, value in good.items() if key != "sources"} | {"Question": "Q5?"}]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [good, *bad]) + "\n", encoding="utf-8")
    cfg, report = DataSection(path=str(path), sources="sources"), DataReport()
    examples = clean(read_rows(cfg, report), cfg, report)
    assert [e.question for e in examples] == ["Q0?"] and report.bad_sources == 5
    assert "5 bad sources" in report.summary()
    with pytest.raises(FinetuneError, match="psgs not in the data"):
        wrong = DataSection(path=str(path), sources="psgs")
        clean(read_rows(wrong, DataReport()), wrong, DataReport())


def test_no_passage_is_a_distractor_in_more_rows_than_the_cap(tmp_path, monkeypatch, built):
    import finetune.reader_data as reader_data
    from collections import Counter

    def most_used(folder):
        counts = Counter((s["heading"], s["text"]) for part in ("train", "heldout")
                         for r in map(json.loads, (folder / f"{part}.jsonl").read_text().splitlines())
                         for s in r["sources"] if s["number"] != r["oracle"])
        return max(counts.values())

    assert most_used(built[0] / "out") > 3  # uncapped, some passage is a distractor again and again
    monkeypatch.setattr(reader_data, "MAX_DISTRACTOR_USES", 3)
    build(built[0] / "in", tmp_path / "capped", OPTIONS, say=lambda line: None)
    assert most_used(tmp_path / "capped") <= 3


def test_note_rows_read_like_the_starter_notes_with_sibling_sections_as_distractors(built):
    """Note style: "Focus > Section" over one line per sentence, list items among them; an answerable MedQuAD
    row holds other sections of its oracle's note, and its answer is still copied from the oracle."""
    rows = all_rows(built)
    notes = [r for r in rows if r["style"] == "note"]
    assert 0.3 <= len(notes) / len(rows) <= 0.95 and any(r["style"] == "prose" for r in rows)
    with_siblings = 0
    for row in notes:
        for source in row["sources"]:
            if not source["heading"].startswith("PubMed abstract"):
                assert " > " in source["heading"] and " (" not in source["heading"].split(" > ")[-1], source
                lines = source["text"].splitlines()
                assert any(line.startswith("- ") for line in lines) or len(lines) == 1, source["text"]
        if row["answerable"] and row["origin"] == "medquad":
            focus, oracle = focus_of(row["Question"]), oracle_of(row)
            assert oracle["heading"].startswith(f"{focus} > ")
            assert f"({oracle['heading']})" in row["Complex_CoT"]
            with_siblings += any(s["heading"].startswith(f"{focus} > ") and s is not oracle for s in row["sources"])
            for sentence in re.findall(r"(.+?) \[\d+\][.!?]\s*", row["Response"]):
                assert any(line.removeprefix("- ").startswith(sentence) for line in oracle["text"].splitlines())
    assert with_siblings >= 3
    prose = [r for r in rows if r["style"] == "prose" and r["origin"] == "medquad" and r["answerable"]]
    assert prose and all(oracle_of(r)["heading"].endswith(")") for r in prose)  # "Focus (qtype)", as before


def test_keyword_questions_point_to_one_line_of_the_note_and_copy_it(built, tmp_path, monkeypatch):
    import finetune.reader_data as reader_data

    # The tiny pool repeats its words in every topic: any word counts as rare here.
    monkeypatch.setattr(reader_data, "KEYWORD_MAX_SHARE", 1.0)
    report = build(built[0] / "in", tmp_path / "out", BuildOptions(seed=7, medquad=10, keyword=20),
                   say=lambda line: None)
    rows = [json.loads(x) for part in ("train", "heldout") for x in (tmp_path / "out" / f"{part}.jsonl").read_text().splitlines()]
    keyword = [r for r in rows if r["variant"] == "keyword"]
    assert len(keyword) >= 8 and all(r["answerable"] and r["style"] == "note" for r in keyword)
    assert {r["origin"] for r in keyword} == {"medquad", "openfda"}
    assert report.rows["keyword question train"] + report.rows["keyword question heldout"] == len(keyword)
    for row in keyword:
        oracle = oracle_of(row)
        line = row["Response"].replace(f" [{row['oracle']}]", "")
        lines = [x.removeprefix("- ") for x in oracle["text"].splitlines()]
        assert line in lines and line != lines[0], (row["Question"], lines)
        asked = [w for w in re.findall(r"[a-z][a-z-]{4,}", row["Question"].lower())
                 if w in line.lower() and w not in focus_or_drug(row).lower()]
        assert len(asked) >= 2, row["Question"]
        for other in lines:  # each asked word is in this line only
            if other != line:
                assert not all(w in other.lower() for w in asked[:2])


def focus_or_drug(row: dict) -> str:
    return focus_of(row["Question"]) or oracle_of(row)["heading"].split(" > ")[0]


def test_vignettes_are_answerable_too(built, tmp_path):
    rows = all_rows(built)
    vignettes = [r for r in rows if r["variant"] == "vignette"]
    assert vignettes and all(r["answerable"] and re.match(r"An? \d+-year-old (man|woman|boy|girl) with ", r["Question"])
                             for r in vignettes)
    case = re.compile(r"\b\d+-year-old\b")
    answered = sum(bool(case.search(r["Question"])) for r in rows if r["answerable"])
    unanswered = sum(bool(case.search(r["Question"])) for r in rows if not r["answerable"])
    assert answered >= unanswered  # a case is no tell that the sources cannot answer

    plain = build(built[0] / "in", tmp_path / "plain", BuildOptions(seed=7, medquad=10, note_share=0, keyword=0,
                                                                    vignette_share=0), say=lambda line: None)
    rows = [json.loads(x) for x in (tmp_path / "plain" / "train.jsonl").read_text().splitlines()]
    assert {r["style"] for r in rows} == {"prose"} and {r["variant"] for r in rows} == {"plain"}
    assert "note style train" not in plain.rows
