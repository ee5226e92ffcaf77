"""SFT data: read rows, clean them, hold some out, and tokenize them in the one prompt format.

Every row that does not reach training is counted by reason (`DataReport`), so a user can see that
3 rows had an empty answer or 40 were too long, instead of wondering why the run saw fewer rows.

Grounded-answer rows (finetune/reader_data.py) also carry numbered passages in a `data.sources`
column; they are trained with the same `### Sources:` block the assistant puts in front of a question.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from finetune.config import DataSection, FinetuneError
from finetune.prompt import SourceText, build_prompt, build_training_text

LOCAL_FORMATS = (".json", ".jsonl", ".csv", ".parquet")


@dataclass(frozen=True)
class Example:
    question: str
    reasoning: str
    answer: str
    sources: tuple[SourceText, ...] = ()  # numbered passages (data.sources); empty: a question without retrieval


@dataclass
class DataReport:
    read: int = 0  # rows in the source
    unreadable: int = 0  # JSONL lines that are not JSON objects
    missing_fields: int = 0  # a question, reasoning or answer absent or empty
    duplicates: int = 0  # the same question again (it would also leak held-out questions into training)
    bad_sources: int = 0  # data.sources is set and the row's passages are not a list of {number, heading, text}
    beyond_max_rows: int = 0  # usable, but past data.max_rows
    truncated: int = 0  # longer than max_seq_length, cut to it (data.overlong = truncate)
    dropped_overlong: int = 0  # longer than max_seq_length and dropped (overlong = drop, or the prompt alone is too long)
    train: int = 0
    eval: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        skipped = {k: v for k, v in self.as_dict().items() if k not in ("read", "train", "eval") and v}
        detail = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in skipped.items()) or "none skipped"
        return f"{self.read} rows read: {self.train} train, {self.eval} held out ({detail})"


def read_rows(cfg: DataSection, report: DataReport) -> list[dict]:
    """Raw rows from a local file (by extension) or, when no such file exists, a Hub dataset id."""
    path = Path(cfg.path).expanduser()
    if path.is_file():
        if path.suffix.lower() not in LOCAL_FORMATS:
            raise FinetuneError(f"{path}: unsupported data format {path.suffix!r}; use {', '.join(LOCAL_FORMATS)}")
        rows = _read_local(path, report)
    elif path.suffix.lower() in LOCAL_FORMATS or path.is_dir() or cfg.path.startswith((".", "/", "~")):
        raise FinetuneError(f"data file {cfg.path} does not exist (a Hub dataset id looks like owner/name)")
    else:
        rows = _read_hub(cfg)
    report.read = len(rows) + report.unreadable
    return rows


def _read_local(path: Path, report: DataReport) -> list[dict]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        text = path.read_text(encoding="utf-8-sig")
        if suffix == ".csv":
            return list(csv.DictReader(text.splitlines()))
        if suffix == ".json":
            data = json.loads(text)
            rows = data if isinstance(data, list) else next((v for v in data.values() if isinstance(v, list)), None) \
                if isinstance(data, dict) else None
            if rows is None:
                raise FinetuneError(f"{path}: expected a JSON list of objects (or an object holding one)")
            return rows
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise FinetuneError(f"cannot read {path}: {exc}") from None
    except Exception as exc:  # pyarrow's errors have no common base worth naming
        raise FinetuneError(f"cannot read {path}: {exc}") from None
    rows, bad = jsonl_objects(text)  # a bad line is counted and skipped, the rest still train
    report.unreadable += bad
    return rows


def jsonl_objects(text: str) -> tuple[list[dict], int]:
    """The JSON objects of JSONL text, and how many non-empty lines were not one. split("\n"), not
    splitlines(): a text field may hold U+2028/U+2029 unescaped (json.dumps(ensure_ascii=False) writes them
    so, and PubMedQA has them), which are no line end in JSONL."""
    rows, bad = [], 0
    for line in filter(str.strip, text.split("\n")):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    return rows, bad


def _read_hub(cfg: DataSection) -> list[dict]:
    try:
        from datasets import load_dataset
    except ImportError:
        raise FinetuneError("reading Hub datasets needs `datasets`: pip install 'medassist[train]'") from None
    try:
        return load_dataset(cfg.path, cfg.hub_config, split=cfg.split).to_list()
    except Exception as exc:  # offline, unknown id, unknown config: all end here with the library's reason
        raise FinetuneError(f"cannot load dataset {cfg.path!r} (config {cfg.hub_config}, split {cfg.split}) "
                            f"from the Hub: {exc}. Without the Hub, give a local .jsonl/.csv/.parquet file") from None


def clean(rows: list[dict], cfg: DataSection, report: DataReport) -> list[Example]:
    """Examples with all three fields present and non-empty, first occurrence of each question only."""
    columns = (cfg.question, cfg.reasoning, cfg.answer)
    seen_columns = set().union(*(row.keys() for row in rows[:1000])) if rows else set()
    absent = [c for c in (*columns, cfg.sources) if c and c not in seen_columns]
    if rows and absent:
        raise FinetuneError(f"column(s) {', '.join(absent)} not in the data (its columns: "
                            f"{', '.join(sorted(map(str, seen_columns)))}); map them with --set data.question=... "
                            "data.reasoning=... data.answer=... (data.sources=null: rows without passages)")
    examples, seen = [], set()
    for row in rows:
        values = [_text(row.get(c)) for c in columns]
        if not all(values):
            report.missing_fields += 1
            continue
        sources = _sources(row.get(cfg.sources)) if cfg.sources else ()
        if sources is None:
            report.bad_sources += 1
            continue
        key = " ".join(values[0].split()).casefold()
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        examples.append(Example(*values, sources=sources))
    if cfg.max_rows and len(examples) > cfg.max_rows:
        report.beyond_max_rows = len(examples) - cfg.max_rows
        examples = examples[:cfg.max_rows]
    return examples


def _sources(value) -> tuple[SourceText, ...] | None:
    """The passages of one row, or None when they are malformed. CSV cells hold them as JSON text.

    Numbers must be distinct positive integers: the answer cites them, so a duplicate or a missing
    number would teach the model citations that point nowhere.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if not isinstance(value, list):
        return None
    passages = []
    for item in value:
        if not isinstance(item, dict):
            return None
        number, heading, text = item.get("number"), item.get("heading"), item.get("text")
        if isinstance(number, bool) or not isinstance(number, int) or number < 1 \
                or not isinstance(heading, str) or not isinstance(text, str) or not text.strip():
            return None
        passages.append(SourceText(number, heading.strip(), text.strip()))
    if len({p.number for p in passages}) != len(passages):
        return None
    return tuple(passages)


def _text(value) -> str:
    if value is None or isinstance(value, float) and value != value:  # None or NaN (pandas/parquet gaps)
        return ""
    return str(value).strip()


def split(examples: list[Example], eval_rows: int, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, held out): a seeded shuffle, so the held-out questions are the same on every run of a config."""
    if eval_rows and len(examples) <= eval_rows:
        raise FinetuneError(f"only {len(examples)} usable rows, not enough to hold out data.eval_rows={eval_rows} "
                            "and still train: lower it with --set data.eval_rows=N, or add data")
    order = list(examples)
    random.Random(seed).shuffle(order)
    return order[eval_rows:], order[:eval_rows]


def tokenize(examples: list[Example], tokenizer, max_seq_length: int, overlong: str,
             report: DataReport) -> list[dict]:
    """`input_ids` of build_training_text, and a `completion_mask` (1 from the reasoning on), for TRL.

    Tokenizing the whole text (not prompt and completion apart) keeps the exact tokens inference sees;
    the mask starts where the tokenized prompt stops being a prefix of it.
    """
    eos = tokenizer.eos_token or ""
    if not examples:
        return []
    texts = [build_training_text(e.question, e.reasoning, e.answer, eos, list(e.sources)) for e in examples]
    prompts = [build_prompt(e.question, list(e.sources)) for e in examples]
    full_ids = tokenizer(texts)["input_ids"]
    prompt_ids = tokenizer(prompts)["input_ids"]
    rows = []
    for ids, prompt in zip(full_ids, prompt_ids):
        start = _common_prefix(ids, prompt)
        if len(ids) > max_seq_length:
            if overlong == "drop" or start >= max_seq_length:  # nothing of the answer would be left
                report.dropped_overlong += 1
                continue
            ids = ids[:max_seq_length]
            report.truncated += 1
        rows.append({"input_ids": ids, "completion_mask": [0] * start + [1] * (len(ids) - start)})
    return rows


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def write_jsonl(path: Path, examples: list[Example], cfg: DataSection) -> None:
    """Held-out rows under the configured column names, so `finetune compare --data` reads them back as is."""
    with open(path, "w", encoding="utf-8") as handle:
        for e in examples:
            row = {cfg.question: e.question, cfg.reasoning: e.reasoning, cfg.answer: e.answer}
            if cfg.sources:
                row[cfg.sources] = [asdict(s) for s in e.sources]
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
