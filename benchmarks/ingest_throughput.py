"""Ingest throughput: the MedQuAD corpus (one JSONL file = one document) through `KnowledgeBase.ingest`.

Reports chunks, wall seconds, chunks/s (median and p5/p95 over the 256-chunk embedding batches), peak
RSS, and where the time goes: the stages `KnowledgeBase._ingest_file` calls are wrapped with timers in
this process (load, chunk, embed, Chroma write, BM25 rebuild); manifest writes are the remainder.

    .venv/bin/python benchmarks/ingest_throughput.py              # the full file, ~17 min on 2 idle cores
    .venv/bin/python benchmarks/ingest_throughput.py --limit 500  # a quick run on the first 500 rows
    .venv/bin/python benchmarks/ingest_throughput.py --limit 2000 --repeats 3 --dtypes float32 bfloat16
        # the embedder in each dtype, runs interleaved (fp32, bf16, fp32, ...), and the ratio of chunks/s
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from common import (DATA, OtherLoad, machine, machine_line, peak_rss_mb, save, summary, table, warn_if_busy)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", type=Path, default=DATA / "medquad_qa_corpus.jsonl")
parser.add_argument("--limit", type=int, default=0, help="ingest only the first N rows (0 = all 16,407)")
# One full run takes ~17 min here, so one run by default; the spread then comes from the per-batch rates.
parser.add_argument("--repeats", type=int, default=1)
parser.add_argument("--dtypes", nargs="+", default=["auto"], help="embedder compute_dtype per run (index/compute.py)")
args = parser.parse_args()

import index.knowledge_base as knowledge_base  # noqa: E402  (imported after argparse: --help stays fast)
from index.compute import bf16_matmul_flags, cpu_flags  # noqa: E402
from index.embed import Embedder  # noqa: E402

info = {**machine(), "cpu_bf16_matmul_flags": bf16_matmul_flags(cpu_flags())}
print(machine_line(info))
warn_if_busy(info)

spent: dict[str, float] = defaultdict(float)  # seconds per stage, for the current run


def timed(name, fn):
    def wrapper(*a, **kw):
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            spent[name] += time.perf_counter() - t
    return wrapper


t0 = time.perf_counter()
embedders = {dtype: Embedder(compute_dtype=dtype) for dtype in args.dtypes}
for embedder in embedders.values():
    embedder.embed(["warm-up"])  # loading the model is not ingest time
    embedder.embed = timed("embed", embedder.embed)
model_load_s = time.perf_counter() - t0
rss_model_mb = peak_rss_mb()
# Wrap the stages in this process only (the library code is unchanged).
knowledge_base.load_document = timed("load", knowledge_base.load_document)
knowledge_base.chunk_document = timed("chunk", knowledge_base.chunk_document)

runs = []
with tempfile.TemporaryDirectory(prefix="medassist-bench-") as tmp:
    lines = args.data.read_text(encoding="utf-8").splitlines(keepends=True)
    source = args.data
    if args.limit:  # a slice written to a temporary file keeps the one-file-one-document shape
        lines = lines[:args.limit]
        source = Path(tmp) / f"medquad_first_{args.limit}.jsonl"
        source.write_text("".join(lines), encoding="utf-8")
    rows = sum(1 for line in lines if line.strip())
    print(f"model loaded in {model_load_s:.1f} s; ingesting {rows} rows of {args.data.name}")

    for repeat, dtype in ((r, d) for r in range(args.repeats) for d in args.dtypes):  # dtypes interleaved
        kb = knowledge_base.KnowledgeBase(Path(tmp) / f"home{repeat}-{dtype}", embedder=embedders[dtype])
        kb.collection.add = timed("chroma_add", kb.collection.add)  # what ChromaVectorStore.add ends in
        kb._sync_bm25 = timed("bm25_rebuild", kb._sync_bm25)
        kb.recover()  # opens the stores before the clock starts
        spent.clear()
        ticks: list[tuple[float, int, tuple]] = []  # (time, chunks done, CPU sample for OtherLoad)

        def on_progress(p) -> None:  # an index.knowledge_base.IngestProgress
            done, total = p.chunks_done, p.chunks_total
            if not total:  # the end-of-file event
                return
            ticks.append((time.perf_counter(), done, OtherLoad._sample()))
            if len(ticks) % 10 == 0 or done == total:  # a line every 2,560 chunks
                rate = done / (ticks[-1][0] - start)
                print(f"  run {repeat + 1}: {done:>6}/{total} chunks stored, {rate:5.1f} chunks/s so far, "
                      f"~{(total - done) / rate / 60:4.1f} min left", flush=True)

        start, cpu_at_start = time.perf_counter(), OtherLoad._sample()
        [result] = kb.ingest([source], on_progress=on_progress)
        wall, other_cpu = time.perf_counter() - start, OtherLoad.between(cpu_at_start, OtherLoad._sample())
        assert result.status == "added", result
        # Rate between consecutive progress ticks (the first batch is left out: it also pays load + chunk).
        batch_rates = [(d2 - d1) / (t2 - t1) for (t1, d1, _), (t2, d2, _) in zip(ticks, ticks[1:])]
        # The machine is shared: a batch is "clean" when other processes used under 5% of the CPUs meanwhile.
        clean_rates = [rate for rate, (_, _, c1), (_, _, c2) in zip(batch_rates, ticks, ticks[1:])
                       if OtherLoad.between(c1, c2) < 0.05]
        phases = {name: round(s, 2) for name, s in spent.items()}
        phases["manifest_and_rest"] = round(wall - sum(spent.values()), 2)
        runs.append({"dtype": dtype, "compute": embedders[dtype].compute.why, "documents": 1, "chunks": result.chunks,
                     "wall_s": round(wall, 2),
                     "chunks_per_s": round(result.chunks / wall, 2), "phases_s": phases, "verify": kb.verify(),
                     "other_processes_cpu_share": round(other_cpu, 3),
                     "batch_chunks_per_s": [round(r, 2) for r in batch_rates],
                     "clean_batch_chunks_per_s": [round(r, 2) for r in clean_rates]})
        kb.manifest.close()
rss_peak_mb = peak_rss_mb()

spread = lambda s: f"{s['median']:.1f}; {s['p5']:.1f}-{s['p95']:.1f} (n={s['n']})" if s["n"] else "n/a"  # noqa: E731
by_dtype = {}
for dtype in args.dtypes:
    mine = [r for r in runs if r["dtype"] == dtype]
    by_dtype[dtype] = {"compute": mine[0]["compute"], "wall_s": summary([r["wall_s"] for r in mine]),
                       "chunks_per_s": summary([r["chunks_per_s"] for r in mine]),
                       "batch_chunks_per_s": summary([x for r in mine for x in r["batch_chunks_per_s"]]),  # pooled
                       "clean_batch_chunks_per_s": summary([x for r in mine for x in r["clean_batch_chunks_per_s"]])}
base = by_dtype[args.dtypes[0]]
for result in by_dtype.values():  # one dtype's runs sit between the other's, so a busy spell slows both
    result["chunks_per_s_ratio"] = round(result["chunks_per_s"]["median"] / base["chunks_per_s"]["median"], 2)
    if result["batch_chunks_per_s"]["n"] and base["batch_chunks_per_s"]["n"]:
        result["batch_ratio"] = round(result["batch_chunks_per_s"]["median"] / base["batch_chunks_per_s"]["median"], 2)
first = runs[0]
print(f"\nIngest throughput: {args.data.name}, {rows} rows = 1 document, {args.repeats} run(s) per dtype")
print(machine_line(info))
print(table(["dtype", "chunks", "wall s (median; min-max)", "chunks/s", f"x {args.dtypes[0]}",
             "chunks/s per batch (median; p5-p95)", "same, clean batches only", "peak RSS MB (after model load)"],
            [[f"{dtype} ({r['compute']})", first["chunks"], f"{r['wall_s']['median']:.1f}; {r['wall_s']['min']:.1f}-"
              f"{r['wall_s']['max']:.1f}", f"{r['chunks_per_s']['median']:.1f}", r["chunks_per_s_ratio"],
              spread(r["batch_chunks_per_s"]), spread(r["clean_batch_chunks_per_s"]),
              f"{rss_peak_mb:.0f} ({rss_model_mb:.0f})"] for dtype, r in by_dtype.items()]))
print("other processes' CPU share during each run: " + ", ".join(f"{r['other_processes_cpu_share']:.0%}" for r in runs))
print("\nWhere the time goes (run 1):")
print(table(["stage", "seconds", "share of wall"],
            [[name, f"{s:.1f}", f"{100 * s / first['wall_s']:.1f}%"]
             for name, s in sorted(first["phases_s"].items(), key=lambda kv: -kv[1])]))
print(f"stores consistent after ingest: {first['verify']}")

# A comparison of dtypes gets a file of its own, beside the single-dtype run docs/benchmarks.md quotes.
save("ingest_throughput" + ("_dtypes" if len(args.dtypes) > 1 else ""),
     {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
      "model_load_s": round(model_load_s, 2), "rss_after_model_load_mb": rss_model_mb, "peak_rss_mb": rss_peak_mb,
      "by_dtype": by_dtype, "runs": runs})
