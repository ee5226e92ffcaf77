"""Retrieval quality on PubMedQA PQA-L: does a question find its own abstract? Dense vs BM25 vs hybrid, RRF k sweep.

Each item's contexts (the abstract without its conclusion) are joined into one text file named after the
pubid, so the indexed text holds neither the question nor the title (the loader makes the file name the
title: a bare number). Each question is then searched with k=5 chunks; a hit is any chunk of the
question's own document. Spread: 95% Wilson intervals. The indexing and scoring are the evaluation harness's
(assistant/evaluation.py, also `medassist eval retrieval`); this script adds the RRF k sweep, latency and the chart.

    .venv/bin/python benchmarks/retrieval_quality.py            # all 700 items, ~3 min on 2 cores
    .venv/bin/python benchmarks/retrieval_quality.py --limit 100
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from common import DATA, machine, machine_line, read_jsonl, save, summary, table, warn_if_busy

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--limit", type=int, default=0, help="use only the first N items (0 = all 700)")
parser.add_argument("--k", type=int, default=5, help="chunks retrieved per question (recall@1 and @k)")
# 60 is the RRF paper's and llama-index's default, MedRAG uses 100; the sweep brackets both.
parser.add_argument("--rrf-ks", type=float, nargs="+", default=[10, 30, 60, 100])
parser.add_argument("--target", type=float, default=0.95, help="hybrid recall@k target")
parser.add_argument("--plot", type=Path, default=Path(__file__).parents[1] / "docs" / "img" / "retrieval_quality.png")
args = parser.parse_args()

# imported after argparse: --help stays fast
from assistant.evaluation import index_contexts, recall_scores, retrieval_ranks  # noqa: E402
from index.embed import Embedder  # noqa: E402
from index.knowledge_base import KnowledgeBase  # noqa: E402

info = machine()
print(machine_line(info))
warn_if_busy(info)
items = read_jsonl(DATA / "pubmedqa_pqal.jsonl", args.limit or None)
embedder = Embedder()
embedder.embed(["warm-up"])  # loading the model is not ingest time


def evaluate(kb: KnowledgeBase, mode: str, label: str) -> dict:
    """The harness's ranks (assistant/evaluation.py, also `medassist eval retrieval`), with latency kept here."""
    def report(n: int, total: int) -> None:
        if n % 100 == 0 or n == total:
            print(f"  {label:<18} {n:>4}/{total} questions", flush=True)

    ranks, times, tops = retrieval_ranks(kb, items, pubids_of, mode, args.k, on_progress=report)
    return {"ranks": ranks, "tops": tops, **recall_scores(ranks, args.k), "latency_ms": summary(times)}


with tempfile.TemporaryDirectory(prefix="medassist-bench-") as tmp:
    t = time.perf_counter()
    kb, pubids_of = index_contexts(items, Path(tmp), embedder, on_progress=lambda p: p.chunks_total == 0 and (
        p.files_done % 100 == 0) and print(f"  ingested {p.files_done}/{p.files_total} files", flush=True))
    ingest_s = time.perf_counter() - t
    n_chunks = kb.manifest.count_ready_chunks()
    print(f"indexed {len(items)} items as {len(pubids_of)} documents, {n_chunks} chunks in {ingest_s:.0f} s")

    methods = {"dense": evaluate(kb, "dense", "dense"), "sparse (BM25)": evaluate(kb, "sparse", "sparse (BM25)")}
    for rrf_k in args.rrf_ks:
        kb_k = KnowledgeBase(kb.home, embedder=embedder, rrf_k=rrf_k)  # the configured path: rrf_k in config.toml
        methods[f"hybrid, k={rrf_k:g}"] = evaluate(kb_k, "hybrid", f"hybrid, k={rrf_k:g}")
        kb_k.manifest.close()

at = f"recall@{args.k}"
hybrids = {name: m for name, m in methods.items() if name.startswith("hybrid")}
score = {name: (m[at]["value"], m["recall@1"]["value"], m["mrr"]) for name, m in hybrids.items()}
best_ks = [name for name in hybrids if score[name] == max(score.values())]  # ties are common: say so
best = hybrids[best_ks[0]]
best_single = max(["dense", "sparse (BM25)"], key=lambda name: methods[name][at]["value"])
default = hybrids.get("hybrid, k=60", best)
wins = sum(h is not None and s is None for h, s in zip(default["ranks"], methods[best_single]["ranks"]))
losses = sum(h is None and s is not None for h, s in zip(default["ranks"], methods[best_single]["ranks"]))

print(f"\nRetrieval quality: PubMedQA PQA-L, {len(items)} questions, {n_chunks} chunks; "
      f"a hit = a chunk of the question's own abstract in the top {args.k}; [95% Wilson interval]")
print(machine_line(info))
fmt = lambda r: f"{r['value']:.3f} [{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}]"  # noqa: E731
print(table(["method", "recall@1", at, "MRR", "search ms p50 (p95)"],
            [[name, fmt(m["recall@1"]), fmt(m[at]), f"{m['mrr']:.3f}",
              f"{m['latency_ms']['median']:.1f} ({m['latency_ms']['p95']:.1f})"] for name, m in methods.items()]))
target_met = default[at]["value"] >= args.target
beats = default[at]["value"] >= methods[best_single][at]["value"]
print(f"\nbest RRF k (by {at}, then recall@1, then MRR): {', '.join(best_ks)}"
      f"{' (a tie)' if len(best_ks) > 1 else ''}: {at} {best[at]['value']:.3f}, recall@1 {best['recall@1']['value']:.3f}")
changed = {name: sum(a != b for a, b in zip(m.pop("tops"), default["tops"])) for name, m in hybrids.items()
           if m is not default}
print(f"questions whose top-{args.k} chunk list (ids and order) differs from k=60: "
      + ", ".join(f"{name}: {n}" for name, n in changed.items()))
print(f"target hybrid (k=60) {at} >= {args.target}: {'MET' if target_met else 'MISSED'} ({default[at]['value']:.3f})")
print(f"target hybrid (k=60) >= best single method ({best_single}, {methods[best_single][at]['value']:.3f}): "
      f"{'MET' if beats else 'MISSED'}; questions hybrid finds and {best_single} misses: {wins}, the reverse: {losses}")

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is not installed: no chart (.venv/bin/pip install matplotlib)")
else:
    names = list(methods)
    fig, ax = plt.subplots(figsize=(8, 4))
    bottom = min(min(methods[n][key]["ci95"][0] for n in names) for key in ("recall@1", at))
    for offset, key in [(-0.2, "recall@1"), (0.2, at)]:
        values = np.array([methods[n][key]["value"] for n in names])
        low, high = (np.array([methods[n][key]["ci95"][i] for n in names]) for i in (0, 1))
        bars = ax.bar(np.arange(len(names)) + offset, values, 0.4, yerr=[values - low, high - values], capsize=3,
                      label=key)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    ax.axhline(args.target, color="grey", linestyle="--", linewidth=1, label=f"target {at} = {args.target}")
    ax.set_xticks(np.arange(len(names)), names, rotation=15)
    ax.set_ylim(min(args.target, bottom) - 0.02, 1.005)  # the bars sit near 1: a zero baseline would hide them
    ax.set_ylabel("share of questions (axis does not start at 0)")
    ax.set_title(f"PubMedQA PQA-L ({len(items)} questions): own abstract retrieved (95% Wilson CI)")
    ax.legend(loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=120)
    print(f"wrote {args.plot}")

for m in methods.values():
    m.pop("tops", None)
save("retrieval_quality", {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "items": len(items),
                           "documents": len(pubids_of), "chunks": n_chunks, "ingest_s": round(ingest_s, 1),
                           "methods": methods, "best_rrf_k": best_ks, "top_lists_changed_vs_k60": changed, "best_single": best_single,
                           "hybrid_k60_wins_vs_best_single": wins, "hybrid_k60_losses_vs_best_single": losses,
                           "target_recall_met": target_met, "target_beats_single_met": beats})
