"""Issue 13 on a GPU: do the embedder and the transformers backend pick CUDA by themselves, and how fast are they?

The project's own classes, unchanged settings (compute_dtype "auto"): `index.embed.Embedder` embeds MedQuAD
answers with all-MiniLM-L6-v2, `assistant.backends.load_backend("transformers")` loads Gemma-3-270M. Printed and
saved: what `choose_compute` picked and why, the device and dtype each model's weights really sit on, embedding
texts/s per dtype (auto, and float32 as configured), and the cosine of each GPU vector to the CPU's float32 vector
of the same text (saved beforehand with --reference on the CPU). The transformers backend's prefill and decode on
the GPU: benchmarks/prefill_decode.py --no-llamacpp (it moves its prompt to the model's device).

    # CPU: the reference vectors (float32) and the texts they belong to
    .venv/bin/python benchmarks/compute_gpu.py --reference .gpu/minilm_reference.npz --limit 600
    # GPU machine (llama-index, unpacked from wheels, on PYTHONPATH)
    python3 benchmarks/compute_gpu.py --model /root/minilm --check .gpu/minilm_reference.npz --out $OUT/compute_gpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index.compute import choose_compute  # noqa: E402
from index.embed import Embedder  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", help="all-MiniLM-L6-v2 folder (default: the packaged one)")
parser.add_argument("--reference", type=Path, help="CPU: write the texts and their float32 vectors here")
parser.add_argument("--check", type=Path, help="GPU: compare with the vectors saved by --reference")
parser.add_argument("--limit", type=int, default=600)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--out", type=Path)
args = parser.parse_args()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


if args.reference:
    from common import DATA, read_jsonl

    texts = [row["answer"] for row in read_jsonl(DATA / "medquad_qa_corpus.jsonl", args.limit)]
    vectors = np.asarray(Embedder(args.model, compute_dtype="float32").embed(texts), dtype=np.float32)
    args.reference.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.reference, texts=np.asarray(texts), vectors=vectors)
    print(f"{len(texts)} texts and their CPU float32 vectors -> {args.reference}")
    sys.exit(0)

import torch  # noqa: E402

saved = np.load(args.check)
texts, reference = [str(t) for t in saved["texts"]], saved["vectors"]
picked = choose_compute("auto")
report = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device",
          "auto_picks": picked.__dict__, "embedder": {}}
print(f"choose_compute('auto') -> {picked.device} {picked.dtype} ({picked.why}); card: {report['device']}")
for setting in ("auto", "float32"):
    embedder = Embedder(args.model, compute_dtype=None if setting == "auto" else setting)
    weights = next(embedder.llama._model.parameters())
    embedder.embed(texts[:64])  # warm-up: CUDA context, kernels
    times, vectors = [], None
    for _ in range(args.repeats):
        began = time.perf_counter()
        vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - began)
    cos = cosines(vectors, reference)
    report["embedder"][setting] = {
        "picked": embedder.compute.__dict__, "weights_on": str(weights.device), "weights_dtype": str(weights.dtype),
        "texts": len(texts), "texts_per_s_median": round(len(texts) / sorted(times)[len(times) // 2], 1),
        "texts_per_s_all": [round(len(texts) / t, 1) for t in times],
        "cosine_to_cpu_fp32_min": round(float(cos.min()), 5), "cosine_to_cpu_fp32_mean": round(float(cos.mean()), 5)}
    row = report["embedder"][setting]
    print(f"embedder {setting}: weights on {row['weights_on']} in {row['weights_dtype']}, "
          f"{row['texts_per_s_median']} texts/s (runs {row['texts_per_s_all']}), cosine to CPU fp32 "
          f"min {row['cosine_to_cpu_fp32_min']} mean {row['cosine_to_cpu_fp32_mean']}")
    del embedder
if args.out:
    args.out.write_text(json.dumps(report, indent=2))
