"""Multiple-choice accuracy of the base model and a fine-tuned adapter, with and without retrieval, on a GPU.

The lent GPU machine has torch and Transformers but no Chroma or llama-index, and the eval index is
built on the CPU. Retrieval does not depend on the model, so it runs once, here, for every question
(`--retrieve`), and the GPU run reads the saved passages through a stand-in for the knowledge base.
Everything else is the harness of `medassist eval mcq` (`assistant/evaluation.py`): the same prompts,
batched greedy generation, letter reading, Wilson intervals and resumable answers.

    # 1. CPU, with an index built by `medassist eval build-index` (question only, k=5, as MIRAGE)
    python benchmarks/eval_gpu.py --retrieve --index-home ~/eval-index --out .gpu/retrieved.jsonl.gz \
        --data ../shared/data/mirage_benchmark.jsonl ../shared/data/medqa_usmle_4opt_test.jsonl
    # 2. GPU: base and each adapter, without and with retrieval, on every question of each file
    python benchmarks/eval_gpu.py --model /root/gemma-3-270m --adapter tuned=/root/adapter \
        --retrieved .gpu/retrieved.jsonl.gz --data mirage_benchmark.jsonl medqa_usmle_4opt_test.jsonl --out $OUT
    # the same scored by log-likelihood (assistant/loglik.py) instead of reading a generated letter
    ... --scoring loglik --adapter tuned=/root/adapter --adapter reader=assistant/adapters/gemma3-270m-reader

The GPU figures of docs/benchmarks.md come from the second step; with --limit it also runs on a CPU.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant.evaluation import RunConfig, load_mcq, run_mcq, sample_items  # noqa: E402


def retrieve(args) -> None:
    from assistant.config import load_config

    kb = load_config(args.index_home).knowledge_base()
    items = [item for path in args.data for item in load_mcq(path)]
    # MedMCQA last: the largest set, so a run stopped by --seconds keeps every other set whole
    questions = list(dict.fromkeys(item.question for item in sorted(items, key=lambda i: i.dataset == "medmcqa")))
    # The questions are embedded a batch at a time: one query at a time, a busy CPU spends seconds on each.
    vectors: dict[str, list[float]] = {}
    one_at_a_time = kb.embedder.embed_query
    kb.embedder.embed_query = lambda query: vectors[query] if query in vectors else one_at_a_time(query)
    started, done = time.perf_counter(), 0
    with gzip.open(args.out, "wt", encoding="utf-8") as handle:
        for start in range(0, len(questions), 256):
            if args.seconds and time.perf_counter() - started > args.seconds:
                break
            batch = questions[start:start + 256]
            vectors.update(zip(batch, kb.embedder.embed_queries(batch)))
            for question in batch:
                passages = [{"chunk_id": p.chunk.chunk_id, "title": p.chunk.title, "section": p.chunk.section,
                             "text": p.chunk.text} for p in kb.search(question, k=args.k)]
                handle.write(json.dumps({"question": question, "passages": passages}) + "\n")
            done += len(batch)
            print(f"{done}/{len(questions)} questions, {time.perf_counter() - started:.0f} s", flush=True)
    print(f"wrote {args.out}: {done} of {len(questions)} questions, k={args.k}, "
          f"index {kb.home}@{kb.manifest.generation}")


class SavedSearch:
    """Stands in for the knowledge base: `search(question, k)` returns the passages saved by `--retrieve`."""

    def __init__(self, path: Path):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle]
        self.by_question = {row["question"]: row["passages"] for row in rows}
        self.version = "saved:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]

    def search(self, question: str, k: int = 5):
        return [SimpleNamespace(chunk=SimpleNamespace(**p)) for p in self.by_question[question][:k]]


def evaluate(args) -> None:
    from assistant.backends.base import GenerationSettings
    from assistant.backends.transformers_backend import TransformersBackend

    modes = {"both": (False, True), "off": (False,), "only": (True,)}[args.retrieval]
    saved = SavedSearch(Path(args.retrieved)) if True in modes else None
    # The CPU runs' settings (issue 6 table): greedy, no reasoning step, a 32-token answer.
    settings = replace(GenerationSettings(), temperature=0.0, max_think_tokens=args.think_tokens,
                       max_new_tokens=args.max_new_tokens)
    loglik = args.scoring == "loglik"
    files = {Path(path).stem: sample_items(load_mcq(path), args.limit) for path in args.data}
    adapters = [(None, None)] + [tuple(a.split("=", 1)) if "=" in a else ("tuned", a) for a in args.adapter]
    results = Path(args.out, "eval_gpu_loglik.json" if loglik else "eval_gpu.json")
    summaries = []
    for name, adapter in adapters:
        started = time.perf_counter()
        backend = TransformersBackend(model=args.model, adapter=adapter, home=args.home)
        print(f"loaded {args.model} adapter={adapter} in {time.perf_counter() - started:.1f} s", flush=True)
        for use_rag in modes:
            run = RunConfig(model=backend.model_name, backend=backend.name, adapter=adapter, use_rag=use_rag, k=5,
                            index=saved.version if use_rag else None, settings={} if loglik else asdict(settings),
                            scoring=args.scoring)
            for file, items in files.items():
                if use_rag:  # the questions step 1 saved passages for (all, unless it was cut short by --seconds)
                    items = [item for item in items if item.question in saved.by_question]
                started = time.perf_counter()
                summary = run_mcq(items, backend, settings, Path(args.out), run, kb=saved if use_rag else None,
                                  batch_size=args.batch_size)
                wall = time.perf_counter() - started
                summary.update(file=file, wall_s=round(wall, 1), label=f"{name or 'base'}"
                               f"{' + retrieval' if use_rag else ''}", machine=machine())
                summaries.append(summary)
                every = summary["datasets"]["all"]
                print(f"{summary['label']:<20} {file:<26} {len(items)} questions in {wall:.0f} s, accuracy "
                      f"{every['accuracy']:.3f}" + (f", acc_norm {every['accuracy_norm']:.3f}" if loglik else ""),
                      flush=True)
                # after each run, so a run cut off by a time limit keeps what it finished
                results.write_text(json.dumps(summaries, indent=1) + "\n", encoding="utf-8")
        del backend


def machine() -> dict:
    import platform
    from datetime import datetime, timezone

    import torch

    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu x{os.cpu_count()}",
            "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, help="multiple-choice JSONL files (MIRAGE / MedQA shape)")
    parser.add_argument("--retrieve", action="store_true", help="step 1: save the passages for every question")
    parser.add_argument("--index-home", help="step 1: the eval index's home")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--seconds", type=float, help="step 1: stop after about this long (MedMCQA is left last)")
    parser.add_argument("--retrieved", help="step 2: the passages saved by step 1")
    parser.add_argument("--retrieval", choices=["both", "off", "only"], default="both",
                        help="step 2: without and with the saved passages, or one of the two")
    parser.add_argument("--model", help="step 2: model folder")
    parser.add_argument("--adapter", action="append", default=[],
                        help="step 2: PEFT adapter folder, as NAME=FOLDER to label it; repeat for several")
    parser.add_argument("--scoring", choices=["generate", "loglik"], default="generate",
                        help="step 2: read a generated letter, or choose the most likely option")
    parser.add_argument("--home", default="/tmp/medassist-home", help="step 2: home for the backend")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--think-tokens", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--limit", type=int, help="step 2: only the first N questions of each file (a smoke test)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    retrieve(args) if args.retrieve else evaluate(args)


if __name__ == "__main__":
    main()
