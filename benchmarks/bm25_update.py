"""What BM25 costs an ingest: a small document added to a large index, full rebuild vs base + delta.

The large index is the MedQuAD corpus chunked as an ingest chunks it (~36k chunks when whole); the small
document is 20 more MedQuAD rows (one file, one document). Only the manifest and BM25 are involved: the
chunks are recorded ready in the manifest directly (embedding and Chroma do not change with this, and are
timed by benchmarks/ingest_throughput.py), then `KnowledgeBase._sync_bm25` brings BM25 up to date, as an
ingest does at its end. Each repeat times, interleaved: the writer's BM25 step and a reader's reload after
it, with a forced full rebuild (what every ingest did before) and with the delta. The small document is
removed again between repeats, untimed.

    .venv/bin/python benchmarks/bm25_update.py                 # all 16,407 rows, ~3 min on 2 idle cores
    .venv/bin/python benchmarks/bm25_update.py --rows 4000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import DATA, OtherLoad, machine, machine_line, save, summary, table, warn_if_busy

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--rows", type=int, default=0, help="MedQuAD rows in the large index (0 = all but the 20 added)")
parser.add_argument("--added-rows", type=int, default=20)
parser.add_argument("--repeats", type=int, default=3)
args = parser.parse_args()

from corpus import chunk_document, load_document  # noqa: E402
from index import KnowledgeBase, sparse  # noqa: E402
from index.embed import Embedder  # noqa: E402

info = machine()
print(machine_line(info))
warn_if_busy(info)
embedder = Embedder()
lines = (DATA / "medquad_qa_corpus.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
large_lines = lines[:args.rows] if args.rows else lines[:-args.added_rows]
small_lines = lines[-args.added_rows:]

with tempfile.TemporaryDirectory(prefix="medassist-bm25-") as tmp:
    docs = {}
    for name, part in (("large", large_lines), ("small", small_lines)):
        path = Path(tmp) / f"medquad_{name}.jsonl"
        path.write_text("".join(part), encoding="utf-8")
        doc = load_document(path)
        docs[name] = (doc, chunk_document(doc, embedder.tokenize))
    print(f"large index: {len(docs['large'][1])} chunks; added document: {len(docs['small'][1])} chunks", flush=True)
    kb = KnowledgeBase(Path(tmp) / "home", embedder=embedder)

    def add(name: str) -> None:
        doc, chunks = docs[name]
        kb.manifest.add_pending(doc, chunks, "2026-12-02T00:00:00+00:00")
        kb.manifest.publish(doc.doc_id, [])

    def remove(name: str) -> None:
        kb.manifest.mark_removing(docs[name][0].doc_id)
        kb.manifest.delete(docs[name][0].doc_id)

    add("large")
    began = time.perf_counter()
    kb._sync_bm25()
    first_build_s = time.perf_counter() - began
    print(f"first build of the large index: {first_build_s:.1f} s", flush=True)

    variants = {"full rebuild (before)": 10**12, "base + delta (after)": sparse.MIN_BASE}
    times: dict[str, dict[str, list[float]]] = {v: {"writer_s": [], "reader_reload_s": []} for v in variants}
    other_cpu = []
    reader = sparse.load(kb.bm25_dir)
    for repeat in range(args.repeats):
        for variant, min_base in variants.items():
            sparse.MIN_BASE = min_base
            kb._sync_bm25()  # untimed: the large index as the base, no delta
            reader = sparse.load(kb.bm25_dir, previous=reader)
            add("small")
            with OtherLoad() as other:
                began = time.perf_counter()
                kb._sync_bm25()
                writer = time.perf_counter() - began
                reader = sparse.load(kb.bm25_dir, previous=reader)
                reload = time.perf_counter() - began - writer
            assert reader.num_docs == len(docs["large"][1]) + len(docs["small"][1])
            times[variant]["writer_s"].append(writer)
            times[variant]["reader_reload_s"].append(reload)
            other_cpu.append(round(other.share, 3))
            print(f"  repeat {repeat + 1}, {variant}: BM25 step {writer:.2f} s, reader reload {reload:.2f} s "
                  f"(other processes {other.share:.0%} of the CPUs)", flush=True)
            remove("small")
            sparse.MIN_BASE = 10**12
            kb._sync_bm25()  # untimed: back to the large index alone, as a base
    kb.manifest.close()

results = {variant: {key: summary(values) for key, values in parts.items()} for variant, parts in times.items()}
before, after = (results[v]["writer_s"]["median"] for v in variants)
print(f"\nBM25 step of an ingest adding {len(docs['small'][1])} chunks to {len(docs['large'][1])}, "
      f"{args.repeats} interleaved repeats (median; min-max)")
print(machine_line(info))
print(table(["variant", "writer BM25 s", "reader reload s"],
            [[v, *(f"{r[k]['median']:.2f}; {r[k]['min']:.2f}-{r[k]['max']:.2f}" for k in ("writer_s", "reader_reload_s"))]
             for v, r in results.items()]))
print(f"speed-up of the writer's BM25 step: {before / after:.1f}x; other processes' CPU share per timed step: "
      + ", ".join(f"{x:.0%}" for x in other_cpu))
save("bm25_update", {"machine": info, "args": vars(args), "large_chunks": len(docs["large"][1]),
                     "added_chunks": len(docs["small"][1]), "first_build_s": round(first_build_s, 2),
                     "results": results, "writer_speedup": round(before / after, 2),
                     "other_cpu_per_step": other_cpu, "delta_share": sparse.DELTA_SHARE})
