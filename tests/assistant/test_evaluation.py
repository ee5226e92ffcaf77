"""The evaluation harness: reading answers, intervals, sampling, per-dataset scores, resumable runs, batched
generation, retrieval for the eval, and the `medassist eval` commands (tiny random model, real MiniLM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.backends import GenerationSettings, load_backend
from assistant.evaluation import (AnswerLog, EvalError, MCQItem, RunConfig, ask_mcq, build_eval_index, extract_letter,
                                  index_contexts, load_mcq, markdown_table, recall_scores, retrieval_ranks, run_mcq,
                                  sample_items, score, summarize, wilson)
from index import KnowledgeBase

MEDASSIST = str(Path(sys.executable).parent / "medassist")
FOUR = {"A": "Bladder", "B": "Kidney", "C": "Ureter", "D": "Urethra"}
YES_NO = {"A": "yes", "B": "no", "C": "maybe"}
# Short budgets: the tiny model writes noise, these tests are about the mechanics around it.
FAST = GenerationSettings(max_new_tokens=40, max_think_tokens=8, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return load_backend("transformers", model=str(tiny_model))


def items(n: int, datasets=("mmlu", "medqa")) -> list[MCQItem]:
    return [MCQItem(datasets[i % len(datasets)], f"q{i}", f"Question {i}: which organ stores urine?", FOUR, "A")
            for i in range(n)]


def config(**changes) -> RunConfig:
    base = RunConfig(model="tiny", backend="transformers", adapter=None, use_rag=False, k=5, index=None,
                     settings=FAST.__dict__)
    return replace(base, **changes)


# --- reading the answer ------------------------------------------------------------------------

@pytest.mark.parametrize("text, options, expected", [
    ("Answer: B", FOUR, "B"),
    ("The answer is (C).", FOUR, "C"),
    ("the correct answer is d", FOUR, "D"),
    ("**D**", FOUR, "D"),
    ("**Answer:** **C**", FOUR, "C"),
    ("B. Kidney\nThe kidney filters blood.", FOUR, "B"),
    ("(A) Bladder", FOUR, "A"),
    ("c) Ureter", FOUR, "C"),
    ("A", FOUR, "A"),
    ("Option B", FOUR, "B"),
    ("The correct option is B because the kidney filters.", FOUR, "B"),
    ("Answer: B. Option A is wrong because the bladder only stores urine.", FOUR, "B"),  # first statement wins
    ("Urine is stored in the bladder.", FOUR, "A"),  # the option's text instead of its letter
    ("ureter", FOUR, "C"),
    ("Yes, and there is no doubt about it.", YES_NO, "A"),  # starts with one option, mentions another
    ("No.", YES_NO, "B"),
    ("the answer is a beta blocker", {"A": "ACE inhibitor", "B": "beta blocker"}, "B"),  # "a" is an article
    ("paralysis of the facial muscles and loss of taste.",
     {"A": "paralysis of the facial muscles.", "B": "paralysis of the facial muscles and loss of taste."}, "B"),
    ("A. Bladder\nB. Kidney\nC. Ureter\nD. Urethra", FOUR, None),  # echoing the options chooses none
    ("The kidney or the bladder, hard to say.", FOUR, None),
    ("The bladder is a muscular sac. The kidney filters blood.", FOUR, "A"),
    ("Urine is made continuously. The ureter carries it.", FOUR, None),  # named in passing, not chosen
    ("The answer to this question would be C because it is the tube.", FOUR, "C"),
    ("Answer: E", FOUR, None),  # not an option
    ("I am not sure.", FOUR, None),
    ("", FOUR, None),
])
def test_extract_letter_reads_real_world_answer_formats(text, options, expected):
    assert extract_letter(text, options) == expected


def test_a_conclusion_in_the_reasoning_is_used_when_the_answer_has_no_letter():
    item = MCQItem("mmlu", "1", "Which organ stores urine?", FOUR, "A")
    record = {"response": "I am not sure.", "reasoning": "Not B or C; the answer is A, surely."}
    assert score(record, item) | {"response": None, "reasoning": None} == {
        "response": None, "reasoning": None, "predicted": "A", "correct": True, "read_from": "reasoning"}
    assert score({**record, "response": "Answer: D"}, item)["read_from"] == "answer"
    assert score({**record, "reasoning": "thinking..."}, item)["predicted"] is None


def test_a_parroted_instruction_is_not_read_as_a_choice():
    from finetune.prompt import MCQ_RULES

    assert extract_letter(MCQ_RULES, FOUR) is None


# --- scores ------------------------------------------------------------------------------------

@pytest.mark.parametrize("successes, n, low, high", [
    (50, 100, 0.4038, 0.5962),
    (0, 10, 0.0, 0.2775),  # upper bound z²/(n+z²): not the degenerate [0, 0] of p ± z·se
    (10, 10, 0.7225, 1.0),
    (1, 4, 0.0456, 0.6994),
    (81, 263, 0.2553, 0.3662),
])
def test_wilson_interval_known_values(successes, n, low, high):
    got = wilson(successes, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_summary_has_per_dataset_rows_baseline_and_unparseable():
    records = ([{"dataset": "mmlu", "correct": c, "predicted": p, "n_options": 4, "seconds": 1.0}
                for c, p in [(True, "A"), (False, "B"), (False, None), (True, "A")]]
               + [{"dataset": "pubmedqa", "correct": c, "predicted": p, "n_options": 3, "seconds": 2.0}
                  for c, p in [(True, "A"), (False, None)]])
    summary = summarize(records)
    rows = summary["datasets"]
    assert list(rows) == ["mmlu", "pubmedqa", "all"]
    assert rows["mmlu"] | {"ci95": None} == {"n": 4, "correct": 2, "accuracy": 0.5, "ci95": None,
                                            "random_baseline": 0.25, "unparseable": 1, "seconds_per_question": 1.0}
    assert rows["mmlu"]["ci95"] == [round(x, 4) for x in wilson(2, 4)]
    assert rows["pubmedqa"]["random_baseline"] == pytest.approx(1 / 3, abs=1e-4)
    assert rows["all"]["n"] == 6 and rows["all"]["unparseable"] == 2 and rows["all"]["accuracy"] == 0.5
    assert rows["all"]["random_baseline"] == pytest.approx((4 * 0.25 + 2 / 3) / 6, abs=1e-4)
    assert summary["mean_accuracy"] == 0.5
    table = markdown_table(summary).splitlines()
    assert table[0].startswith("| dataset | n | accuracy | 95% CI (Wilson) | random guess")
    assert table[2] == "| mmlu | 4 | 0.500 | 0.150–0.850 | 0.250 | 1 | 1.00 |"
    assert table[4].startswith("| **all** | 6 | 0.500 |")


# --- data --------------------------------------------------------------------------------------

def test_load_mcq_reads_mirage_and_medqa_shapes(tmp_path):
    mirage = tmp_path / "mirage.jsonl"
    mirage.write_text(json.dumps({"dataset": "pubmedqa", "id": "26163474", "question": "Is it?",
                                  "options": YES_NO, "answer": "A"}) + "\n\n")
    medqa = tmp_path / "medqa_usmle_4opt_test.jsonl"
    medqa.write_text(json.dumps({"id": "0001", "question": "Which organ?", "options": FOUR, "answer_idx": "C",
                                 "answer": "Ureter", "meta_info": "step1"}) + "\n"
                     + json.dumps({"id": "0002", "question": "Which?", "options": FOUR, "answer": "Kidney"}) + "\n")
    assert load_mcq(mirage) == [MCQItem("pubmedqa", "26163474", "Is it?", YES_NO, "A")]
    got = load_mcq(medqa)
    assert [(i.dataset, i.id, i.answer) for i in got] == [("medqa_usmle_4opt_test", "0001", "C"),
                                                          ("medqa_usmle_4opt_test", "0002", "B")]


def test_load_mcq_names_the_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": "1", "question": "Q", "options": FOUR, "answer": "A"}) + "\n"
                    + json.dumps({"id": "2", "question": "Q", "options": FOUR, "answer": "Liver"}) + "\n")
    with pytest.raises(EvalError, match=r"bad.jsonl, line 2"):
        load_mcq(path)


def test_sample_is_seeded_balanced_and_nested():
    pool = [MCQItem(name, f"{name}-{i}", "q", FOUR, "A") for name, n in [("a", 50), ("b", 30), ("c", 5)]
            for i in range(n)]
    first = sample_items(pool, 30, seed=0)
    assert first == sample_items(list(reversed(pool)), 30, seed=0)  # the file's row order does not matter
    assert first != sample_items(pool, 30, seed=1)
    counts = {name: sum(i.dataset == name for i in first) for name in "abc"}
    assert counts == {"a": 13, "b": 12, "c": 5}  # even, until a small set runs out
    assert sample_items(pool, 60, seed=0)[:30] == first  # a larger sample contains the smaller one
    assert {i.dataset for i in sample_items(pool, None, datasets=["b"])} == {"b"}
    with pytest.raises(EvalError, match="no items for dataset.*has: a, b, c"):
        sample_items(pool, datasets=["medqa"])


def test_real_data_files_load_with_their_field_names():
    """MIRAGE and MedQA as shipped in shared/data (skipped where that folder is absent)."""
    data = Path(os.environ.get("MEDASSIST_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    if not (data / "mirage_benchmark.jsonl").exists():
        pytest.skip("shared/data not present")
    mirage = load_mcq(data / "mirage_benchmark.jsonl")
    assert {i.dataset for i in mirage} == {"mmlu", "medqa", "medmcqa", "pubmedqa", "bioasq"}
    assert all(i.answer in i.options for i in mirage)
    medqa = load_mcq(data / "medqa_usmle_4opt_test.jsonl")
    assert all(len(i.options) == 4 and i.answer in i.options for i in medqa)


# --- generation --------------------------------------------------------------------------------

def test_batch_generation_gives_the_same_greedy_text_as_one_at_a_time(tiny):
    prompts = ["Question: what is the first line treatment for hypertension?", "Fever cough",
               "The patient is a 54 year old man with type 2 diabetes. Dose 500 mg twice daily. Check"]
    settings = GenerationSettings(max_new_tokens=30, repetition_penalty=1.15)
    single = ["".join(tiny.generate(p, settings)) for p in prompts]
    assert tiny.generate_batch(prompts, settings) == single
    assert len(set(single)) == 3  # the rows are not all the same text
    stop = single[2][8:12]
    assert tiny.generate_batch(prompts, settings, stop=[stop]) == ["".join(tiny.generate(p, settings, stop=[stop]))
                                                                   for p in prompts]
    assert stop not in tiny.generate_batch(prompts, settings, stop=[stop])[2]


def test_batched_and_single_runs_record_the_same_answers(tiny):
    questions = items(3)
    batched = [r for rs in ask_mcq(questions, tiny, FAST, batch_size=3) for r in rs]
    single = [r for rs in ask_mcq(questions, tiny, FAST, batch_size=1) for r in rs]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(batched) == strip(single)
    assert all(r["reasoning"] and r["response"] for r in batched)


# --- resumable runs ----------------------------------------------------------------------------

class Interrupted(Exception):
    pass


def test_interrupted_run_continues_without_asking_again(tiny, tmp_path):
    questions = items(5)
    settings = replace(FAST, max_think_tokens=0)

    def stop_after(n):
        def on_progress(done, total):
            if done >= n:
                raise Interrupted
        return on_progress

    with pytest.raises(Interrupted):
        run_mcq(questions, tiny, settings, tmp_path, config(), batch_size=2, on_progress=stop_after(2))
    log = tmp_path / "answers.jsonl"
    first = log.read_text().splitlines()
    assert len(first) == 2
    with open(log, "a") as handle:
        handle.write('{"config": "cut off by a ki')  # a kill in the middle of a write
    summary = run_mcq(questions, tiny, settings, tmp_path, config(), batch_size=3)  # batch size is not in the key
    assert summary["resumed"] == 2 and summary["datasets"]["all"]["n"] == 5
    lines = log.read_text().splitlines()
    assert lines[:2] == first and len(lines) == 2 + 1 + 3  # the 2 kept, the broken line, 3 new answers
    answered = [json.loads(line)["id"] for line in lines if line.startswith('{"config": "') and "cut off" not in line]
    assert sorted(answered) == sorted(i.id for i in questions)  # every question exactly once
    # A second complete run asks nothing; a different configuration reuses nothing.
    assert run_mcq(questions, tiny, settings, tmp_path, config(), batch_size=2)["resumed"] == 5
    other = config(settings={**config().settings, "max_new_tokens": 41})
    assert other.key != config().key
    assert run_mcq(questions[:2], tiny, settings, tmp_path, other, batch_size=2)["resumed"] == 0
    assert len(AnswerLog(tmp_path, config().key).done()) == 5
    assert (tmp_path / f"summary-{config().key}.md").read_text().startswith("| dataset |")


def test_resumed_answers_are_scored_again(tiny, tmp_path):
    """answers.jsonl keeps the raw text: a better letter reader applies to old answers without asking again."""
    item = MCQItem("mmlu", "q0", "Which organ stores urine?", FOUR, "C")
    stale = {"dataset": "mmlu", "id": "q0", "gold": "C", "n_options": 4, "reasoning": "", "response": "Answer: C",
             "retrieved": [], "seconds": 1.0, "predicted": None, "correct": False, "read_from": None}
    AnswerLog(tmp_path, config().key).append([stale])
    summary = run_mcq([item], tiny, FAST, tmp_path, config())
    assert summary["resumed"] == 1 and summary["datasets"]["all"]["correct"] == 1


def test_configuration_key_covers_what_changes_answers():
    assert config().key == config().key
    for change in [dict(model="other"), dict(adapter="/a"), dict(use_rag=True), dict(k=3), dict(index="x@2")]:
        assert config(**change).key != config().key, change


# --- retrieval ---------------------------------------------------------------------------------

def test_retrieval_uses_the_question_not_the_options(tiny, make_kb, notes):
    kb = make_kb()
    kb.ingest(list(notes.values()))
    lithium = "Lithium serum levels are checked 12 hours after the dose; thiazides and NSAIDs raise lithium levels"
    item = MCQItem("x", "1", "Which drug treats an acute gout flare?",
                   {"A": lithium, "B": f"{lithium} (toxicity)", "C": "Colchicine"}, "C")
    [[record]] = list(ask_mcq([item], tiny, replace(FAST, max_think_tokens=0), kb=kb, k=1))
    [chunk] = [c for c in kb.manifest.ready_chunks() if c.chunk_id in record["retrieved"]]
    assert chunk.title == "Gout flare"


def test_build_index_command_ingests_medquad_and_openfda_once(tmp_path, embedder):
    from assistant.cli import main

    home = tmp_path / "eval-home"
    KnowledgeBase(home).manifest.set_meta("starter_ingested", "skipped by test")  # tested in tests/index
    medquad = tmp_path / "medquad.jsonl"
    medquad.write_text(json.dumps({"question": "What are the symptoms of gout?", "answer": "A painful swollen joint.",
                                   "focus": "Gout", "qtype": "symptoms", "url": "https://example.org/gout"}) + "\n")
    openfda = tmp_path / "labels.jsonl"
    openfda.write_text(json.dumps({"id": "m:i", "drug": "metformin", "section": "Indications and Usage",
                                   "text": "Metformin is indicated for type 2 diabetes mellitus."}) + "\n")
    command = ["eval", "build-index", "--home", str(home), "--medquad", str(medquad), "--openfda", str(openfda)]
    first = CliRunner().invoke(main, command)
    assert first.exit_code == 0, first.output
    assert "2 added" in first.stderr and "2 chunks" in first.stderr
    again = CliRunner().invoke(main, command)
    assert again.exit_code == 0 and "2 unchanged" in again.stderr
    kb = KnowledgeBase(home, embedder=embedder)
    assert [p.chunk.title for p in kb.search("metformin type 2 diabetes", k=1)] == ["Metformin"]
    with pytest.raises(EvalError, match="not found"):
        build_eval_index(kb, [tmp_path / "missing.jsonl"])


def test_pubmedqa_recall_finds_each_question_own_context(embedder, tmp_path):
    rows = [{"pubid": "1", "question": "Does lithium need serum level monitoring?",
             "contexts": ["Lithium serum levels were measured 12 hours after the dose in 40 patients."]},
            {"pubid": "2", "question": "Is colchicine effective for acute gout flares?",
             "contexts": ["Colchicine reduced pain in acute gout flares within 24 hours in a randomised trial."]},
            {"pubid": "3", "question": "Does appendicitis cause right iliac fossa pain?",
             "contexts": ["Periumbilical pain migrating to the right iliac fossa was recorded in appendicitis."]}]
    kb, pubids_of = index_contexts(rows, tmp_path, embedder)
    assert sorted(p for ids in pubids_of.values() for p in ids) == ["1", "2", "3"]
    for mode in ("dense", "sparse", "hybrid"):
        ranks, times, tops = retrieval_ranks(kb, rows, pubids_of, mode, k=2)
        assert ranks == [1, 1, 1] and len(times) == 3 and all(tops)
    scores = recall_scores([1, None, 2, 1], k=5)
    assert scores["recall@1"]["value"] == 0.5 and scores["recall@5"]["value"] == 0.75
    assert scores["mrr"] == pytest.approx((1 + 0 + 0.5 + 1) / 4, abs=1e-4)


# --- the commands ------------------------------------------------------------------------------

def write_questions(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"dataset": ["mmlu", "bioasq"][i % 2], "id": str(i),
                                        "question": f"Question {i}: which organ stores urine?",
                                        "options": FOUR if i % 2 == 0 else {"A": "yes", "B": "no"}, "answer": "A"})
                            + "\n" for i in range(n)))
    return path


def test_eval_mcq_command_prints_json_and_table(tiny_model, tmp_path):
    from assistant.cli import main

    data = write_questions(tmp_path / "q.jsonl", 6)
    args = ["eval", "mcq", "--data", str(data), "--no-rag", "--model", str(tiny_model), "--limit", "4",
            "--think-tokens", "0", "--max-new-tokens", "8", "--batch-size", "3", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["items"] == 4 and summary["resumed"] == 0
    assert {name: row["n"] for name, row in summary["datasets"].items()} == {"bioasq": 2, "mmlu": 2, "all": 4}
    assert summary["datasets"]["bioasq"]["random_baseline"] == 0.5
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "| **all** | 4 |" in again.stdout and "4 answers reused" in again.stderr
    bad = CliRunner().invoke(main, ["eval", "mcq", "--data", str(data), "--no-rag", "--dataset", "medqa"])
    assert bad.exit_code == 2 and "no items for dataset(s) medqa" in bad.stderr and "Traceback" not in bad.output


def test_eval_mcq_without_an_index_says_how_to_build_one(tmp_path):
    from assistant.cli import main

    empty = tmp_path / "empty-home"
    empty.mkdir()
    result = CliRunner().invoke(main, ["eval", "mcq", "--data", str(write_questions(tmp_path / "q.jsonl", 2)),
                                       "--index-home", str(empty)])
    assert result.exit_code == 2 and "medassist eval build-index" in result.stderr


def test_killed_eval_command_resumes_where_it_stopped(tiny_model, tmp_path):
    """SIGKILL the real command after a few answers; the rerun asks only the rest and counts every question once."""
    data = write_questions(tmp_path / "q.jsonl", 30)
    out = tmp_path / "out"
    command = [MEDASSIST, "eval", "mcq", "--data", str(data), "--no-rag", "--model", str(tiny_model),
               "--think-tokens", "0", "--max-new-tokens", "32", "--out", str(out), "--json", "--batch-size"]
    env = {**os.environ, "MEDASSIST_HOME": str(tmp_path / "home")}
    process = subprocess.Popen([*command, "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = out / "answers.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = len(log.read_text().splitlines())
    assert 3 <= kept < 30, "the run ended before it could be killed: make it longer"
    finished = subprocess.run([*command, "8"], env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    summary = json.loads(finished.stdout)
    answered = [json.loads(line)["id"] for line in log.read_text().splitlines() if line.endswith("}")]
    assert summary["resumed"] >= kept - 1 and summary["datasets"]["all"]["n"] == 30
    assert sorted(answered, key=int) == [str(i) for i in range(30)]  # nothing asked twice, nothing left out


def test_eval_retrieval_command(tmp_path):
    from assistant.cli import main

    data = tmp_path / "pqal.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in [
        {"pubid": "11", "question": "Is colchicine effective for acute gout flares?",
         "contexts": ["Colchicine reduced pain in acute gout flares within 24 hours."]},
        {"pubid": "12", "question": "Does lithium need serum level monitoring?",
         "contexts": ["Lithium serum levels were measured 12 hours after the dose."]}]))
    result = CliRunner().invoke(main, ["eval", "retrieval", "--data", str(data), "-k", "1", "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["items"] == 2
    assert {mode: s["recall@1"]["value"] for mode, s in scores["methods"].items()} == \
        {"dense": 1.0, "sparse": 1.0, "hybrid": 1.0}
    wrong = tmp_path / "mirage.jsonl"
    wrong.write_text(json.dumps({"question": "Q?", "options": FOUR, "answer": "A"}) + "\n")
    bad = CliRunner().invoke(main, ["eval", "retrieval", "--data", str(wrong)])
    assert bad.exit_code == 2 and "item 1: expected pubid, question and contexts" in bad.stderr
