"""PubMedQA* (MIRAGE's 350 PubMedQA test questions) answered from the evidence reader's quotes, by log-likelihood.

Issue 11 asks for PubMedQA* accuracy with retrieval for the base model, the tuned reader and "evidence-only". The
first two read the five retrieved passages (benchmarks/eval_gpu.py; docs/benchmarks.md). Here the model reads
only what the assistant's evidence answer shows: `Agent.ask` (route, retrieval from the eval index, evidence
reader, abstention) with no model, its quotes becoming the prompt's sources; an abstention leaves the prompt
without sources. Each option (yes / no / maybe) is then scored as `eval mcq --scoring loglik` scores it, so the
numbers sit beside the passages' and the no-retrieval ones. The corpus is ours (starter notes, MedQuAD, openFDA:
`medassist eval build-index`), not MIRAGE's MedCorp, and it rarely holds the abstract a PubMedQA question is from.

    .venv/bin/python benchmarks/pubmedqa_evidence.py --index-home ~/eval-index [--adapter reader] [--limit N]
"""

from __future__ import annotations

import argparse
import re
import time

from common import DATA, machine, machine_line, save, table

from assistant.agent import Agent
from assistant.config import load_config
from assistant.evaluation import load_mcq, score_loglik, wilson
from assistant.loglik import continuation, loglik_prompt, option_logliks
from finetune.prompt import SourceText

_CITED = re.compile(r"\s*\[\d+\]$")


def evidence_sources(answer) -> list[SourceText] | None:
    """The evidence answer's quotes as numbered sources (one per cited passage, its quotes in order)."""
    if answer.abstained or not answer.sentences:
        return None
    quotes: dict[int, list[str]] = {}
    for sentence in answer.sentences:
        quotes.setdefault(sentence.citations[0], []).append(_CITED.sub("", sentence.text))
    return [SourceText(n, "Quoted evidence", " ".join(texts)) for n, texts in quotes.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-home", required=True, help="an index built by `medassist eval build-index`")
    parser.add_argument("--home", help="a home with the converted model (default: medassist's)")
    parser.add_argument("--adapter", help="'reader', 'recipe' or a PEFT adapter folder")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    items = [item for item in load_mcq(DATA / "mirage_benchmark.jsonl") if item.dataset == "pubmedqa"][:args.limit]
    info = machine()
    print(machine_line(info))
    agent = Agent(load_config(args.index_home).knowledge_base(), None)
    backend = load_config(args.home, backend="transformers", adapter=args.adapter).backend_factory()()
    records, abstained, began = [], 0, time.perf_counter()
    for start in range(0, len(items), args.batch_size):
        batch, requests = items[start:start + args.batch_size], []
        for item in batch:
            sources = evidence_sources(agent.ask(item.question))
            abstained += sources is None
            requests.append((loglik_prompt(item.question, item.options, sources),
                             [continuation(text) for text in item.options.values()]))
        for item, values in zip(batch, option_logliks(backend.model, backend.tokenizer, requests)):
            records.append(score_loglik({"id": item.id, "gold": item.answer, "logliks": values}, item))
        print(f"  {len(records)}/{len(items)} questions, {time.perf_counter() - began:.0f} s", flush=True)
    n = len(records)
    acc, norm = sum(r["correct"] for r in records), sum(r["correct_norm"] for r in records)
    result = {"questions": n, "abstained": abstained, "adapter": args.adapter,
              "acc": round(acc / n, 4), "acc_ci95": wilson(acc, n), "acc_norm": round(norm / n, 4),
              "acc_norm_ci95": wilson(norm, n), "seconds": round(time.perf_counter() - began, 1),
              "answers": {p: sum(r["predicted"] == p for r in records) for p in "ABC"}}
    print(table(["measure", "value"], [[k, v] for k, v in result.items()]))
    save(f"pubmedqa_evidence_{args.adapter or 'base'}", {"machine": info, **result, "records": records})


if __name__ == "__main__":
    main()
