"""The evaluation harness: multiple-choice accuracy (MIRAGE, MedQA) and retrieval recall (PubMedQA).

Multiple choice, as MIRAGE scores it: each question is asked through `finetune.prompt` (options
listed, reasoning allowed), with passages retrieved for the question alone (never the options);
the answer letter is read back from free text (`extract_letter`); accuracy per dataset gets a 95%
Wilson interval and the random-guess baseline beside it. Every answered question is appended to
`answers.jsonl` with a key of the run's configuration, so a killed run continues where it stopped
and a different configuration never reuses an answer.

With `scoring="loglik"` (`assistant/loglik.py`) nothing is generated: each option's log-likelihood after
the prompt is measured and the most likely option chosen, reported raw (`acc`) and per character of the
option (`acc_norm`), as lm-evaluation-harness reports multiple-choice tasks.

Retrieval: every PubMedQA context is indexed, each question searched, and recall@1/@k of its own
context measured for dense, BM25 and hybrid search.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from assistant.backends import GenerationSettings
from finetune.prompt import THINK_CLOSE, SourceText, build_prompt, close_reasoning, format_mcq, split_reasoning

Z95 = 1.959964  # the normal quantile for a two-sided 95% interval


class EvalError(Exception):
    """An evaluation file or setting cannot be used; the message names the file (and line) and the fix."""


# --- data --------------------------------------------------------------------------------------

def read_jsonl(path: Path | str, limit: int | None = None) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
                if limit and len(rows) >= limit:
                    break
    return rows


def load_pubmedqa(path: Path | str, limit: int | None = None) -> list[dict]:
    """PubMedQA PQA-L items (`pubid`, `question`, `contexts`), the first `limit` of them."""
    try:
        rows = read_jsonl(path, limit)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvalError(f"{path}: cannot read as JSONL ({exc})") from None
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not {"pubid", "question", "contexts"} <= row.keys():
            raise EvalError(f"{path}, item {number}: expected pubid, question and contexts (PubMedQA PQA-L)")
    if not rows:
        raise EvalError(f"{path}: no items found")
    return rows


@dataclass(frozen=True)
class MCQItem:
    dataset: str
    id: str
    question: str
    options: dict[str, str]  # letter -> text, in the order shown
    answer: str  # the correct letter


def load_mcq(path: Path | str) -> list[MCQItem]:
    """Multiple-choice JSONL in MIRAGE's shape (`dataset`, `id`, `question`, `options` letter->text, `answer`
    letter) or MedQA's (`answer_idx` letter, `answer` text, no `dataset`: the file's stem names it)."""
    path = Path(path)
    items = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalError(f"{path}: cannot read ({exc})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            options = row["options"]
            if isinstance(options, list):  # some exports list the options: letter them in order
                options = dict(zip("ABCDEFGHIJ", options))
            options = {str(k).strip().upper(): str(v) for k, v in options.items()}
            answer = str(row.get("answer_idx") or row["answer"]).strip()
            if answer.upper() not in options:  # the answer given as the option's text
                answer = next(k for k, v in options.items() if v.strip().lower() == answer.lower())
            items.append(MCQItem(str(row.get("dataset") or path.stem), str(row.get("id", number)),
                                 str(row["question"]), options, answer.upper()))
        except KeyError as exc:
            raise EvalError(f"{path}, line {number}: missing field {exc} (a multiple-choice item needs question, "
                            f"options and answer or answer_idx)") from None
        except (json.JSONDecodeError, TypeError, AttributeError, StopIteration) as exc:
            raise EvalError(f"{path}, line {number}: not a multiple-choice item with question, options and an "
                            f"answer letter ({type(exc).__name__}: {exc})") from None
    if not items:
        raise EvalError(f"{path}: no items found")
    return items


def sample_items(items: list[MCQItem], limit: int | None = None, seed: int = 0,
                 datasets: Iterable[str] = ()) -> list[MCQItem]:
    """A fixed order for `--limit`: each dataset shuffled with `seed`, then the datasets interleaved one item
    at a time. The first N items spread evenly across the datasets, the same seed always gives the same
    items, and a larger N contains a smaller one (so a longer run reuses a shorter run's answers)."""
    wanted = set(datasets)
    groups: dict[str, list[MCQItem]] = {}
    for item in items:
        if not wanted or item.dataset in wanted:
            groups.setdefault(item.dataset, []).append(item)
    if wanted - set(groups):
        found = sorted({item.dataset for item in items})
        raise EvalError(f"no items for dataset(s) {', '.join(sorted(wanted - set(groups)))}; "
                        f"this file has: {', '.join(found)}")
    for name in sorted(groups):  # sorted by id first: the same sample from a file whose rows are reordered
        groups[name].sort(key=lambda item: item.id)
        random.Random(f"{seed}:{name}").shuffle(groups[name])
    order, queues = [], [groups[name] for name in sorted(groups)]
    while any(queues):
        order += [queue.pop(0) for queue in queues if queue]
    return order[:limit] if limit else order


# --- reading the answer ------------------------------------------------------------------------

_MARKUP = re.compile(r"[*_`#]+")  # "**B**", "`C`", "### Answer"
_EXPLICIT = re.compile(r"(?:answer(?: to (?:this|the) question)?|correct (?:option|choice))"
                       r"\s*(?:is|would be|[:=-])?\s*(?:option|choice)?\s*[:-]?\s*[(\[]?([A-J])(?![A-Za-z0-9])",
                       re.IGNORECASE)
_LEADING = re.compile(r"^\s*(?:(?:option|choice)\s+)?[(\[]?([A-J])(?:[)\].:,]|\s*$)", re.IGNORECASE | re.MULTILINE)


def extract_letter(text: str, options: dict[str, str]) -> str | None:
    """The option a free-text answer chooses, or None when it cannot be told.

    In order: an explicit statement ("Answer: B", "the correct answer is (c)"); a letter opening a line
    ("B. Bladder", "(B)", "**D**"), as long as every line opening with a letter names the same one (an
    answer that lists the options chooses none); the text of exactly one option in the first sentence,
    or the one it starts with ("Yes, because ..."). A lower-case letter followed by a word is an article
    ("the answer is a beta blocker"), not a choice.
    """
    text = _MARKUP.sub("", text).strip()
    for match in _EXPLICIT.finditer(text):
        letter = match.group(1)
        if letter.upper() in options and not (letter.islower() and re.match(r"\s+[a-z]", text[match.end():])):
            return letter.upper()
    leading = {m.group(1).upper() for m in _LEADING.finditer(text)}
    if len(leading) > 1:
        return None
    if leading and (letter := leading.pop()) in options:
        return letter
    # Only the first sentence: a small model rambles, and an option named in passing later is not a choice.
    return _by_option_text(re.split(r"(?<=[.!?])\s|\n", text, maxsplit=1)[0], options)


def _by_option_text(text: str, options: dict[str, str]) -> str | None:
    def words(s: str) -> str:
        return " ".join(re.findall(r"[a-z0-9]+", s.lower()))

    said = f" {words(text)} "
    texts = {letter: words(option) for letter, option in options.items() if words(option)}
    found = {letter: said.find(f" {t} ") for letter, t in texts.items() if f" {t} " in said}
    # "paralysis of the facial muscles" inside "... muscles and loss of taste" is not a second choice
    found = {a: at for a, at in found.items() if not any(a != b and f" {texts[a]} " in f" {texts[b]} " for b in found)}
    if len(found) == 1:
        return next(iter(found))
    starts = [letter for letter, at in found.items() if at == 0]
    return starts[0] if len(starts) == 1 else None


# --- scores ------------------------------------------------------------------------------------

def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion: unlike p ± z·se it stays inside [0, 1] and is not
    degenerate at 0 or n successes, which matters at the small per-dataset counts of a CPU run."""
    if n == 0:
        return 0.0, 1.0
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(records: list[dict]) -> dict:
    """Per-dataset accuracy with its 95% Wilson interval, the random-guess baseline, unparseable answers and
    seconds per question; `all` pools every question, `mean` is the unweighted mean of the datasets'
    accuracies (MIRAGE's "average")."""
    def rate(correct: int, n: int) -> tuple[float, list[float]]:
        return round(correct / n, 4), [round(x, 4) for x in wilson(correct, n)]

    rows = {}
    for name in sorted({r["dataset"] for r in records}) + ["all"]:
        group = [r for r in records if name in ("all", r["dataset"])]
        correct = sum(r["correct"] for r in group)
        accuracy, ci95 = rate(correct, len(group))
        rows[name] = {"n": len(group), "correct": correct, "accuracy": accuracy, "ci95": ci95,
                      "random_baseline": round(statistics.mean(1 / r["n_options"] for r in group), 4),
                      "unparseable": sum(r["predicted"] is None for r in group),
                      "seconds_per_question": round(statistics.mean(r["seconds"] for r in group), 3)}
        if "correct_norm" in group[0]:  # scored by log-likelihood: lm-eval's acc_norm beside acc
            correct_norm = sum(r["correct_norm"] for r in group)
            accuracy_norm, ci95_norm = rate(correct_norm, len(group))
            rows[name].update(correct_norm=correct_norm, accuracy_norm=accuracy_norm, ci95_norm=ci95_norm)
    datasets = [row for name, row in rows.items() if name != "all"]
    mean = round(statistics.mean(row["accuracy"] for row in datasets), 4) if datasets else None
    return {"datasets": rows, "mean_accuracy": mean}


def markdown_table(summary: dict) -> str:
    if "accuracy_norm" in summary["datasets"]["all"]:
        return _loglik_table(summary)
    lines = ["| dataset | n | accuracy | 95% CI (Wilson) | random guess | unparseable | s/question |",
             "|---|---:|---:|---|---:|---:|---:|"]
    for name, r in summary["datasets"].items():
        label = "**all**" if name == "all" else name
        lines.append(f"| {label} | {r['n']} | {r['accuracy']:.3f} | {r['ci95'][0]:.3f}–{r['ci95'][1]:.3f} | "
                     f"{r['random_baseline']:.3f} | {r['unparseable']} | {r['seconds_per_question']:.2f} |")
    if summary["mean_accuracy"] is not None and len(summary["datasets"]) > 2:
        lines.append(f"| mean of datasets | | {summary['mean_accuracy']:.3f} | | | | |")
    return "\n".join(lines)


def _loglik_table(summary: dict) -> str:
    lines = ["| dataset | n | acc | 95% CI (Wilson) | acc_norm | 95% CI (Wilson) | random guess | s/question |",
             "|---|---:|---:|---|---:|---|---:|---:|"]
    for name, r in summary["datasets"].items():
        label = "**all**" if name == "all" else name
        lines.append(f"| {label} | {r['n']} | {r['accuracy']:.3f} | {r['ci95'][0]:.3f}–{r['ci95'][1]:.3f} | "
                     f"{r['accuracy_norm']:.3f} | {r['ci95_norm'][0]:.3f}–{r['ci95_norm'][1]:.3f} | "
                     f"{r['random_baseline']:.3f} | {r['seconds_per_question']:.3f} |")
    return "\n".join(lines)


# --- asking ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunConfig:
    """Everything that changes an answer; its hash keys the answers file. The item sample, batch size and
    output folder are left out: they do not change what a question gets (greedy batches match singles)."""

    model: str
    backend: str
    adapter: str | None
    use_rag: bool
    k: int
    index: str | None  # the index's home and manifest generation: a changed index retrieves differently
    settings: dict
    scoring: str = "generate"  # or "loglik"

    @property
    def key(self) -> str:
        # The prompt for a fixed question is hashed too: a changed prompt format is a new configuration.
        fields, sources = asdict(self), [SourceText(1, "title", "text")]
        if self.scoring == "generate":
            del fields["scoring"]  # so the keys of runs made before log-likelihood scoring stay valid
            prompt = build_prompt(format_mcq("?", {"A": "a", "B": "b"}), sources)
        else:
            from assistant.loglik import continuation, loglik_prompt

            prompt = loglik_prompt("?", {"A": "a", "B": "b"}, sources) + continuation("a")
        text = json.dumps({**fields, "prompt": prompt}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


class AnswerLog:
    """`answers.jsonl` in the output folder: one line per answered question, appended as soon as its batch is
    done, so a killed run loses at most one batch. Lines of other configurations are kept and ignored."""

    def __init__(self, folder: Path | str, key: str):
        self.path = Path(folder) / "answers.jsonl"
        self.key = key

    def done(self) -> dict[tuple[str, str], dict]:
        """(dataset, id) -> record, for this configuration."""
        records = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the half-written last line of a killed run: that question is asked again
                if record.get("config") == self.key:
                    records[(record["dataset"], record["id"])] = record
        return records

    def append(self, records: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+", encoding="utf-8") as handle:
            handle.seek(0, 2)
            if handle.tell():  # a line cut off by a kill must not swallow the next record
                handle.seek(handle.tell() - 1)
                if handle.read(1) != "\n":
                    handle.write("\n")
            handle.writelines(json.dumps({"config": self.key, **r}, ensure_ascii=False) + "\n" for r in records)


def complete(backend, prompts: list[str], settings: GenerationSettings, stop: list[str] | None = None) -> list[str]:
    """One generation per prompt: in one batch where the backend can (transformers), else one at a time."""
    if hasattr(backend, "generate_batch"):
        return backend.generate_batch(prompts, settings, stop=stop)
    return ["".join(backend.generate(prompt, settings, stop=stop)) for prompt in prompts]


def retrieve_sources(item: MCQItem, kb, k: int) -> tuple[list | None, list[str]]:
    """The numbered sources for a question's prompt (None without retrieval) and their chunk ids. The search is
    for the question only, never the options, as MIRAGE retrieves."""
    from assistant.agent import source_text

    passages = kb.search(item.question, k=k) if kb is not None else []
    sources = [source_text(n, p.chunk.title, p.chunk.section, p.chunk.text) for n, p in enumerate(passages, start=1)]
    return sources or None, [p.chunk.chunk_id for p in passages]


def ask_loglik(items: list[MCQItem], backend, kb=None, k: int = 5, batch_size: int = 8) -> Iterator[list[dict]]:
    """Score every option of `batch_size` questions at a time by log-likelihood, yielding each batch's records."""
    from assistant.loglik import continuation, loglik_prompt, option_logliks

    if not (hasattr(backend, "model") and hasattr(backend, "tokenizer")):
        raise EvalError(f"--scoring loglik needs the model's token probabilities: use the transformers backend, "
                        f"not {backend.name}")
    for start in range(0, len(items), batch_size):
        batch, began = items[start:start + batch_size], time.perf_counter()
        requests, retrieved = [], []
        for item in batch:
            sources, chunk_ids = retrieve_sources(item, kb, k)
            requests.append((loglik_prompt(item.question, item.options, sources),
                             [continuation(text) for text in item.options.values()]))
            retrieved.append(chunk_ids)
        logliks = option_logliks(backend.model, backend.tokenizer, requests)
        seconds = (time.perf_counter() - began) / len(batch)
        yield [score_loglik({"dataset": item.dataset, "id": item.id, "gold": item.answer,
                             "n_options": len(item.options), "logliks": [round(x, 5) for x in values],
                             "retrieved": chunk_ids, "seconds": round(seconds, 3)}, item)
               for item, values, chunk_ids in zip(batch, logliks, retrieved)]


def score_loglik(record: dict, item: MCQItem) -> dict:
    """The record with the options chosen by raw (`predicted`) and per-character (`predicted_norm`)
    log-likelihood; the lengths are the options' as scored (stripped), lm-eval's `len(choice)`."""
    from assistant.loglik import pick

    letters = list(item.options)
    raw, norm = pick(record["logliks"], [len(text.strip()) for text in item.options.values()])
    return {**record, "predicted": letters[raw], "correct": letters[raw] == item.answer,
            "predicted_norm": letters[norm], "correct_norm": letters[norm] == item.answer}


def ask_mcq(items: list[MCQItem], backend, settings: GenerationSettings, kb=None, k: int = 5,
            batch_size: int = 8) -> Iterator[list[dict]]:
    """Ask the questions, `batch_size` at a time, yielding each batch's records.

    Generation takes two steps, as in the agent (`GenerationSettings.phases`): reasoning within its budget
    (none when max_think_tokens is 0), then the answer after a closed <think>.
    """
    thinking, answering = settings.phases()
    for start in range(0, len(items), batch_size):
        batch, began = items[start:start + batch_size], time.perf_counter()
        prompts, retrieved = [], []
        for item in batch:
            sources, chunk_ids = retrieve_sources(item, kb, k)
            prompts.append(build_prompt(format_mcq(item.question, item.options), sources))
            retrieved.append(chunk_ids)
        reasonings = [""] * len(batch)
        if settings.max_think_tokens > 0:
            reasonings = [split_reasoning(text)[0] for text in complete(backend, prompts, thinking, [THINK_CLOSE])]
        answers = complete(backend, [close_reasoning(p, r) for p, r in zip(prompts, reasonings)], answering)
        seconds = (time.perf_counter() - began) / len(batch)
        yield [score({"dataset": item.dataset, "id": item.id, "gold": item.answer, "n_options": len(item.options),
                      "reasoning": reasoning, "response": answer.strip(), "retrieved": chunk_ids,
                      "seconds": round(seconds, 3)}, item)
               for item, reasoning, answer, chunk_ids in zip(batch, reasonings, answers, retrieved)]


def score(record: dict, item: MCQItem) -> dict:
    """The record with the letter read from its response (or, failing that, a conclusion in its reasoning).
    Run again on resumed answers, so an improved reader applies to them without asking again."""
    predicted, read_from = extract_letter(record["response"], item.options), "answer"
    if predicted is None and (match := _last_explicit(record["reasoning"], item.options)):
        predicted, read_from = match, "reasoning"  # concluded in the reasoning, then trailed off
    return {**record, "predicted": predicted, "correct": predicted == item.answer,
            "read_from": read_from if predicted else None}


def _last_explicit(text: str, options: dict[str, str]) -> str | None:
    letters = [m.group(1).upper() for m in _EXPLICIT.finditer(_MARKUP.sub("", text)) if m.group(1).isupper()]
    letters = [letter for letter in letters if letter in options]
    return letters[-1] if letters else None


def run_mcq(items: list[MCQItem], backend, settings: GenerationSettings, out: Path | str, config: RunConfig,
            kb=None, batch_size: int = 8, on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Answer what this configuration has not answered yet, then score every item; the summary is also
    written to `out/summary-<key>.json` and `.md`."""
    log = AnswerLog(out, config.key)
    done = log.done()
    # Similar lengths batched together: left padding to a batch's longest prompt is wasted work, and on a
    # CPU reading the prompt (compute-bound) costs more than generating a short answer.
    todo = sorted((item for item in items if (item.dataset, item.id) not in done),
                  key=lambda item: len(format_mcq(item.question, item.options)))
    if on_progress:
        on_progress(len(items) - len(todo), len(items))
    if kb is not None and config.use_rag and todo:
        kb.search(todo[0].question, k=config.k)  # opening the index and loading BM25 is not question time
    kb = kb if config.use_rag else None
    loglik = config.scoring == "loglik"
    batches = ask_loglik(todo, backend, kb, config.k, batch_size) if loglik else \
        ask_mcq(todo, backend, settings, kb=kb, k=config.k, batch_size=batch_size)
    for records in batches:
        log.append(records)
        done.update({(r["dataset"], r["id"]): r for r in records})
        if on_progress:
            on_progress(sum((i.dataset, i.id) in done for i in items), len(items))
    records = [(score_loglik if loglik else score)(done[(item.dataset, item.id)], item) for item in items]
    summary = {"config": {"key": config.key, **asdict(config)}, "items": len(items), "resumed": len(items) - len(todo),
               **summarize(records)}
    folder = Path(out)
    (folder / f"summary-{config.key}.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (folder / f"summary-{config.key}.md").write_text(markdown_table(summary) + "\n", encoding="utf-8")
    return summary


# --- indexes -----------------------------------------------------------------------------------

def build_eval_index(kb, sources: list[Path | str], on_result=None, on_progress=None) -> list:
    """The retrieval corpus for the MCQ evaluation: the starter notes plus `sources` (MedQuAD JSONL, openFDA
    label sections), through the ordinary ingest, so it is idempotent and a rerun after a kill resumes."""
    missing = [str(s) for s in sources if not Path(s).is_file()]
    if missing:
        raise EvalError(f"not found: {', '.join(missing)}")
    kb.ensure_starter(on_result=on_result, on_progress=on_progress)
    return kb.ingest(sources, on_result=on_result, on_progress=on_progress)


def index_contexts(items: list[dict], folder: Path, embedder=None, on_progress=None):
    """Index each PubMedQA item's contexts (its abstract without the conclusion) as one text file named after
    its pubid, so the indexed text holds neither the question nor the title. Returns the knowledge base
    and doc_id -> pubids (two items with identical contexts share one document)."""
    from index import KnowledgeBase

    docs = folder / "contexts"
    docs.mkdir(parents=True, exist_ok=True)
    for item in items:
        (docs / f"{item['pubid']}.txt").write_text("\n\n".join(item["contexts"]), encoding="utf-8")
    kb = KnowledgeBase(folder / "home", embedder=embedder)
    pubids_of: dict[str, set[str]] = {}
    for result in kb.ingest([docs], on_progress=on_progress):
        if result.status not in ("added", "unchanged"):
            raise EvalError(f"{result.path}: {result.status} ({result.reason})")
        pubids_of.setdefault(result.doc_id, set()).add(Path(result.path).stem)
    return kb, pubids_of


def retrieval_ranks(kb, items: list[dict], pubids_of: dict[str, set[str]], mode: str, k: int = 5,
                    on_progress: Callable[[int, int], None] | None = None
                    ) -> tuple[list[int | None], list[float], list[list[str]]]:
    """For each question: the rank (1-based) of the first chunk of its own context in the top k, or None;
    the search time in ms; and the retrieved chunk ids."""
    kb.search(items[0]["question"], k=k, mode=mode)  # warm-up: opens the index and loads BM25
    ranks, times, tops = [], [], []
    for n, item in enumerate(items, start=1):
        began = time.perf_counter()
        passages = kb.search(item["question"], k=k, mode=mode)
        times.append((time.perf_counter() - began) * 1000)
        tops.append([p.chunk.chunk_id for p in passages])
        ranks.append(next((i for i, p in enumerate(passages, 1) if item["pubid"] in pubids_of[p.chunk.doc_id]), None))
        if on_progress:
            on_progress(n, len(items))
    return ranks, times, tops


def recall_scores(ranks: list[int | None], k: int) -> dict:
    """recall@1 and recall@k with 95% Wilson intervals, and the mean reciprocal rank."""
    def recall(at: int) -> dict:
        hits = sum(r is not None and r <= at for r in ranks)
        return {"value": round(hits / len(ranks), 4), "ci95": [round(x, 4) for x in wilson(hits, len(ranks))]}

    return {"recall@1": recall(1), f"recall@{k}": recall(k),
            "mrr": round(statistics.mean(1 / r if r else 0 for r in ranks), 4)}
