"""SFT data: every row that does not reach training is counted by reason; the format is finetune.prompt's."""

from __future__ import annotations

import csv
import json

import pytest

from finetune.config import DataSection, FinetuneError
from finetune.data import DataReport, Example, clean, read_rows, split, tokenize
from finetune.prompt import build_prompt, build_training_text

GOOD = [{"Question": f"What is the first line treatment for case {n}?", "Complex_CoT": "Check kidney function.",
         "Response": f"Metformin {n}00 mg twice daily."} for n in range(1, 7)]


def write_jsonl(path, rows, extra_lines=()):
    path.write_text("\n".join([json.dumps(r) for r in rows] + list(extra_lines)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_bad_rows_are_skipped_and_counted_by_reason(tmp_path):
    bad = [{"Question": "No reasoning here?", "Response": "x"},  # field absent
           {"Question": "Empty answer?", "Complex_CoT": "r", "Response": ""},
           {"Question": "   ", "Complex_CoT": "r", "Response": "a"},  # whitespace only
           {"Question": None, "Complex_CoT": "r", "Response": "a"},
           {**GOOD[0], "Question": "  what is the FIRST line treatment for case 1? "[:-1]}]  # duplicate, other case
    bad[-1]["Question"] = GOOD[0]["Question"].upper() + "  "
    path = write_jsonl(tmp_path / "rows.jsonl", GOOD + bad, extra_lines=["{not json", "[1, 2]"])
    report = DataReport()
    examples = clean(read_rows(DataSection(path=str(path)), report), DataSection(path=str(path)), report)
    assert [e.question for e in examples] == [r["Question"] for r in GOOD]
    assert (report.read, report.unreadable, report.missing_fields, report.duplicates) == (13, 2, 4, 1)

    capped, cfg = DataReport(), DataSection(path=str(path), max_rows=4)
    assert len(clean(read_rows(cfg, capped), cfg, capped)) == 4 and capped.beyond_max_rows == 2
    assert "2 beyond max rows" in capped.summary()


def test_overlong_rows_are_truncated_or_dropped_by_choice(tokenizer):
    short = Example("Fever cough?", "Chest pain.", "Pneumonia.")
    long = Example("Fever cough?", "The patient is a 54 year old man. " * 40, "Pneumonia.")
    limit = len(tokenizer(build_training_text(short.question, short.reasoning, short.answer, "<eos>"))["input_ids"]) + 5

    truncated = DataReport()
    rows = tokenize([short, long], tokenizer, limit, "truncate", truncated)
    assert [len(r["input_ids"]) <= limit for r in rows] == [True, True]
    assert len(rows[1]["input_ids"]) == limit and (truncated.truncated, truncated.dropped_overlong) == (1, 0)

    dropped = DataReport()
    rows = tokenize([short, long], tokenizer, limit, "drop", dropped)
    assert len(rows) == 1 and (dropped.truncated, dropped.dropped_overlong) == (0, 1)

    prompt_only = DataReport()  # a limit the prompt alone fills leaves nothing to learn: dropped even when truncating
    assert tokenize([short], tokenizer, 10, "truncate", prompt_only) == []
    assert prompt_only.dropped_overlong == 1


def test_completion_mask_starts_right_after_the_inference_prompt(tokenizer):
    example = Example("Fever cough chest pain?", "The patient is a 54 year old man.", "Pneumonia.")
    row = tokenize([example], tokenizer, 4096, "truncate", DataReport())[0]
    start = row["completion_mask"].index(1)
    assert set(row["completion_mask"][start:]) == {1} and len(row["completion_mask"]) == len(row["input_ids"])
    assert row["input_ids"][:start] == tokenizer(build_prompt(example.question))["input_ids"]
    completion = tokenizer.decode(row["input_ids"][start:])  # the tiny vocabulary lacks "<" and newlines: <unk>
    assert completion.startswith("The patient is a 54 year old man.") and completion.endswith("<eos>")
    assert row["input_ids"][-1] == tokenizer.eos_token_id


def test_csv_parquet_and_json_read_the_same_rows_with_mapped_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    renamed = [{"q": r["Question"], "why": r["Complex_CoT"], "a": r["Response"], "id": n} for n, r in enumerate(GOOD)]
    with open(tmp_path / "rows.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["q", "why", "a", "id"])
        writer.writeheader()
        writer.writerows(renamed)
    pq.write_table(pa.Table.from_pylist(renamed), tmp_path / "rows.parquet")
    (tmp_path / "rows.json").write_text(json.dumps(renamed))
    results = []
    for name in ("rows.csv", "rows.parquet", "rows.json"):
        cfg = DataSection(path=str(tmp_path / name), question="q", reasoning="why", answer="a")
        report = DataReport()
        results.append(clean(read_rows(cfg, report), cfg, report))
    assert results[0] == results[1] == results[2] and len(results[0]) == len(GOOD)


def test_wrong_column_names_and_missing_files_say_what_to_do(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [{"question": "q", "cot": "c", "answer": "a"}])
    cfg = DataSection(path=str(path))
    with pytest.raises(FinetuneError, match=r"Question, Complex_CoT, Response not in the data .*--set data.question"):
        clean(read_rows(cfg, DataReport()), cfg, DataReport())
    with pytest.raises(FinetuneError, match="does not exist"):
        read_rows(DataSection(path=str(tmp_path / "nope.jsonl")), DataReport())
    (tmp_path / "rows.txt").write_text("hello")
    with pytest.raises(FinetuneError, match="unsupported data format '.txt'"):
        read_rows(DataSection(path=str(tmp_path / "rows.txt")), DataReport())


def test_held_out_split_is_seeded_and_disjoint():
    examples = [Example(f"q{n}", "r", "a") for n in range(20)]
    train, held = split(examples, 5, seed=3407)
    assert len(held) == 5 and len(train) == 15 and not set(train) & set(held)
    assert split(examples, 5, seed=3407) == (train, held)
    assert split(examples, 5, seed=1)[1] != held
    with pytest.raises(FinetuneError, match="data.eval_rows"):
        split(examples[:3], 5, seed=3407)
