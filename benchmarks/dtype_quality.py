"""Does bf16 change what is found? PubMedQA recall and the router's accuracy with the embedder in bf16 vs fp32.

For each dtype the PubMedQA PQA-L contexts are indexed from scratch with that embedder (as
benchmarks/retrieval_quality.py does: assistant/evaluation.py's harness), every question is searched
(dense and hybrid, k=5), and the router labels both question sets (benchmarks/data/route_questions.jsonl,
the one it was tuned on, and the held-out one, whose errors are not printed). The table puts the dtypes
side by side, with 95% Wilson intervals, and counts the questions whose top-5 list or route differs.

    .venv/bin/python benchmarks/dtype_quality.py             # all 700 items, ~10 min on 2 cores
    .venv/bin/python benchmarks/dtype_quality.py --limit 100
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import DATA, machine, machine_line, read_jsonl, save, table, warn_if_busy

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--limit", type=int, default=0, help="use only the first N PubMedQA items (0 = all 700)")
parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
args = parser.parse_args()

from assistant.evaluation import index_contexts, recall_scores, retrieval_ranks  # noqa: E402
from assistant.router import Router  # noqa: E402
from index.compute import bf16_matmul_flags, cpu_flags  # noqa: E402
from index.embed import Embedder  # noqa: E402

HERE = Path(__file__).parent
K = 5

info = {**machine(), "bf16_matmul_flags": bf16_matmul_flags(cpu_flags())}
print(machine_line(info))
warn_if_busy(info)
items = read_jsonl(DATA / "pubmedqa_pqal.jsonl", args.limit or None)
route_sets = {name: read_jsonl(HERE / "data" / file) for name, file in
              (("tuning", "route_questions.jsonl"), ("held-out", "route_questions_heldout.jsonl"))}

results: dict[str, dict] = {}
for dtype in args.dtypes:
    embedder = Embedder(compute_dtype=dtype)
    embedder.embed(["warm-up"])
    result: dict = {"compute": embedder.compute.__dict__}
    with tempfile.TemporaryDirectory(prefix="medassist-dtype-") as tmp:
        began = time.perf_counter()
        kb, pubids_of = index_contexts(items, Path(tmp), embedder)
        result["ingest_s"] = round(time.perf_counter() - began, 1)
        for mode in ("dense", "hybrid"):
            ranks, _, tops = retrieval_ranks(kb, items, pubids_of, mode, K)
            result[mode] = {**recall_scores(ranks, K), "tops": tops}
        kb.manifest.close()
    router = Router(embedder)
    for name, rows in route_sets.items():
        routes = [router.route(row["question"])[0] for row in rows]
        result[f"router {name}"] = {"accuracy": round(sum(r == row["route"] for r, row in zip(routes, rows)) / len(rows), 4),
                                    "routes": routes}
    results[dtype] = result
    print(f"{dtype}: done ({result['compute']['why']})", flush=True)

base, other = args.dtypes[0], args.dtypes[-1]
fmt = lambda r: f"{r['value']:.3f} [{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}]"  # noqa: E731
rows = []
for mode in ("dense", "hybrid"):
    for at in ("recall@1", f"recall@{K}"):
        rows.append([f"PubMedQA {mode} {at}", *(fmt(results[d][mode][at]) for d in args.dtypes)])
    rows.append([f"PubMedQA {mode} MRR", *(f"{results[d][mode]['mrr']:.3f}" for d in args.dtypes)])
for name in route_sets:
    rows.append([f"router accuracy, {name} ({len(route_sets[name])})",
                 *(f"{results[d][f'router {name}']['accuracy']:.3f}" for d in args.dtypes)])
changed = {mode: sum(a != b for a, b in zip(results[base][mode]["tops"], results[other][mode]["tops"]))
           for mode in ("dense", "hybrid")}
changed.update({f"router {name}": sum(a != b for a, b in zip(results[base][f"router {name}"]["routes"],
                                                              results[other][f"router {name}"]["routes"]))
                for name in route_sets})
print(f"\nbf16 vs fp32 embedder: PubMedQA PQA-L {len(items)} questions (k={K}; [95% Wilson interval]), router sets")
print(machine_line(info))
print(table(["measure", *args.dtypes], rows))
print(f"questions whose top-{K} list (ids and order) or route differs, {other} vs {base}: "
      + ", ".join(f"{name}: {n}" for name, n in changed.items()))
for result in results.values():  # the lists made the comparison; the file keeps the scores
    for key in ("dense", "hybrid"):
        result[key].pop("tops")
    for name in route_sets:
        result[f"router {name}"].pop("routes")
save("dtype_quality", {"machine": info, "args": vars(args), "items": len(items), "results": results,
                       "differs": changed})
