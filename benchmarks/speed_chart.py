"""The chart of docs/benchmarks.md's issue-13 section: each change as a speed-up over what ran before it,
read from the results of ingest_throughput.py --dtypes, prefill_decode.py, bm25_update.py and ask_stages.py.

    .venv/bin/python benchmarks/speed_chart.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).parent / "results"
OUT = Path(__file__).parents[1] / "docs" / "img" / "speed_issue13.png"


def read(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


bars: list[tuple[str, float]] = []  # (what, speed-up over before)
if ingest := read("ingest_throughput_dtypes"):
    bf16 = ingest["by_dtype"].get("bfloat16")
    if bf16:
        bars.append(("ingest chunks/s\n(embedder bf16)", bf16["chunks_per_s_ratio"]))
if generation := read("prefill_decode"):
    bf16 = generation["variants"]["transformers bf16"]
    # Decode is left out: on the loaded machine it is the difference of two noisy runs (docs/benchmarks.md).
    bars.append(("first token, 1,000-token\nprompt (transformers bf16)", bf16["first_token_speedup_vs_fp32"]))
if bm25 := read("bm25_update"):
    bars.append((f"BM25 step of a {bm25['added_chunks']}-chunk add\nto {bm25['large_chunks']:,} (delta)",
                 bm25["writer_speedup"]))
if ask := read("ask_stages"):
    before, after = (ask["stages_s"][name]["total_s"]["median"] for name in ("before (fp32)", "after (auto)"))
    bars.append(("ask, total\n(no generation)", before / after))

fig, ax = plt.subplots(figsize=(9, 4))
labels, values = zip(*bars)
drawn = ax.barh(range(len(bars)), values, color=["tab:blue" if v >= 1 else "tab:red" for v in values])
ax.bar_label(drawn, fmt="%.1fx", padding=3)
ax.axvline(1, color="grey", linewidth=1)
ax.set_yticks(range(len(bars)), labels, fontsize=8)
ax.invert_yaxis()
ax.set_xscale("log")
ax.set_xlabel("speed-up over before (log scale; 1 = unchanged); variants interleaved in one run each")
ax.set_title("Issue 13 on 2 shared cores with AMX (medians; other jobs were running: see the tables)")
fig.tight_layout()
OUT.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(OUT, dpi=110)
print(f"wrote {OUT}")
